"""App settings: local.settings.json `Values` into the environment, %Name% expressions, connections."""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path

from localdev.emulators import DEV_ACCOUNT, DEV_ACCOUNT_KEY

log = logging.getLogger("localdev.functions_host")

_EXPRESSION = re.compile(r"%([^%]+)%")
# Azurite's default local endpoint for `UseDevelopmentStorage=true`.
_DEV_QUEUE_ENDPOINT = "http://127.0.0.1:10001"


class SettingsError(Exception):
    """A setting is missing or malformed; the host cannot start."""


@dataclass(frozen=True)
class LocalSettings:
    """What Core Tools (AppSettingsFile) takes from local.settings.json."""

    values: dict[str, str | None] = field(default_factory=dict)  # None: JSON null, which is skipped
    connection_strings: dict[str, str] = field(default_factory=dict)
    http_port: int | None = None  # Host.LocalHttpPort
    cors_origins: tuple[str, ...] = ()  # Host.CORS, comma-separated
    cors_credentials: bool = False  # Host.CORSCredentials

    def environment(self) -> dict[str, str | None]:
        """Values, then each connection string as `ConnectionStrings:<name>`, as func start sets them."""
        return {**self.values, **{f"ConnectionStrings:{name}": v for name, v in self.connection_strings.items()}}


def read_local_settings(path: Path) -> LocalSettings:
    """local.settings.json as `func start` reads it (an absent file is no settings, as there)."""
    if not path.is_file():
        return LocalSettings()
    try:
        document = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as error:
        # func start only warns and goes on without any setting; refusing says it sooner.
        message = f"Failed to read app settings file at '{path}'. Ensure it is a valid JSON file. {error}"
        raise SettingsError(message) from error
    if not isinstance(document, dict):
        raise SettingsError(f"{path} must hold a JSON object")
    # Core Tools reads a file without "IsEncrypted" as encrypted, and then cannot decrypt its values.
    if document.get("IsEncrypted", True) is not False:
        where = 'has no "IsEncrypted": false' if "IsEncrypted" not in document else "is encrypted"
        raise SettingsError(
            f"{path} {where}: func start reads it as encrypted and fails with 'Failed to decrypt settings. "
            "Encrypted settings only be edited through 'func settings add'.' Add \"IsEncrypted\": false "
            "(or run func settings decrypt)."
        )
    values = document.get("Values") or {}
    if not isinstance(values, dict):
        raise SettingsError(f"{path}: 'Values' must be an object")
    host = document.get("Host") or {}
    if not isinstance(host, dict):
        raise SettingsError(f"{path}: 'Host' must be an object")
    port = host.get("LocalHttpPort")
    origins = str(host.get("CORS") or "")
    if "*" in origins.split(",") and host.get("CORSCredentials") is True:
        raise SettingsError(
            f"{path}: Host.CORS '*' with CORSCredentials: the CORS protocol does not allow specifying a wildcard "
            "(any) origin and credentials at the same time (ASP.NET Core refuses it); list the origins instead."
        )
    return LocalSettings(
        values={str(name): _as_text(value, path, name) for name, value in values.items()},
        connection_strings=_connection_strings(document.get("ConnectionStrings") or {}, path),
        http_port=int(port) if port else None,
        cors_origins=tuple(origin for origin in origins.split(",") if origin),
        cors_credentials=host.get("CORSCredentials") is True,
    )


def read_settings_file(path: Path) -> dict[str, str | None]:
    """The `Values` of a local.settings.json file ({} if the file does not exist, as with func start)."""
    return read_local_settings(path).values


def _as_text(value: object, path: Path, name: str) -> str | None:
    """A Values entry as Newtonsoft reads it into a string: 2 -> "2", true -> "True", null stays null."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, int | float):
        return json.dumps(value)
    # func start cannot read an object or array here: it warns and drops the whole file.
    raise SettingsError(f"{path}: Values.{name} is an object or array; app settings are strings")


def _connection_strings(section: object, path: Path) -> dict[str, str]:
    if not isinstance(section, dict):
        raise SettingsError(f"{path}: 'ConnectionStrings' must be an object")
    found: dict[str, str] = {}
    for name, entry in section.items():
        # A string, or {"ConnectionString": ..., "ProviderName": ...}.
        value = entry.get("ConnectionString") if isinstance(entry, dict) else entry
        if value is not None:
            found[str(name)] = str(value)
    return found


@dataclass
class AppliedSettings:
    """What apply_settings changed, so an in-process host can put the environment back."""

    previous: dict[str, str | None] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    def restore(self, environ: MutableMapping[str, str] | None = None) -> None:
        target = os.environ if environ is None else environ
        for name, value in self.previous.items():
            if value is None:
                target.pop(name, None)
            else:
                target[name] = value


def apply_settings(
    file_values: Mapping[str, str | None],
    overrides: Mapping[str, str] | None = None,
    environ: MutableMapping[str, str] | None = None,
) -> AppliedSettings:
    """Put settings into the environment with Core Tools' precedence.

    Core Tools (`func start`, StartHostAction.UpdateEnvironmentVariables) sets a local.settings.json
    value only when the variable is unset or empty in the environment; otherwise it keeps the
    environment's value and prints "Skipping 'X' from local settings as it's already defined in
    current environment variables." We do the same. `overrides` (--setting NAME=VALUE) are this
    host's own addition and win over both.
    """
    target = os.environ if environ is None else environ
    applied = AppliedSettings()

    def put(name: str, value: str) -> None:
        applied.previous.setdefault(name, target.get(name))
        target[name] = value

    for name, value in file_values.items():
        if not name:
            log.warning("Skipping local setting with empty key.")
        elif target.get(name):
            applied.skipped.append(name)
            log.warning(
                "Skipping '%s' from local settings as it's already defined in current environment variables.", name
            )
        elif value is None:
            applied.skipped.append(name)
            log.warning("Skipping '%s' because value is null", name)
        else:
            put(name, value)
    for name, value in (overrides or {}).items():
        put(name, value)
    return applied


def resolve(expression: str, environ: Mapping[str, str] | None = None) -> str:
    """Replace each %Name% with the app setting's value, as the host does for binding properties."""
    source = os.environ if environ is None else environ

    def lookup(match: re.Match[str]) -> str:
        value = source.get(match.group(1))
        if value is None:
            raise SettingsError(f"'%{match.group(1)}%' does not resolve to a value.")
        return value

    return _EXPRESSION.sub(lookup, expression)


def storage_connection_string(connection: str | None, environ: Mapping[str, str] | None = None) -> str:
    """The connection string a binding's `connection` names, looked up like the WebJobs SDK does.

    An empty name means AzureWebJobsStorage; a name N is tried as `AzureWebJobsN`, then as `N`.
    `UseDevelopmentStorage=true` becomes Azurite's default local endpoint.
    """
    source = os.environ if environ is None else environ
    name = connection or "Storage"
    for candidate in (f"AzureWebJobs{name}", name):
        value = source.get(candidate)
        if value:
            return _expand_development_storage(value)
    raise SettingsError(
        f"Storage connection '{name}' is not set: define the app setting 'AzureWebJobs{name}' or '{name}'"
    )


def _expand_development_storage(value: str) -> str:
    parts = dict(item.split("=", 1) for item in value.split(";") if "=" in item)
    if parts.get("UseDevelopmentStorage", "").lower() != "true":
        return value
    base = parts.get("DevelopmentStorageProxyUri", "").rstrip("/")
    endpoint = f"{base}:10001" if base else _DEV_QUEUE_ENDPOINT
    return (
        f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_ACCOUNT_KEY};"
        f"QueueEndpoint={endpoint}/{DEV_ACCOUNT};"
    )
