"""The parts of host.json this host honours, with the Functions runtime's defaults."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localdev.functions_host.ncrontab import parse_timespan
from localdev.functions_host.settings import SettingsError

# App settings named AzureFunctionsJobHost__a__b override host.json's a.b, as in the real host.
_OVERRIDE_PREFIX = "AzureFunctionsJobHost__"


@dataclass(frozen=True)
class QueueOptions:
    """extensions.queues, with the storage extension's defaults (v5)."""

    message_encoding: str = "base64"
    max_polling_interval: float = 60.0
    visibility_timeout: float = 0.0
    batch_size: int = 16
    max_dequeue_count: int = 5
    new_batch_threshold: int = 8


@dataclass(frozen=True)
class HostConfig:
    route_prefix: str = "api"
    queues: QueueOptions = QueueOptions()
    function_timeout: float | None = None


def seconds(value: object, what: str) -> float:
    """A host.json duration: a TimeSpan string ("00:00:02") or a number of milliseconds."""
    if isinstance(value, bool):
        raise SettingsError(f"host.json {what}: '{value}' is not a duration")
    if isinstance(value, int | float):
        return float(value) / 1000
    text = str(value).strip()
    if text.isdigit():
        return int(text) / 1000
    try:
        span = parse_timespan(text)
    except ValueError as error:
        raise SettingsError(f"host.json {what}: {error}") from error
    if span is None:
        raise SettingsError(f"host.json {what}: '{value}' is not a TimeSpan (hh:mm:ss)")
    return span.total_seconds()


def _integer(value: object, what: str, low: int, high: int) -> int:
    try:
        number = int(str(value))
    except ValueError as error:
        raise SettingsError(f"host.json {what}: '{value}' is not an integer") from error
    if not low <= number <= high:
        raise SettingsError(f"host.json {what}: {number} is outside {low}-{high}")
    return number


def _get(document: Mapping[str, Any], *path: str) -> Any:
    """Case-insensitive lookup: the runtime's configuration keys are case-insensitive."""
    node: Any = document
    for key in path:
        if not isinstance(node, Mapping):
            return None
        node = next((value for name, value in node.items() if name.lower() == key.lower()), None)
    return node


def _set(document: dict[str, Any], path: list[str], value: str) -> None:
    node = document
    for key in path[:-1]:
        existing = next((name for name in node if name.lower() == key.lower()), key)
        child = node.get(existing)
        if not isinstance(child, dict):
            child = node[existing] = {}
        node = child
    existing = next((name for name in node if name.lower() == path[-1].lower()), path[-1])
    node[existing] = value


def read_host_json(app_dir: Path, environ: Mapping[str, str]) -> dict[str, Any]:
    path = app_dir / "host.json"
    document: dict[str, Any] = {}
    if path.is_file():
        try:
            document = json.loads(path.read_text(encoding="utf-8-sig"))
        except json.JSONDecodeError as error:
            raise SettingsError(f"{path} is not valid JSON: {error}") from error
    for name, value in environ.items():
        if name.startswith(_OVERRIDE_PREFIX):
            _set(document, name[len(_OVERRIDE_PREFIX) :].split("__"), value)
    return document


def load_host_config(app_dir: Path, environ: Mapping[str, str]) -> HostConfig:
    document = read_host_json(app_dir, environ)
    prefix = _get(document, "extensions", "http", "routePrefix")
    queues = _get(document, "extensions", "queues") or {}

    encoding = str(_get(queues, "messageEncoding") or "base64").lower()
    if encoding not in ("base64", "none"):
        raise SettingsError(f"host.json extensions.queues.messageEncoding: '{encoding}' is not base64 or none")
    batch_size = _integer(_get(queues, "batchSize") or 16, "extensions.queues.batchSize", 1, 32)
    threshold_value = _get(queues, "newBatchThreshold")
    threshold = (
        batch_size // 2
        if threshold_value is None
        else _integer(threshold_value, "extensions.queues.newBatchThreshold", 0, 10_000)
    )
    polling = _get(queues, "maxPollingInterval")
    visibility = _get(queues, "visibilityTimeout")
    dequeue = _get(queues, "maxDequeueCount")
    timeout = _get(document, "functionTimeout")
    return HostConfig(
        route_prefix=("api" if prefix is None else str(prefix)).strip("/"),
        queues=QueueOptions(
            message_encoding=encoding,
            # The extension refuses less than 100 ms.
            max_polling_interval=max(0.1, seconds(polling, "maxPollingInterval")) if polling is not None else 60.0,
            visibility_timeout=seconds(visibility, "visibilityTimeout") if visibility is not None else 0.0,
            batch_size=batch_size,
            max_dequeue_count=_integer(dequeue, "maxDequeueCount", 1, 1_000) if dequeue is not None else 5,
            new_batch_threshold=threshold,
        ),
        function_timeout=seconds(timeout, "functionTimeout") if timeout not in (None, "-1") else None,
    )
