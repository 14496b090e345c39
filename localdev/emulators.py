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
    """Azurite's queue service (`process`), table service (`table_process`) and, for `func start`,
    its blob service (`blob_process`): a node process each, since each Azurite service has its own
    entry point. The project's local host needs no blobs; the real host keeps timer schedule status
    and singleton locks in blobs of AzureWebJobsStorage."""

    process: ManagedProcess  # the queue service
    queue_port: int
    table_process: ManagedProcess | None = None
    table_port: int | None = None
    blob_process: ManagedProcess | None = None
    blob_port: int | None = None

    @property
    def processes(self) -> list[ManagedProcess]:
        return [p for p in (self.process, self.table_process, self.blob_process) if p is not None]

    @property
    def connection_string(self) -> str:
        tables = f"TableEndpoint=http://127.0.0.1:{self.table_port}/{DEV_ACCOUNT};" if self.table_port else ""
        blobs = f"BlobEndpoint=http://127.0.0.1:{self.blob_port}/{DEV_ACCOUNT};" if self.blob_port else ""
        return (
            f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_ACCOUNT_KEY};"
            f"QueueEndpoint=http://127.0.0.1:{self.queue_port}/{DEV_ACCOUNT};{tables}{blobs}"
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
    """One Azurite service (`queue`, `table` or `blob`) on 127.0.0.1:port; its log is
    <log_dir>/azurite[-table|-blob].log."""
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


def start_azurite(
    queue_port: int | None = None,
    log_dir: Path | None = None,
    table_port: int | None = None,
    *,
    blobs: bool = False,
    blob_port: int | None = None,
) -> Azurite:
    """Azurite's queue and table services (and blob service with `blobs`), in memory, on the given ports
    or free ones; returns once all listen.

    Azurite and the Cosmos DB stand-in die with this process, like every child (localdev/processes.py)."""
    _require_node_modules()
    free = iter(free_ports(3))  # picked together, so no two are the same port
    ports = {"queue": queue_port or next(free), "table": table_port or next(free)}
    if blobs:
        ports["blob"] = blob_port or next(free)
    started: dict[str, ManagedProcess] = {}
    try:
        # All start side by side (each takes about a second of node start-up), then all are awaited.
        for service, port in ports.items():
            started[service] = _azurite_service(service, port, log_dir)
        for service, port in ports.items():
            wait_for_port("127.0.0.1", port, 30, started[service].popen)
    except BaseException:
        stop_all(list(started.values()), 5.0)
        raise
    return Azurite(
        process=started["queue"],
        queue_port=ports["queue"],
        table_process=started["table"],
        table_port=ports["table"],
        blob_process=started.get("blob"),
        blob_port=ports.get("blob"),
    )


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
    *,
    blobs: bool = False,
) -> Emulators:
    """Both emulators, on the given ports or free ones; returns once both listen. `blobs`: Azurite's
    blob service too, on a free port (the real host, `func start`, needs it)."""
    azurite = start_azurite(queue_port, log_dir, table_port, blobs=blobs)
    try:
        cosmos = start_cosmos(cosmos_port, log_dir)
    except BaseException:
        azurite.stop()
        raise
    return Emulators(azurite, cosmos)
