"""How many long operations one user may run: at once, and per hour, across all their conversations.

Operations cost CPU for minutes; without a quota any Direct Line user could start them in as many
conversations as they like. The count lives in the user's state (shared by their conversations), as
{"running": {operation id: deadline}, "starts": [start times]}:

  * an operation counts as running from its start until its result, cancel or timeout is told, and
    at most until its deadline, so one whose end was never seen (its conversation expired, say) stops
    counting by itself;
  * a start counts for an hour.

Two conversations of one user starting at the very same moment may both pass (user state merges
per property after a race); the quota bounds cost, it is not an exact meter.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from bot_logic.pending_operation import describe_duration

if TYPE_CHECKING:  # botbuilder is slow to import; keep this module cheap
    from botbuilder.core import StatePropertyAccessor, TurnContext

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


def _pruned(usage: MutableMapping[str, Any], now: float) -> MutableMapping[str, Any]:
    """Forget operations past their deadline and starts older than an hour (in place)."""
    running = usage.get("running")
    starts = usage.get("starts")
    usage["running"] = {
        operation_id: deadline
        for operation_id, deadline in (running.items() if isinstance(running, dict) else ())
        if isinstance(deadline, (int, float)) and deadline > now
    }
    usage["starts"] = sorted(
        start for start in (starts if isinstance(starts, list) else ()) if isinstance(start, (int, float))
        and start > now - HOUR_SECONDS
    )
    return usage


@dataclass(frozen=True)
class OperationQuota:
    """The limits; 0 means no limit."""

    max_running: int = 0
    starts_per_hour: int = 0

    def refusal(self, usage: MutableMapping[str, Any], now: float) -> str | None:
        """What to tell a user who may not start another operation now; None if they may."""
        _pruned(usage, now)
        running, starts = usage["running"], usage["starts"]
        if self.max_running and len(running) >= self.max_running:
            return RUNNING_LIMIT_TEXT.format(count=len(running))
        if self.starts_per_hour and len(starts) >= self.starts_per_hour:
            # The oldest start that keeps the count at the limit leaves the window first.
            frees_at = starts[len(starts) - self.starts_per_hour] + HOUR_SECONDS
            wait = describe_duration(max(1, frees_at - now))
            return HOURLY_LIMIT_TEXT.format(count=len(starts), wait=wait)
        return None


def record_start(usage: MutableMapping[str, Any], operation_id: str, deadline: float, now: float) -> None:
    _pruned(usage, now)
    usage["running"][operation_id] = deadline
    usage["starts"].append(now)


def record_end(usage: MutableMapping[str, Any], operation_id: str) -> None:
    """The operation's outcome was told (result, failure, cancel or timeout): it no longer runs."""
    running = usage.get("running")
    if isinstance(running, dict):
        running.pop(operation_id, None)
