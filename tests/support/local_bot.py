"""The whole bot for end-to-end tests: the app in the local Functions host (a subprocess), the local
Direct Line in a thread, Azurite and the Cosmos DB stand-in from the test session."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from localdev.app_settings import app_settings
from localdev.directline import DirectLineThread
from localdev.emulators import Azurite, CosmosStandIn
from localdev.functions_host import HostProcess, spawn_host
from localdev.processes import PROJECT_ROOT, free_port

LOG_DIR = PROJECT_ROOT / ".localdev" / "test-logs"


@dataclass
class LocalBot:
    host: HostProcess
    directline: DirectLineThread
    settings: dict[str, str]

    @property
    def secret(self) -> str:
        return self.settings["DirectLineSecret"]

    def worker_log_count(self, text: str) -> int:
        return self.host.output.count(text)


@contextmanager
def running_bot(azurite: Azurite, cosmos: CosmosStandIn, **overrides: str) -> Iterator[LocalBot]:
    directline_port = free_port()
    settings = app_settings(
        azurite, cosmos, DirectLineEndpoint=f"http://127.0.0.1:{directline_port}/v3/directline", **overrides
    )
    host = spawn_host(PROJECT_ROOT, settings=settings, log_path=LOG_DIR / f"e2e-host-{uuid.uuid4().hex[:8]}.log")
    try:
        with DirectLineThread(
            f"{host.base_url}/api/messages", settings["DirectLineSecret"], port=directline_port
        ) as directline:
            yield LocalBot(host, directline, settings)
    finally:
        host.stop()
