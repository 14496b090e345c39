"""infra/main.bicep against the security baseline, offline: each rule below is a PSRule for Azure
rule (its name and what it checks taken from PSRule.Rules.Azure's rule sources and reference pages;
the Azure.MCSB.v1 baseline lists most of them), or, where PSRule has none for a Function App, the
Azure Policy built-in that checks the same setting. Each rule reads the real template through the
Bicep reader (tests/deploy/bicep.py), and a mutation test takes each rule's setting out of the
template's text in turn and shows that the rule then fails.

Settings that depend on a parameter are checked with the values named in the rule (the network
rules hold with privateNetworking=true; docs/deploy.md, "Network", explains the default).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.deploy import bicep
from tests.deploy.project import TEMPLATE, resources_of_type, template

TPL = template()
UNKNOWN = object()


# ------------------------------------------------------------------ evaluation


def evaluate(tpl: bicep.Template, value: bicep.Value, params: dict[str, object]) -> object:
    """The value a property gets for the given parameters (others at their defaults): literals,
    param/var references, and `flag ? a : b`; UNKNOWN for anything else."""
    if isinstance(value, bicep.BObject | list) or not isinstance(value, bicep.Raw):
        return value
    tokens = [t for t in value.tokens if t.kind != "newline"]
    if len(tokens) == 1:
        return _token_value(tpl, tokens[0], params)
    if len(tokens) == 5 and tokens[1].value == "?" and tokens[3].value == ":":
        condition = _token_value(tpl, tokens[0], params)
        if isinstance(condition, bool):
            return _token_value(tpl, tokens[2] if condition else tokens[4], params)
    return UNKNOWN


def _token_value(tpl: bicep.Template, token: bicep.Token, params: dict[str, object]) -> object:
    if token.is_plain_string:
        return token.value
    if token.kind == "ident" and token.role == "keyword" and token.value in ("true", "false"):
        return token.value == "true"
    if token.kind == "ident" and token.role == "ref":
        declaration = tpl.symbol(token.value)
        if declaration.keyword == "param" and token.value in params:
            return params[token.value]
        if declaration.keyword in ("param", "var") and declaration.value_tokens:
            return evaluate(tpl, declaration.value, params)
    return UNKNOWN


def field_of(tpl: bicep.Template, resource: bicep.Declaration, dotted: str, params: dict[str, object]) -> object:
    """A resource's property by its dotted path (as PSRule names fields), evaluated; None if absent."""
    current: bicep.Value = resource.body
    for key in dotted.split("."):
        current = evaluate(tpl, current, params)  # type: ignore[assignment]
        if not isinstance(current, bicep.BObject):
            return None
        match = next((k for k in current.entries if k.lower() == key.lower()), None)  # PSRule ignores case
        if match is None:
            return None
        current = current.entries[match]
    return evaluate(tpl, current, params)


def _equals(actual: object, expected: object) -> bool:
    if isinstance(actual, str) and isinstance(expected, str):
        return actual.lower() == expected.lower()  # PSRule's `equals` ignores case for strings
    return actual is expected if isinstance(expected, bool) else actual == expected


# ------------------------------------------------------------------ rules


@dataclass(frozen=True)
class Rule:
    name: str  # the PSRule for Azure rule (or Azure Policy definition) this mirrors
    check: Callable[[bicep.Template], list[str]]
    # (text in infra/main.bicep, what replaces it): takes the setting out of the template.
    mutation: tuple[str, str]
    params: dict[str, object] = field(default_factory=dict)


def _field_rule(
    resource_type: str, dotted: str, expected: object, params: dict[str, object] | None = None
) -> Callable[[bicep.Template], list[str]]:
    def check(tpl: bicep.Template) -> list[str]:
        resources = resources_of_type(tpl, resource_type)
        if not resources:
            return [f"no {resource_type} in the template"]
        problems = []
        for resource in resources:
            actual = field_of(tpl, resource, dotted, params or {})
            if not _equals(actual, expected):
                problems.append(f"{resource.name}: {dotted} is {actual!r}, expected {expected!r}")
        return problems

    return check


def _field_in(resource_type: str, dotted: str, allowed: set[str]) -> Callable[[bicep.Template], list[str]]:
    def check(tpl: bicep.Template) -> list[str]:
        problems = []
        for resource in resources_of_type(tpl, resource_type):
            actual = field_of(tpl, resource, dotted, {})
            if actual not in allowed:
                problems.append(f"{resource.name}: {dotted} is {actual!r}, expected one of {sorted(allowed)}")
        return problems

    return check


def _blob_service_rule(dotted: str) -> Callable[[bicep.Template], list[str]]:
    """Azure.Storage.SoftDelete / ContainerSoftDelete: the account's blobServices sub-resource must
    exist and set the policy (PSRule fails an account without one)."""

    def check(tpl: bicep.Template) -> list[str]:
        problems = []
        services = resources_of_type(tpl, "Microsoft.Storage/storageAccounts/blobServices")
        for account in resources_of_type(tpl, "Microsoft.Storage/storageAccounts"):
            mine = [s for s in services if s.parent is account]
            if not mine:
                problems.append(f"{account.name}: no blobServices sub-resource")
            for service in mine:
                if field_of(tpl, service, dotted, {}) is not True:
                    problems.append(f"{service.name}: {dotted} is not true")
        return problems

    return check


def _container_access(tpl: bicep.Template) -> list[str]:
    """Azure.Storage.BlobAccessType: every container's publicAccess is absent or None."""
    problems = []
    for container in resources_of_type(tpl, "Microsoft.Storage/storageAccounts/blobServices/containers"):
        access = field_of(tpl, container, "properties.publicAccess", {})
        if access not in (None, "None"):
            problems.append(f"{container.name}: publicAccess is {access!r}")
    return problems


def _diagnostic_settings_of(tpl: bicep.Template, target: bicep.Declaration) -> list[bicep.Declaration]:
    out = []
    for setting in resources_of_type(tpl, "Microsoft.Insights/diagnosticSettings"):
        scope = setting.body.entries.get("scope")
        tokens = [t.value for t in scope.tokens if t.kind != "newline"] if isinstance(scope, bicep.Raw) else []
        if tokens and tokens[-1] == target.name:
            out.append(setting)
    return out


def _enabled_log_groups(tpl: bicep.Template, setting: bicep.Declaration) -> set[str]:
    logs = evaluate(tpl, _path(setting.body, "properties", "logs"), {})  # a list, or `allLogs` (a var)
    groups = set()
    for entry in logs if isinstance(logs, list) else []:
        if isinstance(entry, bicep.BObject) and evaluate(tpl, entry.entries.get("enabled"), {}) is True:
            name = entry.entries.get("categoryGroup") or entry.entries.get("category")
            if isinstance(name, str):
                groups.add(name)
    return groups


def _path(obj: bicep.Value, *keys: str) -> bicep.Value:
    for key in keys:
        if not isinstance(obj, bicep.BObject) or key not in obj.entries:
            return None
        obj = obj.entries[key]
    return obj


def _key_vault_logs(tpl: bicep.Template) -> list[str]:
    """Azure.KeyVault.Logs: a diagnostic setting on the vault with AuditEvent, or the audit or
    allLogs category group, enabled."""
    problems = []
    for vault in resources_of_type(tpl, "Microsoft.KeyVault/vaults"):
        groups = set().union(*(_enabled_log_groups(tpl, s) for s in _diagnostic_settings_of(tpl, vault)))
        if not groups & {"AuditEvent", "audit", "allLogs"}:
            problems.append(f"{vault.name}: no diagnostic setting sends AuditEvent (or audit/allLogs)")
    return problems


def _basic_publishing_off(policy: str) -> Callable[[bicep.Template], list[str]]:
    """Azure Policy 'App Service apps should have local authentication methods disabled for FTP
    deployments' (871b205b-...) / '... for SCM site deployments' (aede300b-...): the site's
    basicPublishingCredentialsPolicies/<ftp|scm> has allow: false."""

    def check(tpl: bicep.Template) -> list[str]:
        policies = resources_of_type(tpl, "Microsoft.Web/sites/basicPublishingCredentialsPolicies")
        mine = [p for p in policies if p.body.entries.get("name") == policy]
        if not mine or any(field_of(tpl, p, "properties.allow", {}) is not False for p in mine):
            return [f"basic-authentication {policy} publishing is not turned off"]
        return []

    return check


PRIVATE = {"privateNetworking": True}
STORAGE = "Microsoft.Storage/storageAccounts"
COSMOS = "Microsoft.DocumentDB/databaseAccounts"
SITE = "Microsoft.Web/sites"
VAULT = "Microsoft.KeyVault/vaults"

RULES = [
    Rule(
        "Azure.Storage.SecureTransfer",
        _field_rule(STORAGE, "properties.supportsHttpsTrafficOnly", True),
        ("    supportsHttpsTrafficOnly: true\n", ""),
    ),
    Rule(
        "Azure.Storage.MinTLS",
        _field_rule(STORAGE, "properties.minimumTlsVersion", "TLS1_2"),
        ("    minimumTlsVersion: 'TLS1_2'\n", ""),
    ),
    Rule(
        "Azure.Storage.BlobPublicAccess",
        _field_rule(STORAGE, "properties.allowBlobPublicAccess", False),
        ("    allowBlobPublicAccess: false\n", ""),
    ),
    Rule(
        "Azure.Storage.LocalAuth",
        _field_rule(STORAGE, "properties.allowSharedKeyAccess", False),
        ("    allowSharedKeyAccess: false\n", ""),
    ),
    Rule(
        "Azure.Storage.SoftDelete",
        _blob_service_rule("properties.deleteRetentionPolicy.enabled"),
        ("      deleteRetentionPolicy: {\n        enabled: true\n        days: 7\n      }\n", ""),
    ),
    Rule(
        "Azure.Storage.ContainerSoftDelete",
        _blob_service_rule("properties.containerDeleteRetentionPolicy.enabled"),
        ("      containerDeleteRetentionPolicy: {\n        enabled: true\n        days: 7\n      }\n", ""),
    ),
    # Absent means None here, so this mutation changes the value rather than removing it.
    Rule(
        "Azure.Storage.BlobAccessType",
        _container_access,
        ("        publicAccess: 'None'\n", "        publicAccess: 'Blob'\n"),
    ),
    Rule(
        "Azure.Storage.Firewall",
        _field_rule(STORAGE, "properties.networkAcls.defaultAction", "deny", PRIVATE),
        ("      defaultAction: privateNetworking ? 'Deny' : 'Allow'\n", ""),
        PRIVATE,
    ),
    Rule(
        "Azure.Cosmos.DisableLocalAuth",
        _field_rule(COSMOS, "properties.disableLocalAuth", True),
        ("    disableLocalAuth: true\n", ""),
    ),
    Rule(
        "Azure.Cosmos.DisableMetadataWrite",
        _field_rule(COSMOS, "properties.disableKeyBasedMetadataWriteAccess", True),
        ("    disableKeyBasedMetadataWriteAccess: true\n", ""),
    ),
    Rule(
        "Azure.Cosmos.MinTLS",
        _field_rule(COSMOS, "properties.minimalTlsVersion", "Tls12"),
        ("    minimalTlsVersion: 'Tls12'\n", ""),
    ),
    Rule(
        "Azure.Cosmos.ContinuousBackup",
        _field_rule(COSMOS, "properties.backupPolicy.type", "Continuous"),
        ("      type: 'Continuous'\n", ""),
    ),
    Rule(
        "Azure.Cosmos.PublicAccess",
        _field_rule(COSMOS, "properties.publicNetworkAccess", "Disabled", PRIVATE),
        (
            "    // Private endpoint only when privateNetworking is on (see storage's networkAcls).\n"
            "    publicNetworkAccess: publicNetworkAccess\n",
            "",
        ),
        PRIVATE,
    ),
    Rule("Azure.AppService.UseHTTPS", _field_rule(SITE, "properties.httpsOnly", True), ("    httpsOnly: true\n", "")),
    Rule(
        "Azure.AppService.MinTLS",
        _field_rule(SITE, "properties.siteConfig.minTlsVersion", "1.2"),
        ("      minTlsVersion: '1.2'\n", ""),
    ),
    Rule(
        "Azure.AppService.ManagedIdentity",
        _field_in(SITE, "identity.type", {"SystemAssigned", "UserAssigned", "SystemAssigned, UserAssigned"}),
        ("    type: 'SystemAssigned, UserAssigned'\n", ""),
    ),
    Rule(
        "Azure.KeyVault.SoftDelete",
        _field_rule(VAULT, "properties.enableSoftDelete", True),
        ("    enableSoftDelete: true\n", ""),
    ),
    Rule(
        "Azure.KeyVault.PurgeProtect",
        _field_rule(VAULT, "properties.enablePurgeProtection", True),
        ("    enablePurgeProtection: true\n", ""),
    ),
    Rule(
        "Azure.KeyVault.RBAC",
        _field_rule(VAULT, "properties.enableRbacAuthorization", True),
        ("    enableRbacAuthorization: true\n", ""),
    ),
    Rule(
        "Azure.KeyVault.Logs",
        _key_vault_logs,
        (
            "  scope: vault\n  properties: {\n    workspaceId: logAnalytics.id\n    logs: allLogs\n",
            "  scope: vault\n  properties: {\n    workspaceId: logAnalytics.id\n",
        ),
    ),
    Rule(
        "Azure Policy 871b205b-57cf-4e1e-a234-492616998bf7 (FTP basic authentication off)",
        _basic_publishing_off("ftp"),
        ("  name: 'ftp'\n  properties: {\n    allow: false\n", "  name: 'ftp'\n  properties: {\n    allow: true\n"),
    ),
    Rule(
        "Azure Policy aede300b-d67f-480a-ae26-4b3dfb1a1fdc (SCM basic authentication off)",
        _basic_publishing_off("scm"),
        ("  name: 'scm'\n  properties: {\n    allow: false\n", "  name: 'scm'\n  properties: {\n    allow: true\n"),
    ),
]


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.name.split(" (")[0])
def test_the_template_passes_the_rule(rule: Rule) -> None:
    assert rule.check(TPL) == []


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.name.split(" (")[0])
def test_the_rule_fails_once_its_setting_is_taken_out(rule: Rule, tmp_path: Path) -> None:
    text = TEMPLATE.read_text()
    old, new = rule.mutation
    assert text.count(old) == 1, f"the mutation for {rule.name} must hit exactly one place: {old!r}"
    mutated = tmp_path / "main.bicep"
    mutated.write_text(text.replace(old, new))
    assert rule.check(bicep.parse(mutated)), f"{rule.name} still passes without its setting"


def test_rule_names_are_unique() -> None:
    names = [rule.name for rule in RULES]
    assert len(names) == len(set(names))


# ------------------------------------------- what the rules above do not name


RESOURCES_WITH_LOGS = [
    "Microsoft.Web/sites",
    "Microsoft.Storage/storageAccounts/blobServices",
    "Microsoft.Storage/storageAccounts/queueServices",
    "Microsoft.Storage/storageAccounts/tableServices",
    "Microsoft.DocumentDB/databaseAccounts",
    "Microsoft.KeyVault/vaults",
    "Microsoft.BotService/botServices",
]


@pytest.mark.parametrize("resource_type", RESOURCES_WITH_LOGS)
def test_every_resource_with_logs_sends_them_to_the_workspace(resource_type: str) -> None:
    # The benchmark's LT-3 (logging for security investigation) for each resource the bot uses.
    for resource in resources_of_type(TPL, resource_type):
        settings = _diagnostic_settings_of(TPL, resource)
        assert settings, f"{resource.name} has no diagnostic setting"
        for setting in settings:
            workspace = _path(setting.body, "properties", "workspaceId")
            assert isinstance(workspace, bicep.Raw) and bicep.references(workspace.tokens) == {"logAnalytics"}
            assert "allLogs" in _enabled_log_groups(TPL, setting)


def test_no_shared_key_or_connection_string_reaches_the_app() -> None:
    # Storage's keys are never listed (listKeys) and no app setting is a connection string with a key.
    for declaration in [*TPL.declarations, *TPL.resources]:
        assert "listKeys" not in bicep.references(bicep.expression_tokens(declaration)), declaration.name
    assert "AccountKey=" not in TEMPLATE.read_text()


def test_by_default_storage_and_cosmos_stay_public_as_docs_deploy_md_explains() -> None:
    # The documented trade-off of privateNetworking=false (a Flex Consumption app without VNet
    # integration has no fixed addresses to allow); the private form is what the rules check.
    storage = resources_of_type(TPL, STORAGE)[0]
    cosmos = resources_of_type(TPL, COSMOS)[0]
    assert field_of(TPL, storage, "properties.networkAcls.defaultAction", {}) == "Allow"
    assert field_of(TPL, storage, "properties.publicNetworkAccess", {}) == "Enabled"
    assert field_of(TPL, cosmos, "properties.publicNetworkAccess", {}) == "Enabled"
    assert field_of(TPL, storage, "properties.publicNetworkAccess", PRIVATE) == "Disabled"
