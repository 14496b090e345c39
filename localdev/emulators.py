"""Azurite (queues and tables) and the Cosmos DB stand-in, from the project's node_modules."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from localdev.processes import (
    NODE_MODULES,
    PROJECT_ROOT,
    ManagedProcess,
    Stoppable,
    free_port,
    free_ports,
    spawn,
    stop_all,
    wait_for_port,
)

# Azurite's well-known development account (public, documented by Microsoft; not a secret).
DEV_ACCOUNT = "devstoreaccount1"
DEV_ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
# The Cosmos DB emulator's well-known key; the stand-in accepts any key.
COSMOS_DEV_KEY = "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw=="


@dataclass
class Azurite(Stoppable):
    """Azurite's queue service (`process`) and table service (`table_process`): two node processes,
    since each Azurite service has its own entry point (the all-in-one one would add a blob service
    nobody here uses)."""

    process: ManagedProcess  # the queue service
    queue_port: int
    table_process: ManagedProcess | None = None
    table_port: int | None = None

    @property
    def processes(self) -> list[ManagedProcess]:
        return [self.process] + ([self.table_process] if self.table_process is not None else [])

    @property
    def connection_string(self) -> str:
        tables = f"TableEndpoint=http://127.0.0.1:{self.table_port}/{DEV_ACCOUNT};" if self.table_port else ""
        return (
            f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_ACCOUNT_KEY};"
            f"QueueEndpoint=http://127.0.0.1:{self.queue_port}/{DEV_ACCOUNT};{tables}"
        )

    def stop(self) -> None:
        stop_all(self.processes, 10.0)  # both at once: neither waits for the other's grace period


@dataclass
class CosmosStandIn(Stoppable):
    process: ManagedProcess
    port: int

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    key: str = COSMOS_DEV_KEY

    def stop(self) -> None:
        self.process.stop()


def _require_node_modules() -> None:
    if not (NODE_MODULES / "azurite").is_dir():
        raise RuntimeError("node_modules is missing: run `npm ci` in the project root (make does this for you)")


# Both services: in memory; --skipApiVersionCheck because the Python SDKs are newer than Azurite;
# --loose ignores headers Azurite does not know; --disableTelemetry because it would try to reach
# Application Insights, noisily failing offline.
_AZURITE_OPTIONS = ("--inMemoryPersistence", "--skipApiVersionCheck", "--loose", "--disableTelemetry")


def _azurite_service(service: str, port: int, log_dir: Path | None) -> ManagedProcess:
    """One Azurite service (`queue` or `table`) on 127.0.0.1:port; its log is <log_dir>/azurite[-table].log."""
    return spawn(
        "azurite" if service == "queue" else f"azurite-{service}",
        [
            "node",
            str(NODE_MODULES / "azurite" / "dist" / "src" / service / "main.js"),
            f"--{service}Host", "127.0.0.1",
            f"--{service}Port", str(port),
            *_AZURITE_OPTIONS,
        ],
        log_dir,
    )  # fmt: skip


def start_azurite(queue_port: int | None = None, log_dir: Path | None = None, table_port: int | None = None) -> Azurite:
    """Azurite's queue and table services, in memory, on the given ports or free ones; returns once both listen.

    Azurite and the Cosmos DB stand-in die with this process, like every child (localdev/processes.py)."""
    _require_node_modules()
    free = iter(free_ports(2))  # picked together, so the two are never the same port
    queue_port, table_port = queue_port or next(free), table_port or next(free)
    started: list[ManagedProcess] = []
    try:
        # Both start side by side (each takes about a second of node start-up), then both are awaited.
        started.append(_azurite_service("queue", queue_port, log_dir))
        started.append(_azurite_service("table", table_port, log_dir))
        wait_for_port("127.0.0.1", queue_port, 30, started[0].popen)
        wait_for_port("127.0.0.1", table_port, 30, started[1].popen)
    except BaseException:
        stop_all(started, 5.0)
        raise
    return Azurite(process=started[0], queue_port=queue_port, table_process=started[1], table_port=table_port)


def start_cosmos(port: int | None = None, log_dir: Path | None = None) -> CosmosStandIn:
    _require_node_modules()
    port = port or free_port()
    process = spawn(
        "cosmos",
        ["node", str(PROJECT_ROOT / "localdev" / "cosmos" / "server.js"), "--port", str(port)],
        log_dir,
    )
    wait_for_port("127.0.0.1", port, 30, process.popen)
    return CosmosStandIn(process=process, port=port)


@dataclass
class Emulators(Stoppable):
    """Azurite and the Cosmos DB stand-in, started together: `with start_emulators(log_dir) as emulators:`."""

    azurite: Azurite
    cosmos: CosmosStandIn

    def stop(self) -> None:
        self.cosmos.stop()
        self.azurite.stop()


def start_emulators(
    log_dir: Path | None = None,
    queue_port: int | None = None,
    cosmos_port: int | None = None,
    table_port: int | None = None,
) -> Emulators:
    """Both emulators, on the given ports or free ones; returns once both listen."""
    azurite = start_azurite(queue_port, log_dir, table_port)
    try:
        cosmos = start_cosmos(cosmos_port, log_dir)
    except BaseException:
        azurite.stop()
        raise
    return Emulators(azurite, cosmos)
