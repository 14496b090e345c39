"""The whole bot for end-to-end tests: the shared launcher (localdev/stack.py) with the test
session's Azurite and Cosmos DB stand-in: the app in the local Functions host, the local Direct Line."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from localdev.emulators import Azurite, CosmosStandIn, Emulators
from localdev.processes import PROJECT_ROOT
from localdev.stack import LocalStack, start_stack

LOG_DIR = PROJECT_ROOT / ".localdev" / "test-logs"


def running_bot(
    azurite: Azurite,
    cosmos: CosmosStandIn,
    *,
    instances: int = 1,
    host_args: Sequence[str] = (),
    **overrides: str,
) -> LocalStack:
    """`with running_bot(azurite, cosmos, ExpireAfterSeconds="2") as bot:`; fresh database, queue and secrets.

    `instances=2`: two instances of the app behind the stack's round-robin balancer (bot.messages_url),
    as Azure scales out; `host_args` go to each local host (e.g. --singleton-recovery-interval)."""
    return start_stack(
        LOG_DIR,
        emulators=Emulators(azurite, cosmos),
        settings=overrides,
        name=f"e2e-{uuid.uuid4().hex[:8]}",
        instances=instances,
        host_args=host_args,
    )
