"""Shared helpers for the local Functions host's tests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from localdev.processes import PROJECT_ROOT

APPS = Path(__file__).resolve().parent / "apps"
LOG_DIR = PROJECT_ROOT / ".localdev" / "test-logs"



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
