"""How many long operations one user may run: at once, and per hour, across all their conversations.

Operations cost CPU for minutes; without a quota any Direct Line user could start them in as many
conversations as they like. The count lives in the user's state (shared by their conversations), as
{"running": {operation id: {"deadline": …, "conversation": its storage key}}, "starts": [start times]}:

  * an operation counts as running from its start while its conversation still waits for it, and
    at most until its deadline. Its end (result, cancel, timeout, expiry) is not written here: that
    would cost every result turn a read and a write of the user's state. Instead a start that finds
    the user at the limit reads the conversations of the operations counted (at most the limit's
    number of point reads, only then) and forgets those no longer waited for. A conversation that
    cannot be read now keeps its operation counting: a storage problem lets nobody past the limit.
  * a start counts for an hour.

Two conversations of one user starting at the very same moment may both pass (user state merges
per property after a race); the quota bounds cost, it is not an exact meter.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from bot_logic.pending_operation import ConversationReader, describe_duration, still_waiting

if TYPE_CHECKING:  # botbuilder is slow to import; keep this module cheap
    from botbuilder.core import StatePropertyAccessor, TurnContext

logger = logging.getLogger(__name__)

QUOTA_PROPERTY = "OperationQuota"  # in user state
HOUR_SECONDS = 3600

RUNNING_LIMIT_TEXT = (
    "You already have {count} operations running, the most one person may run at once. "
    "Wait for one of them to finish (or cancel it), then ask again."
)
HOURLY_LIMIT_TEXT = (
    "You have started {count} operations in the last hour, the most allowed. "
    "You can start the next one in {wait}."
)


def new_usage() -> dict[str, Any]:
    return {"running": {}, "starts": []}


async def load_usage(accessor: StatePropertyAccessor, context: TurnContext) -> dict[str, Any]:
    """This user's usage (a new one for a new user), typed: the state accessor returns an object."""
    return cast(dict[str, Any], await accessor.get(context, new_usage))


def _deadline(running: Any) -> float | None:
    """A running operation's deadline (stored as a bare number before conversations were kept)."""
    deadline = running.get("deadline") if isinstance(running, Mapping) else running
    return float(deadline) if isinstance(deadline, (int, float)) else None


def _pruned(usage: MutableMapping[str, Any], now: float) -> MutableMapping[str, Any]:
    """Forget operations past their deadline and starts older than an hour (in place)."""
    running = usage.get("running")
    starts = usage.get("starts")
    usage["running"] = {
        operation_id: entry
        for operation_id, entry in (running.items() if isinstance(running, dict) else ())
        if (_deadline(entry) or 0.0) > now
    }
    usage["starts"] = sorted(
        start for start in (starts if isinstance(starts, list) else ()) if isinstance(start, (int, float))
        and start > now - HOUR_SECONDS
    )
    return usage


@dataclass(frozen=True)
class OperationQuota:
    """The limits; 0 means no limit. `read_conversation`: None, an operation counts until its deadline."""

    max_running: int = 0
    starts_per_hour: int = 0
    read_conversation: ConversationReader | None = None

    @property
    def limits(self) -> bool:
        """Whether there is any limit (else nothing is counted: starts made meanwhile count for
        nothing once a limit is set)."""
        return bool(self.max_running or self.starts_per_hour)

    async def refusal(self, usage: MutableMapping[str, Any], now: float) -> str | None:
        """What to tell a user who may not start another operation now; None if they may."""
        _pruned(usage, now)
        running, starts = usage["running"], usage["starts"]
        if self.max_running and len(running) >= self.max_running:
            await self._forget_ended(running)
        if self.max_running and len(running) >= self.max_running:
            return RUNNING_LIMIT_TEXT.format(count=len(running))
        if self.starts_per_hour and len(starts) >= self.starts_per_hour:
            # The oldest start that keeps the count at the limit leaves the window first.
            frees_at = starts[len(starts) - self.starts_per_hour] + HOUR_SECONDS
            # Rounded up (at least 1 s: pruning kept only starts less than an hour old), so that a
            # user who waits the time told is let through, not told to wait "1 s" more.
            wait = describe_duration(math.ceil(frees_at - now))
            return HOURLY_LIMIT_TEXT.format(count=len(starts), wait=wait)
        return None

    async def _forget_ended(self, running: dict[str, Any]) -> None:
        """Drop the operations whose conversations no longer wait for them (read now, in parallel)."""
        read = self.read_conversation
        if read is None:
            return
        counted = [
            (operation_id, entry["conversation"])
            for operation_id, entry in running.items()
            if isinstance(entry, Mapping) and isinstance(entry.get("conversation"), str)
        ]
        states = await asyncio.gather(*(read(key) for _, key in counted), return_exceptions=True)
        for (operation_id, _), state in zip(counted, states, strict=True):
            if isinstance(state, BaseException):
                logger.warning("operation %s counts on: its conversation cannot be read now (%s)", operation_id, state)
            elif not still_waiting(state, operation_id):
                del running[operation_id]


def record_start(
    usage: MutableMapping[str, Any], operation_id: str, deadline: float, now: float, conversation: str
) -> None:
    """`conversation`: the storage key of the conversation that waits for the operation."""
    _pruned(usage, now)
    usage["running"][operation_id] = {"deadline": deadline, "conversation": conversation}
    usage["starts"].append(now)
