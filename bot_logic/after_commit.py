"""The port through which bot logic asks for effects that must wait for the turn's commit.

A queue message that starts an operation must not leave before the state that expects its
result is saved. The turn runner (services/unit_of_work.py) implements this; bot logic only
sees the protocol, so it does not depend on how turns are committed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from botbuilder.core import TurnContext

Effect = Callable[[], Awaitable[None]]


class AfterCommit(Protocol):
    def after_commit(self, context: TurnContext, effect: Effect, failure_reply: str | None = None) -> None:
        """Run `effect` once the turn's state is committed; if it fails, tell the user `failure_reply`."""
        ...
