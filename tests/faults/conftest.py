"""Fault injection against the real emulators: a rig per test, and the table of faults survived.

Each test records what the user saw and how often the result arrived (`survived(...)`); at the end of
the session the rows are printed with each test's outcome and written to .localdev/test-logs/faults.md.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Generator
from dataclasses import dataclass
from pathlib import Path

import pytest

from localdev.emulators import Azurite, CosmosStandIn
from tests.faults.harness import Rig, fault_rig
from tests.support.clock import FakeClock
from tests.support.connector import RecordingConnector

SUMMARY_PATH = Path(__file__).resolve().parents[2] / ".localdev" / "test-logs" / "faults.md"


@dataclass
class Row:
    nodeid: str
    fault: str
    user_saw: str
    results: int
    outcome: str = "not run to the end"


_ROWS: dict[str, Row] = {}

Survived = Callable[[str, str, int], None]


@pytest.fixture
def survived(request: pytest.FixtureRequest) -> Survived:
    """Record this test's row of the table: the fault, what the user saw, how often the result came."""

    def record(fault: str, user_saw: str, results: int) -> None:
        _ROWS[request.node.nodeid] = Row(request.node.nodeid, fault, user_saw, results)

    return record


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, None, None]:
    outcome = yield
    report = outcome.get_result()
    row = _ROWS.get(item.nodeid)
    if row is None or report.when != "call":
        return
    if hasattr(report, "wasxfail"):
        row.outcome = "xfail (known bug)" if report.skipped else "XPASS"
    else:
        row.outcome = report.outcome


def _table() -> str:
    lines = [
        "| fault | what the user saw | results shown | test |",
        "|---|---|---|---|",
    ]
    for row in _ROWS.values():
        saw = row.user_saw.replace("|", "\\|")
        lines.append(f"| {row.fault} | {saw} | {row.results} | {row.outcome} |")
    return "\n".join(lines) + "\n"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _ROWS:
        return
    table = _table()
    terminalreporter.section("faults survived")
    terminalreporter.write(table)
    SUMMARY_PATH.parent.mkdir(parents=True, exist_ok=True)
    SUMMARY_PATH.write_text("# Faults survived\n\n" + table, encoding="utf-8")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def rig(
    azurite: Azurite, cosmos: CosmosStandIn, connector: RecordingConnector, clock: FakeClock
) -> AsyncIterator[Rig]:
    async with fault_rig(azurite, cosmos, connector, clock) as built:
        yield built


@pytest.fixture
def lost(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    """The outbox's `LOST` log lines so far (an effect dropped at its deadline)."""
    caplog.set_level(logging.WARNING, logger="services.turns.outbox")
    return lambda: [r.getMessage() for r in caplog.records if r.getMessage().startswith("LOST")]
