"""Session-wide emulators: started once on free ports, stopped at the end."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from localdev.emulators import Azurite, CosmosStandIn, start_azurite, start_cosmos
from tests.support.connector import RecordingConnector

LOG_DIR = Path(__file__).resolve().parent.parent / ".localdev" / "test-logs"


EMULATOR_FIXTURES = {"azurite", "cosmos"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Keep the `emulators` marker true: `-m "not emulators"` must run without Azurite or Cosmos."""
    unmarked = [
        item.nodeid
        for item in items
        if EMULATOR_FIXTURES & set(getattr(item, "fixturenames", ())) and item.get_closest_marker("emulators") is None
    ]
    if unmarked:
        raise pytest.UsageError("tests that use the emulators lack @pytest.mark.emulators: " + ", ".join(unmarked))


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    emulator = start_azurite(log_dir=LOG_DIR)
    yield emulator
    emulator.stop()


@pytest.fixture(scope="session")
def cosmos() -> Iterator[CosmosStandIn]:
    emulator = start_cosmos(log_dir=LOG_DIR)
    yield emulator
    emulator.stop()


@pytest.fixture
async def connector() -> AsyncIterator[RecordingConnector]:
    async with RecordingConnector() as recorder:
        yield recorder
