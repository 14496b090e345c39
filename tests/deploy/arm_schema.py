"""Each resource of the Bicep template against its provider's published REST schema, offline.

The azure-mgmt-* SDKs (pinned in requirements-dev.txt) are generated from the same OpenAPI
specifications as Azure Resource Manager's and Bicep's own type definitions. Each ships the API
versions it was generated for (a `vYYYY_MM_DD` module per version, or one version for the whole
package), and its models name the properties a resource body accepts, as on the wire: msrest
models in `_attribute_map` ('properties.serverFarmId'), newer models as rest fields. A resource
type or API version no pinned SDK ships, a property name the schema does not have, and a
read-only property set in the template are all reported.

What this cannot see (the Bicep compiler in .github/workflows/deploy.yml does): values that are
expressions, enum values, and required properties.
"""

from __future__ import annotations

import difflib
import enum
import importlib
import importlib.util
import pkgutil
import re
import typing
from dataclasses import dataclass, field
from functools import cache
from types import ModuleType

from tests.deploy import bicep

# Resource type -> (SDK package, model of the PUT body). Sites/config's body depends on its name.
RESOURCE_MODELS: dict[str, tuple[str, str]] = {
    "Microsoft.OperationalInsights/workspaces": ("azure.mgmt.loganalytics", "Workspace"),
    "Microsoft.Insights/components": ("azure.mgmt.applicationinsights", "ApplicationInsightsComponent"),
    "Microsoft.Storage/storageAccounts": ("azure.mgmt.storage", "StorageAccountCreateParameters"),
    "Microsoft.Storage/storageAccounts/blobServices": ("azure.mgmt.storage", "BlobServiceProperties"),
    "Microsoft.Storage/storageAccounts/blobServices/containers": ("azure.mgmt.storage", "BlobContainer"),
    "Microsoft.Storage/storageAccounts/queueServices": ("azure.mgmt.storage", "QueueServiceProperties"),
    "Microsoft.Storage/storageAccounts/queueServices/queues": ("azure.mgmt.storage", "StorageQueue"),
    "Microsoft.Storage/storageAccounts/tableServices": ("azure.mgmt.storage", "TableServiceProperties"),
    "Microsoft.Storage/storageAccounts/tableServices/tables": ("azure.mgmt.storage", "Table"),
    "Microsoft.ManagedIdentity/userAssignedIdentities": ("azure.mgmt.msi", "Identity"),
    "Microsoft.Web/serverfarms": ("azure.mgmt.web", "AppServicePlan"),
    "Microsoft.Web/sites": ("azure.mgmt.web", "Site"),
    "Microsoft.Authorization/roleAssignments": ("azure.mgmt.authorization", "RoleAssignmentCreateParameters"),
    "Microsoft.DocumentDB/databaseAccounts": ("azure.mgmt.cosmosdb", "DatabaseAccountCreateUpdateParameters"),
    "Microsoft.DocumentDB/databaseAccounts/sqlDatabases": ("azure.mgmt.cosmosdb", "SqlDatabaseCreateUpdateParameters"),
    "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers": (
        "azure.mgmt.cosmosdb",
        "SqlContainerCreateUpdateParameters",
    ),
    "Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments": (
        "azure.mgmt.cosmosdb",
        "SqlRoleAssignmentCreateUpdateParameters",
    ),
    "Microsoft.BotService/botServices": ("azure.mgmt.botservice", "Bot"),
    "Microsoft.BotService/botServices/channels": ("azure.mgmt.botservice", "BotChannel"),
    "Microsoft.Web/sites/basicPublishingCredentialsPolicies": (
        "azure.mgmt.web",
        "CsmPublishingCredentialsPoliciesEntity",
    ),
    "Microsoft.KeyVault/vaults": ("azure.mgmt.keyvault", "VaultCreateOrUpdateParameters"),
    "Microsoft.KeyVault/vaults/secrets": ("azure.mgmt.keyvault", "SecretCreateOrUpdateParameters"),
    # An extension resource: its `scope` names the resource whose logs it sends.
    "Microsoft.Insights/diagnosticSettings": ("azure.mgmt.monitor", "DiagnosticSettingsResource"),
    "Microsoft.Network/virtualNetworks": ("azure.mgmt.network", "VirtualNetwork"),
    "Microsoft.Network/privateEndpoints": ("azure.mgmt.network", "PrivateEndpoint"),
    "Microsoft.Network/privateEndpoints/privateDnsZoneGroups": ("azure.mgmt.network", "PrivateDnsZoneGroup"),
    "Microsoft.Network/privateDnsZones": ("azure.mgmt.privatedns", "PrivateZone"),
    "Microsoft.Network/privateDnsZones/virtualNetworkLinks": ("azure.mgmt.privatedns", "VirtualNetworkLink"),
}
SITE_CONFIG_MODELS = {"appsettings": "StringDictionary", "web": "SiteConfigResource"}
# Keys of a resource body that belong to Bicep, not to the resource provider.
BICEP_KEYS = frozenset({"name", "parent", "scope", "dependsOn"})
_VERSION_MODULE = re.compile(r"^v(\d{4})_(\d{2})_(\d{2})(_preview)?$")


class UnknownSchema(LookupError):
    """No pinned SDK ships this resource type at this API version."""


# ----------------------------------------------------------------------- shapes


@dataclass
class Shape:
    """What a value may be: an object with named properties, a list, a map, or anything else."""

    kind: str  # object, list, map, scalar, any
    properties: dict[str, Shape] = field(default_factory=dict)
    readonly: set[str] = field(default_factory=set)
    element: Shape | None = None  # list items, map values
    # Polymorphic objects: discriminator property -> {value: shape of that subtype}.
    discriminator: str | None = None
    subtypes: dict[str, Shape] = field(default_factory=dict)


ANY = Shape("any")
SCALAR = Shape("scalar")


def _split_wire_key(key: str) -> list[str]:
    """'properties.odata\\.type' -> ['properties', 'odata.type'] (msrest escapes literal dots)."""
    return [part.replace("\\.", ".") for part in re.split(r"(?<!\\)\.", key)]


class _ShapeBuilder:
    """Shapes from one models module; cached per class, so recursive models terminate."""

    def __init__(self, models: ModuleType) -> None:
        self.models = models
        self.cache: dict[type, Shape] = {}

    def of_class(self, cls: type) -> Shape:
        if cls in self.cache:
            return self.cache[cls]
        shape = Shape("object")
        self.cache[cls] = shape  # before filling: a model may contain itself
        if hasattr(cls, "_attribute_map"):
            self._fill_msrest(cls, shape)
        else:
            self._fill_rest_fields(cls, shape)
        return shape

    # msrest models: _attribute_map {attr: {'key': wire path, 'type': 'str'|'[X]'|'{X}'|'X'}}
    def _fill_msrest(self, cls: type, shape: Shape) -> None:
        validation = getattr(cls, "_validation", {}) or {}
        for attr, spec in cls._attribute_map.items():  # type: ignore[attr-defined]
            path = _split_wire_key(spec["key"])
            target = shape
            for part in path[:-1]:  # flattened: 'properties.x' lives in a nested object
                target = target.properties.setdefault(part, Shape("object"))
            target.properties[path[-1]] = self._of_type_name(spec["type"])
            if validation.get(attr, {}).get("readonly"):
                target.readonly.add(path[-1])
        subtype_map = getattr(cls, "_subtype_map", None) or {}
        for attr, subtypes in subtype_map.items():
            shape.discriminator = _split_wire_key(cls._attribute_map[attr]["key"])[-1]  # type: ignore[attr-defined]
            for value, class_name in subtypes.items():
                subclass = getattr(self.models, class_name, None)
                if subclass is not None:
                    shape.subtypes[value] = self.of_class(subclass)

    def _of_type_name(self, name: str) -> Shape:
        if name.startswith("[") and name.endswith("]"):
            return Shape("list", element=self._of_type_name(name[1:-1]))
        if name.startswith("{") and name.endswith("}"):
            return Shape("map", element=self._of_type_name(name[1:-1]))
        if name == "object":
            return ANY
        model = getattr(self.models, name, None)
        return self.of_class(model) if self._is_model(model) else SCALAR  # str, int, bool, iso-8601, enums...

    def _is_model(self, candidate: object) -> bool:
        """A class of the SDK (its models, or a model its _patch.py replaces) that is not an enum."""
        package = ".".join(self.models.__name__.split(".")[:3])  # azure.mgmt.<name>
        return (
            isinstance(candidate, type)
            and not issubclass(candidate, enum.Enum)
            and candidate.__module__.startswith(package + ".")
        )

    # Newer generated models: rest fields (wire name, visibility) and type hints.
    def _fill_rest_fields(self, cls: type, shape: Shape) -> None:
        cls()  # the model base maps attributes to rest fields on first construction
        fields = cls._attr_to_rest_field  # type: ignore[attr-defined]
        module = importlib.import_module(cls.__module__)
        hints = typing.get_type_hints(cls, globalns={**vars(module), "_models": self.models})
        for attr, rest_field in fields.items():
            wire = rest_field._rest_name
            shape.properties[wire] = self._of_hint(hints.get(attr))
            if list(getattr(rest_field, "_visibility", None) or []) == ["read"]:
                shape.readonly.add(wire)

    def _of_hint(self, hint: object) -> Shape:
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if origin is typing.Union:
            real = [a for a in args if a is not type(None)]
            return self._of_hint(real[0]) if len(real) == 1 else ANY
        if origin in (list, typing.List):  # noqa: UP006 (the generated code's own spelling)
            return Shape("list", element=self._of_hint(args[0]) if args else ANY)
        if origin in (dict, typing.Dict):  # noqa: UP006
            return Shape("map", element=self._of_hint(args[1]) if len(args) == 2 else ANY)
        if self._is_model(hint):
            return self.of_class(hint)  # type: ignore[arg-type]
        return ANY if hint is typing.Any else SCALAR


# --------------------------------------------------------------- API versions


def _version_of_module(name: str) -> str | None:
    m = _VERSION_MODULE.match(name)
    if not m:
        return None
    return f"{m[1]}-{m[2]}-{m[3]}" + ("-preview" if m[4] else "")


@cache
def published_api_versions(package: str) -> dict[str, str]:
    """{API version: its models module} that an installed SDK package ships."""
    pkg = importlib.import_module(package)
    versions = {
        version: f"{package}.{info.name}.models"
        for info in pkgutil.iter_modules(pkg.__path__)
        if (version := _version_of_module(info.name)) is not None
    }
    if not versions:  # one API version for the whole package: its client configuration's default
        configuration = importlib.import_module(f"{package}._configuration")
        classes = [
            value
            for name, value in vars(configuration).items()
            if name.endswith("Configuration") and isinstance(value, type) and value.__module__ == configuration.__name__
        ]
        api_version = getattr(classes[0](credential=object(), subscription_id="0"), "api_version", None)
        versions[api_version or _operations_api_version(package)] = f"{package}.models"
    return versions


_OPERATION_API_VERSION = re.compile(r'_params\.pop\("api-version", "(\d{4}-\d{2}-\d{2}(?:-preview)?)"\)')


def _operations_api_version(package: str) -> str:
    """The API version most of a package's operations send by default (azure-mgmt-network 30+ has no
    client-wide version: each request builder names its own, all but a few legacy ones the same)."""
    operations = importlib.import_module(f"{package}.operations")
    sources = [
        importlib.util.find_spec(f"{package}.operations.{info.name}")
        for info in pkgutil.iter_modules(operations.__path__)
    ]
    counts: dict[str, int] = {}
    for spec in sources:
        if spec is not None and spec.origin is not None:
            with open(spec.origin, encoding="utf-8") as source:
                for version in _OPERATION_API_VERSION.findall(source.read()):
                    counts[version] = counts.get(version, 0) + 1
    if not counts:
        raise UnknownSchema(f"{package} names no API version in its configuration or its operations")
    return max(counts, key=lambda version: counts[version])


def resource_shape(full_type: str, api_version: str, resource_name: object = None) -> Shape:
    """The shape of a resource body; UnknownSchema when no pinned SDK ships type@version."""
    if full_type == "Microsoft.Web/sites/config":
        model_name = SITE_CONFIG_MODELS.get(resource_name) if isinstance(resource_name, str) else None
        if model_name is None:
            known = sorted(SITE_CONFIG_MODELS)
            raise UnknownSchema(f"{full_type} named {resource_name!r}: no schema mapped (known: {known})")
        package = "azure.mgmt.web"
    elif full_type in RESOURCE_MODELS:
        package, model_name = RESOURCE_MODELS[full_type]
    else:
        close = difflib.get_close_matches(full_type, RESOURCE_MODELS, n=1)
        hint = f"; did you mean {close[0]}?" if close else " (add it to RESOURCE_MODELS with its SDK)"
        raise UnknownSchema(f"resource type {full_type} has no published schema here{hint}")
    versions = published_api_versions(package)
    if api_version not in versions:
        raise UnknownSchema(
            f"{full_type}@{api_version}: the pinned {package.replace('.', '-')} publishes no such API version "
            f"(it has {', '.join(sorted(versions))})"
        )
    return _builder(versions[api_version]).of_class(getattr(importlib.import_module(versions[api_version]), model_name))


@cache
def _builder(models_module: str) -> _ShapeBuilder:
    return _ShapeBuilder(importlib.import_module(models_module))


# ------------------------------------------------------------------ checking


def _check(value: bicep.Value, shape: Shape, path: str, problems: list[str]) -> None:
    if isinstance(value, bicep.Raw) or shape.kind == "any" or value is None:
        return  # an expression: only the compiler knows its type
    if shape.kind == "object":
        if not isinstance(value, bicep.BObject):
            problems.append(f"{path}: expects an object")
            return
        if shape.discriminator and isinstance(chosen := value.entries.get(shape.discriminator), str):
            if chosen not in shape.subtypes:
                problems.append(f"{path}.{shape.discriminator}: {chosen!r} is not one of {sorted(shape.subtypes)}")
                return
            shape = shape.subtypes[chosen]
        for key, item in value.entries.items():
            where = f"{path}.{key}"
            if key not in shape.properties:
                close = difflib.get_close_matches(key, shape.properties, n=1)
                problems.append(f"{where}: no such property" + (f" (did you mean {close[0]}?)" if close else ""))
            elif key in shape.readonly:
                problems.append(f"{where}: read-only (set by Azure; a deployment cannot set it)")
            else:
                _check(item, shape.properties[key], where, problems)
    elif shape.kind in ("list", "map"):
        assert shape.element is not None
        if shape.kind == "list" and isinstance(value, list):
            for index, item in enumerate(value):
                _check(item, shape.element, f"{path}[{index}]", problems)
        elif shape.kind == "map" and isinstance(value, bicep.BObject):
            for key, item in value.entries.items():
                _check(item, shape.element, f"{path}[{key!r}]", problems)
        else:
            problems.append(f"{path}: expects a{'' if shape.kind == 'list' else 'n object (map)'} {shape.kind}")
    elif isinstance(value, bicep.BObject | list):
        given = "object" if isinstance(value, bicep.BObject) else "array"
        problems.append(f"{path}: expects a single value, not an {given}")


def resource_problems(resource: bicep.Declaration) -> list[str]:
    """What the published schema rejects in one resource's body ([] when all is well)."""
    where = f"line {resource.line}: {resource.name} ({resource.full_type}@{resource.api_version})"
    try:
        shape = resource_shape(resource.full_type, resource.api_version, resource.body.entries.get("name"))
    except UnknownSchema as error:
        return [f"{where}: {error}"]
    if resource.existing:
        return []
    problems: list[str] = []
    body = bicep.BObject({k: v for k, v in resource.body.entries.items() if k not in BICEP_KEYS}, [])
    _check(body, shape, "", problems)
    return [f"{where}: {problem.lstrip('.')}" for problem in problems]


def template_problems(template: bicep.Template) -> list[str]:
    return [problem for resource in template.resources for problem in resource_problems(resource)]
