"""Shared helpers for the local Functions host's tests."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from localdev.processes import PROJECT_ROOT

APPS = Path(__file__).resolve().parent / "apps"
LOG_DIR = PROJECT_ROOT / ".localdev" / "test-logs"

T = TypeVar("T")


def wait_until(condition: Callable[[], T], timeout: float = 10.0, message: str = "condition") -> T:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds.

    From async code: `await asyncio.to_thread(wait_until, ...)`, so the event loop keeps serving.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {message}")
        time.sleep(0.05)


def records(record_dir: Path, function: str) -> list[dict[str, Any]]:
    folder = record_dir / function
    if not folder.is_dir():
        return []
    return [json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))]


def copy_app(name: str, destination: Path, host_json: dict[str, Any] | None = None) -> Path:
    """A private copy of a test app, optionally with another host.json."""
    target = destination / name
    shutil.copytree(APPS / name, target, ignore=shutil.ignore_patterns("__pycache__"))
    if host_json is not None:
        (target / "host.json").write_text(json.dumps(host_json))
    return target
