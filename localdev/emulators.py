"""Azurite (queues) and the Cosmos DB stand-in, from the project's node_modules."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from localdev.processes import NODE_MODULES, PROJECT_ROOT, ManagedProcess, Stoppable, free_port, spawn, wait_for_port

# Azurite's well-known development account (public, documented by Microsoft; not a secret).
DEV_ACCOUNT = "devstoreaccount1"
DEV_ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
# The Cosmos DB emulator's well-known key; the stand-in accepts any key.
COSMOS_DEV_KEY = "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw=="


@dataclass
class Azurite(Stoppable):
    process: ManagedProcess
    queue_port: int

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_ACCOUNT_KEY};"
            f"QueueEndpoint=http://127.0.0.1:{self.queue_port}/{DEV_ACCOUNT};"
        )

    def stop(self) -> None:
        self.process.stop()


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


def start_azurite(queue_port: int | None = None, log_dir: Path | None = None) -> Azurite:
    """Azurite's queue service, in memory. --skipApiVersionCheck: the Python SDK is newer than Azurite.

    Azurite and the Cosmos DB stand-in die with this process, like every child (localdev/processes.py)."""
    _require_node_modules()
    port = queue_port or free_port()
    process = spawn(
        "azurite",
        [
            "node",
            str(NODE_MODULES / "azurite" / "dist" / "src" / "queue" / "main.js"),
            "--queueHost", "127.0.0.1",
            "--queuePort", str(port),
            "--inMemoryPersistence",
            "--skipApiVersionCheck",
            "--loose",
            "--disableTelemetry",  # it would try to reach Application Insights, noisily failing offline
        ],
        log_dir,
    )
    wait_for_port("127.0.0.1", port, 30, process.popen)
    return Azurite(process=process, queue_port=port)


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
    log_dir: Path | None = None, queue_port: int | None = None, cosmos_port: int | None = None
) -> Emulators:
    """Both emulators, on the given ports or free ones; returns once both listen."""
    azurite = start_azurite(queue_port, log_dir)
    try:
        cosmos = start_cosmos(cosmos_port, log_dir)
    except BaseException:
        azurite.stop()
        raise
    return Emulators(azurite, cosmos)
