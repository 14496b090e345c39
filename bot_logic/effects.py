"""The port through which bot logic asks for effects that must not be lost.

Bot logic decides that a user must hear a result, or that an operation must start; how that
survives a lost commit race, a failing channel or a crashed host is the turn runner's business
(services/turns/unit_of_work.py implements this protocol with a transactional outbox). Bot logic only
sees the protocol, so it does not depend on how turns are committed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from botbuilder.core import TurnContext


class DurableEffects(Protocol):
    def reply_durably(self, context: TurnContext, text: str) -> None:
        """Reply with `text`, committed with the turn's state and sent until delivered (at least once)."""
        ...

    def request_operation(
        self, context: TurnContext, request: Mapping[str, Any], deadline: float, failure_reply: str
    ) -> None:
        """Send `request` to the worker once the turn's state is committed, retried until delivered or
        `deadline`; if the first attempt fails, the user is told `failure_reply`."""
        ...
