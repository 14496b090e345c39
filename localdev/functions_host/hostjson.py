"""The parts of host.json this host honours, with the Functions runtime's defaults."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localdev.functions_host.ncrontab import parse_timespan
from localdev.functions_host.settings import SettingsError

log = logging.getLogger("localdev.functions_host")

# App settings named AzureFunctionsJobHost__a__b override host.json's a.b, as in the real host.
_OVERRIDE_PREFIX = "AzureFunctionsJobHost__"


# Queue options the storage extension (v5) refuses, as it would.
_MAX_BATCH_SIZE = 32
_MIN_POLLING_INTERVAL = 0.1
# The runtime's bounds for functionTimeout (ScriptJobHostOptionsSetup): at least 1 s; no more than
# 10 min on the Consumption plan; 30 min by default on every plan but Consumption (func start too).
MIN_FUNCTION_TIMEOUT = 1.0
CONSUMPTION_MAX_FUNCTION_TIMEOUT = 600.0
DEFAULT_FUNCTION_TIMEOUT = 1800.0


def processor_count(environ: Mapping[str, str]) -> int:
    """The storage extension's SkuUtility.ProcessorCount: 1 on the Consumption plan, else the cores."""
    if environ.get("WEBSITE_SKU", "").lower() == "dynamic":
        return 1
    return os.cpu_count() or 1


@dataclass(frozen=True)
class QueueOptions:
    """extensions.queues, with the storage extension's defaults (v5)."""

    message_encoding: str = "base64"
    max_polling_interval: float = 60.0
    visibility_timeout: float = 0.0
    batch_size: int = 16
    max_dequeue_count: int = 5
    # Default batchSize/2 times the processor count (QueuesOptions.NewBatchThreshold).
    new_batch_threshold: int = 8


@dataclass(frozen=True)
class HostConfig:
    route_prefix: str = "api"
    queues: QueueOptions = QueueOptions()
    function_timeout: float | None = DEFAULT_FUNCTION_TIMEOUT  # None: no limit ("-1")
    extension_bundle: str | None = None  # extensionBundle.id, when host.json names one


def seconds(value: object, what: str) -> float:
    """A host.json duration: a TimeSpan string ("00:00:02"), as the runtime binds TimeSpan options.

    The runtime reads a bare number as days (TimeSpan.Parse("2000") is 2000 days), which is never
    what was meant (Functions 1.x took milliseconds): refuse it, except 0.
    """
    if isinstance(value, bool) or value is None:
        raise SettingsError(f"host.json {what}: '{value}' is not a TimeSpan (hh:mm:ss)")
    text = str(value).strip()
    try:
        span = parse_timespan(text)
    except ValueError as error:
        raise SettingsError(f"host.json {what}: {error}") from error
    if span is None:
        raise SettingsError(f"host.json {what}: '{value}' is not a TimeSpan (hh:mm:ss)")
    if isinstance(value, int | float) or text.lstrip("-").isdigit():
        if span:
            raise SettingsError(
                f"host.json {what}: {value} is a bare number, which the Functions runtime reads as "
                f"{text} days; write a TimeSpan such as '00:00:02' (2 seconds)"
            )
    return span.total_seconds()


def _integer(value: object, what: str, low: int, high: int | None = None) -> int:
    try:
        number = int(str(value))
    except ValueError as error:
        raise SettingsError(f"host.json {what}: '{value}' is not an integer") from error
    if number < low or (high is not None and number > high):
        bounds = f"{low}-{high}" if high is not None else f"at least {low}"
        raise SettingsError(f"host.json {what}: {number} must be {bounds}")
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
    """host.json with AzureFunctionsJobHost__ overrides; the runtime's checks on `version`."""
    path = app_dir / "host.json"
    # No file: the runtime writes a default one ({"version": "2.0"}) and goes on.
    document: dict[str, Any] = {"version": "2.0"}
    if path.is_file():
        try:
            document = json.loads(path.read_text(encoding="utf-8-sig"))
        except json.JSONDecodeError as error:
            raise SettingsError(f"Unable to parse host configuration file '{path}': {error}") from error
        if not isinstance(document, dict):
            raise SettingsError(f"Unable to parse host configuration file '{path}': not a JSON object")
        if not document:
            document = {"version": "2.0"}
    version = document.get("version")
    if version in (None, ""):
        raise SettingsError(
            "The host.json file is missing the required 'version' property. "
            "See https://aka.ms/functions-hostjson for steps to migrate the configuration file."
        )
    if str(version) != "2.0":
        raise SettingsError(
            f"'{version}' is an invalid value for host.json 'version' property. "
            "We recommend you set the 'version' property to '2.0'."
        )
    for name, value in environ.items():
        if name.startswith(_OVERRIDE_PREFIX):
            _set(document, name[len(_OVERRIDE_PREFIX) :].split("__"), value)
    return document


def _function_timeout(value: object) -> float | None:
    if value is None:
        return DEFAULT_FUNCTION_TIMEOUT
    timeout = seconds(value, "functionTimeout") if str(value).strip() != "-1" else -86400.0
    if timeout == -86400.0:  # TimeSpan "-1" (minus one day): no limit, except on Consumption
        return None
    if timeout < MIN_FUNCTION_TIMEOUT:
        raise SettingsError(f"host.json functionTimeout: {value} is below the runtime's minimum of 00:00:01")
    if timeout > CONSUMPTION_MAX_FUNCTION_TIMEOUT:
        log.info(
            "host.json functionTimeout %s is over 00:10:00: the Consumption plan refuses it (Premium, "
            "Dedicated and Flex Consumption take it).",
            value,
        )
    return timeout


def load_host_config(app_dir: Path, environ: Mapping[str, str]) -> HostConfig:
    document = read_host_json(app_dir, environ)
    prefix = _get(document, "extensions", "http", "routePrefix")
    queues = _get(document, "extensions", "queues") or {}

    encoding = str(_get(queues, "messageEncoding") or "base64").lower()
    if encoding not in ("base64", "none"):
        raise SettingsError(f"host.json extensions.queues.messageEncoding: '{encoding}' is not base64 or none")
    batch_size = _integer(_get(queues, "batchSize") or 16, "extensions.queues.batchSize", 1, _MAX_BATCH_SIZE)
    threshold_value = _get(queues, "newBatchThreshold")
    threshold = (
        batch_size // 2 * processor_count(environ)
        if threshold_value is None
        else _integer(threshold_value, "extensions.queues.newBatchThreshold", 0)
    )
    polling = _get(queues, "maxPollingInterval")
    max_polling = seconds(polling, "extensions.queues.maxPollingInterval") if polling is not None else 60.0
    if max_polling < _MIN_POLLING_INTERVAL:
        raise SettingsError(
            f"host.json extensions.queues.maxPollingInterval: {polling} is less than the minimum, 00:00:00.1"
        )
    visibility = _get(queues, "visibilityTimeout")
    dequeue = _get(queues, "maxDequeueCount")
    bundle = _get(document, "extensionBundle", "id")
    return HostConfig(
        route_prefix=("api" if prefix is None else str(prefix)).strip("/"),
        queues=QueueOptions(
            message_encoding=encoding,
            max_polling_interval=max_polling,
            visibility_timeout=seconds(visibility, "extensions.queues.visibilityTimeout")
            if visibility is not None
            else 0.0,
            batch_size=batch_size,
            max_dequeue_count=_integer(dequeue, "extensions.queues.maxDequeueCount", 1) if dequeue is not None else 5,
            new_batch_threshold=threshold,
        ),
        function_timeout=_function_timeout(_get(document, "functionTimeout")),
        extension_bundle=str(bundle) if bundle else None,
    )
