"""The local stack for benchmarks: emulators, the local Direct Line, the Functions host, and the
Cosmos DB stand-in's request counters (GET /_localdev/stats)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from localdev.app_settings import app_settings
from localdev.directline import DirectLineProcess, start_directline_process
from localdev.emulators import Azurite, CosmosStandIn, start_azurite, start_cosmos
from localdev.functions_host import HostProcess, spawn_host
from localdev.processes import PROJECT_ROOT, free_port

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
WORK_DIR = PROJECT_ROOT / ".localdev" / "bench"  # git-ignored: logs and the instrumented app
LOG_DIR = WORK_DIR / "logs"
# Never fires during a run: the sweeper is measured on its own, in process.
QUIET_SWEEP_SCHEDULE = "0 0 0 1 1 *"


@dataclass
class Emulators:
    azurite: Azurite
    cosmos: CosmosStandIn


@contextmanager
def emulators() -> Iterator[Emulators]:
    azurite = start_azurite(log_dir=LOG_DIR)
    try:
        cosmos = start_cosmos(log_dir=LOG_DIR)
        try:
            yield Emulators(azurite, cosmos)
        finally:
            cosmos.stop()
    finally:
        azurite.stop()


def bench_settings(stack: Emulators, directline_url: str, **overrides: str) -> dict[str, str]:
    """The app's settings against the benchmark's emulators: production-like expiry, no sweeps."""
    return app_settings(
        stack.azurite,
        stack.cosmos,
        **{
            "ExpireAfterSeconds": "1800",
            "CosmosDbTimeToLive": "86400",
            "DirectLineEndpoint": f"{directline_url.rstrip('/')}/v3/directline",
            "SweepSchedule": QUIET_SWEEP_SCHEDULE,
            **overrides,
        },
    )


@dataclass
class BotStack:
    host: HostProcess
    directline: DirectLineProcess
    settings: dict[str, str]

    @property
    def messages_url(self) -> str:
        return f"{self.host.base_url}/api/messages"

    @property
    def host_pid(self) -> int:
        return self.host.process.popen.pid


@contextmanager
def bot_stack(
    stack: Emulators, name: str, app_dir: Path = PROJECT_ROOT, max_conversations: int = 5000, **overrides: str
) -> Iterator[BotStack]:
    """The app in the local Functions host (a subprocess) and the local Direct Line (another one)."""
    host_port, directline_port = free_port(), free_port()
    directline_url = f"http://127.0.0.1:{directline_port}/"
    settings = bench_settings(stack, directline_url, **overrides)
    host = spawn_host(app_dir, port=host_port, settings=settings, log_path=LOG_DIR / f"{name}-host.log")
    try:
        directline = start_directline_process(
            f"{host.base_url}/api/messages",
            settings["DirectLineSecret"],
            port=directline_port,
            log_dir=LOG_DIR,
            extra_args=["--max-conversations", str(max_conversations), "--log-level", "WARNING"],
        )
        try:
            yield BotStack(host, directline, settings)
        finally:
            directline.stop()
    finally:
        host.stop()


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
