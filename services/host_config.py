"""What the worker needs to know of host.json (the host, not the app, applies the rest)."""

from __future__ import annotations

import json
from pathlib import Path

HOST_JSON = Path(__file__).resolve().parent.parent / "host.json"
DEFAULT_MAX_DEQUEUE_COUNT = 5  # the Functions host's default


def max_dequeue_count(override: int | None = None, host_json: Path = HOST_JSON) -> int:
    """Deliveries before the host moves a message to <queue>-poison: the worker's last chance to report.
    `override`: the app setting that overrides host.json's value, as the host honours it."""
    if override is not None:
        return override
    config = json.loads(host_json.read_text())
    return int(config.get("extensions", {}).get("queues", {}).get("maxDequeueCount", DEFAULT_MAX_DEQUEUE_COUNT))
