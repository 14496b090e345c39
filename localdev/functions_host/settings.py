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


def read_settings_file(path: Path) -> dict[str, str]:
    """The `Values` of a local.settings.json file ({} if the file does not exist, as with func start)."""
    if not path.is_file():
        return {}
    try:
        document = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as error:
        raise SettingsError(f"{path} is not valid JSON: {error}") from error
    if document.get("IsEncrypted"):
        raise SettingsError(f"{path} is encrypted; decrypt it (func settings decrypt) or set IsEncrypted to false")
    values = document.get("Values") or {}
    if not isinstance(values, dict):
        raise SettingsError(f"{path}: 'Values' must be an object")
    return {str(name): _as_text(value) for name, value in values.items()}


def _as_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else json.dumps(value)


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
    file_values: Mapping[str, str],
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
