"""infra/main.bicep against the resource providers' published schemas (the pinned azure-mgmt-*
SDKs, see tests/deploy/arm_schema.py): every resource type and API version exists, every property
the template sets is one the provider accepts, and none is read-only."""

from __future__ import annotations

import copy
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy import arm_schema, bicep
from tests.deploy.project import template

TPL = template()


def _problems_of(text: str, tmp_path: Path) -> list[str]:
    file = tmp_path / "t.bicep"
    file.write_text(textwrap.dedent(text))
    return arm_schema.template_problems(bicep.parse(file))


def test_the_template_matches_the_published_schemas() -> None:
    assert arm_schema.template_problems(TPL) == []


def test_every_resource_type_has_a_schema_at_its_api_version() -> None:
    checked = {f"{r.full_type}@{r.api_version}" for r in TPL.resources}
    assert len(checked) >= 15, sorted(checked)  # every resource type the template declares, nested ones too
    for resource in TPL.resources:
        shape = arm_schema.resource_shape(resource.full_type, resource.api_version, resource.body.entries.get("name"))
        assert shape.kind == "object" and shape.properties


def test_a_mistyped_property_name_is_reported(tmp_path: Path) -> None:
    problems = _problems_of(
        """\
        resource st 'Microsoft.Storage/storageAccounts@2023-05-01' = {
          name: 'st'
          location: 'westeurope'
          kind: 'StorageV2'
          sku: {
            name: 'Standard_LRS'
          }
          properties: {
            minimumTlsVersio: 'TLS1_2'
          }
        }
        """,
        tmp_path,
    )
    assert problems == [
        "line 1: st (Microsoft.Storage/storageAccounts@2023-05-01): properties.minimumTlsVersio: "
        "no such property (did you mean minimumTlsVersion?)"
    ]


def test_a_mistyped_property_deep_in_a_nested_resource_is_reported(tmp_path: Path) -> None:
    problems = _problems_of(
        """\
        resource cosmos 'Microsoft.DocumentDB/databaseAccounts@2024-11-15' = {
          name: 'c'
          resource db 'sqlDatabases' = {
            name: 'd'
            properties: {
              resource: {
                id: 'd'
              }
            }
            resource container 'containers' = {
              name: 'x'
              properties: {
                resource: {
                  id: 'x'
                  defaultTTL: 60
                }
              }
            }
          }
        }
        """,
        tmp_path,
    )
    assert len(problems) == 1
    assert "container (Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers@2024-11-15)" in problems[0]
    assert "properties.resource.defaultTTL: no such property (did you mean defaultTtl?)" in problems[0]


def test_an_api_version_that_does_not_exist_is_reported(tmp_path: Path) -> None:
    problems = _problems_of(
        """\
        resource site 'Microsoft.Web/sites@2024-04-02' = {
          name: 'app'
        }
        """,
        tmp_path,
    )
    assert len(problems) == 1
    assert "Microsoft.Web/sites@2024-04-02: the pinned azure-mgmt-web publishes no such API version" in problems[0]
    assert "2024-04-01" in problems[0]  # what it does publish


def test_an_unknown_resource_type_is_reported(tmp_path: Path) -> None:
    problems = _problems_of("resource s 'Microsoft.Web/site@2024-04-01' = {\n  name: 'x'\n}\n", tmp_path)
    assert len(problems) == 1 and "did you mean Microsoft.Web/sites?" in problems[0]


def test_a_read_only_property_is_reported(tmp_path: Path) -> None:
    problems = _problems_of(
        """\
        resource id 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
          name: 'id'
          location: 'westeurope'
          properties: {
            clientId: '00000000-0000-0000-0000-000000000000'
          }
        }
        """,
        tmp_path,
    )
    assert problems == [
        "line 1: id (Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31): properties.clientId: "
        "read-only (set by Azure; a deployment cannot set it)"
    ]


def test_a_polymorphic_channel_is_checked_as_its_subtype(tmp_path: Path) -> None:
    base = """\
        resource ch 'Microsoft.BotService/botServices/channels@2022-09-15' = {
          name: 'DirectLineChannel'
          properties: {
            channelName: 'DirectLineChannel'
            properties: {
              sites: [
                {
                  siteName: 'Default Site'
                  %s: true
                }
              ]
            }
          }
        }
        """
    assert _problems_of(base % "isV3Enabled", tmp_path) == []
    problems = _problems_of(base % "isV3Enable", tmp_path)
    assert len(problems) == 1 and "properties.properties.sites[0].isV3Enable: no such property" in problems[0]


def _key_paths(value: bicep.Value, path: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    if isinstance(value, bicep.BObject):
        for key, item in value.entries.items():
            yield (*path, key)
            yield from _key_paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _key_paths(item, (*path, index))


def test_every_property_name_in_the_template_is_checked() -> None:
    """Rename each key the template sets, one at a time: the checker reports every one, except
    keys of free-form maps (app settings, the user-assigned identity's resource id)."""
    unchecked = []
    for resource in TPL.resources:
        for key_path in _key_paths(resource.body):
            if key_path[0] in arm_schema.BICEP_KEYS:
                continue
            mutated = copy.deepcopy(resource)
            node: bicep.Value = mutated.body
            for key in key_path[:-1]:
                node = node.entries[key] if isinstance(key, str) else node[key]  # type: ignore[union-attr,index]
            assert isinstance(node, bicep.BObject)
            node.entries = {(f"{k}Typo" if k == key_path[-1] else k): v for k, v in node.entries.items()}
            if not arm_schema.resource_problems(mutated):
                unchecked.append((resource.name, key_path[:-1]))
    assert {where for where in unchecked} == {
        ("appSettings", ("properties",)),
        ("functionApp", ("identity", "userAssignedIdentities")),
    }


@pytest.mark.parametrize(
    ("package", "version"),
    [("azure.mgmt.web", "2024-04-01"), ("azure.mgmt.cosmosdb", "2024-11-15"), ("azure.mgmt.botservice", "2022-09-15")],
)
def test_published_api_versions_come_from_the_installed_sdks(package: str, version: str) -> None:
    assert version in arm_schema.published_api_versions(package)
