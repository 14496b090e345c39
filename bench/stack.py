"""The local stack for benchmarks (the shared launcher, localdev/stack.py, with production-like
settings), and the Cosmos DB stand-in's request counters (GET /_localdev/stats)."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp

from localdev.app_settings import app_settings
from localdev.emulators import Emulators, start_emulators
from localdev.processes import PROJECT_ROOT
from localdev.stack import LocalStack, start_stack

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
WORK_DIR = PROJECT_ROOT / ".localdev" / "bench"  # git-ignored: logs and the instrumented app
LOG_DIR = WORK_DIR / "logs"
# Production-like expiry; the sweeper never fires during a run: it is measured on its own, in process.
# A plain turn is a message the menu does not understand (a retry prompt): with the default
# HandoffAfterMisunderstandings the third one would hand the user to a person instead.
BENCH_SETTINGS = {
    "ExpireAfterSeconds": "1800",
    "CosmosDbTimeToLive": "86400",
    "SweepSchedule": "0 0 0 1 1 *",
    "HandoffAfterMisunderstandings": "0",
    # The load starts many operations per user: no per-user quota.
    "MaxRunningOperationsPerUser": "0",
    "OperationStartsPerUserPerHour": "0",
}


def emulators() -> Emulators:
    """`with emulators() as stack:` Azurite and the Cosmos DB stand-in for the whole run."""
    return start_emulators(LOG_DIR)


def bench_settings(stack: Emulators, directline_url: str, **overrides: str) -> dict[str, str]:
    """The app's settings against the benchmark's emulators, for code that runs the app in process."""
    return {
        **app_settings(stack.azurite, stack.cosmos),
        **BENCH_SETTINGS,
        "DirectLineEndpoint": f"{directline_url.rstrip('/')}/v3/directline",
        **overrides,
    }


def bot_stack(
    stack: Emulators,
    name: str,
    app_dir: Path = PROJECT_ROOT,
    instances: int = 1,
    **overrides: str,
) -> LocalStack:
    """`with bot_stack(stack, "turns") as bot:` the app in the local Functions host and the local Direct Line;
    `instances=2`: two hosts behind the stack's round-robin balancer, as a scaled-out app."""
    return start_stack(
        LOG_DIR,
        emulators=stack,
        app_dir=app_dir,
        settings={**BENCH_SETTINGS, **overrides},
        directline_args=["--log-level", "WARNING"],
        name=name,
        instances=instances,
    )


def instrumented_app_dir() -> Path:
    """A folder holding the project's host.json and bench/instrumented_app.py as the app script
    (the host imports PYTHON_SCRIPT_FILE_NAME from the app folder; the project's modules stay
    importable because the host runs from the project root)."""
    app_dir = WORK_DIR / "instrumented-app"
    app_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(PROJECT_ROOT / "host.json", app_dir / "host.json")
    shutil.copyfile(BENCH_DIR / "instrumented_app.py", app_dir / "bench_instrumented_app.py")
    return app_dir


class CosmosStats:
    """The stand-in's request counters, by kind: pointRead, create, replace, upsert, delete, query, other."""

    def __init__(self, endpoint: str, session: aiohttp.ClientSession) -> None:
        self._base = endpoint.rstrip("/")
        self._session = session

    async def reset(self) -> None:
        async with self._session.post(f"{self._base}/_localdev/stats/reset") as response:
            response.raise_for_status()

    async def read(self) -> dict[str, Any]:
        async with self._session.get(f"{self._base}/_localdev/stats") as response:
            response.raise_for_status()
            return dict(await response.json())

    async def bulk_upsert(self, database: str, container: str, docs: list[dict[str, Any]]) -> None:
        async with self._session.post(f"{self._base}/_localdev/bulk/{database}/{container}", json=docs) as response:
            if response.status != 200:
                raise RuntimeError(f"bulk load failed: {response.status} {await response.text()}")


READ_KINDS = ("pointRead", "query")
WRITE_KINDS = ("create", "replace", "upsert", "delete")


def reads_and_writes(kinds: Mapping[str, int]) -> tuple[int, int]:
    return sum(kinds.get(k, 0) for k in READ_KINDS), sum(kinds.get(k, 0) for k in WRITE_KINDS)


def peak_rss_mib(pid: int) -> dict[str, float]:
    """VmHWM (peak resident set) and VmRSS of a process, from /proc, in MiB."""
    values: dict[str, float] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, rest = line.partition(":")
            if name in ("VmHWM", "VmRSS"):
                values[name] = round(int(rest.split()[0]) / 1024, 1)
    except OSError:
        pass
    return values
