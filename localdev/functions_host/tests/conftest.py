"""Fixtures for the local Functions host's tests. They start what they need themselves (Azurite
from node_modules for the queue tests), so `pytest localdev/functions_host` runs on its own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from localdev.emulators import Azurite, start_azurite
from localdev.functions_host import HostProcess, spawn_host
from localdev.functions_host.tests.helpers import APPS, LOG_DIR


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    with start_azurite(log_dir=LOG_DIR) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def http_records(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("http-records")


@pytest.fixture(scope="module")
def http_host(http_records: Path) -> Iterator[HostProcess]:
    host = spawn_host(
        APPS / "http_app",
        settings={"RECORD_DIR": str(http_records)},
        log_path=LOG_DIR / "functions-host-http.log",
    )
    yield host
    assert host.stop() == 0
