"""When a conversation expires, and the fields that let Cosmos DB find expired ones by index.

Three ways, one rule (idle for ExpireAfterSeconds, unless an operation is still in flight):
  * on the next turn (bot.py), the bot starts over with "Welcome back!";
  * the sweeper (handlers/sweeper.py) finds expired conversations by `expiresAt`, clears
    them and tells the user;
  * Cosmos DB's time-to-live deletes what nobody touched for CosmosDbTimeToLive seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from bot_logic.clock import Clock
from bot_logic.conversation_record import RECORD_PROPERTY

WELCOME_BACK_TEXT = "Welcome back! Let's start over from the beginning."


def expires_at(record: Mapping[str, Any], expire_after_seconds: int) -> float | None:
    """When the conversation may be expired: idle time elapsed and any operation's deadline passed."""
    last_access = record.get("lastAccessAt")
    if last_access is None:
        return None
    moment = last_access + expire_after_seconds
    pending = record.get("pendingOperation")
    if pending:
        moment = max(moment, pending["deadline"])
    return moment


def sweep_at(record: Mapping[str, Any], expire_after_seconds: int) -> float | None:
    """When the sweeper must next look at the conversation: at an operation's deadline, to tell
    its user it timed out (once), else when the conversation expires."""
    pending = record.get("pendingOperation")
    if pending and not pending.get("timeoutNotified") and record.get("lastAccessAt") is not None:
        return pending["deadline"]
    return expires_at(record, expire_after_seconds)


def is_expired(record: Mapping[str, Any], expire_after_seconds: int, now: float) -> bool:
    if record.get("expiredAt") is not None:  # cleared by the sweeper
        return True
    moment = expires_at(record, expire_after_seconds)
    return moment is not None and now >= moment


def conversation_index_fields(
    expire_after_seconds: int, time_to_live: int, clock: Clock
) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """Top-level document fields derived from a conversation's state at each write."""

    def fields(state: Mapping[str, Any]) -> dict[str, Any]:
        record = state.get(RECORD_PROPERTY) or {}
        moment = sweep_at(record, expire_after_seconds)
        if moment is None or record.get("expiredAt") is not None:
            return {}  # nothing to sweep: new, or already cleared
        # Named expiresAt (the one indexed path); it is when the sweeper must look, see sweep_at.
        result: dict[str, Any] = {"expiresAt": moment}
        pending = record.get("pendingOperation")
        if pending:
            # An operation in flight keeps its conversation past the container's TTL until the
            # deadline, plus the usual TTL, so the sweeper can still tell the user it timed out.
            result["ttl"] = time_to_live + max(0, int(pending["deadline"] - clock()))
        return result

    return fields


def sweep_period_upper_bound(schedule: str) -> int:
    """Roughly the longest gap between two runs of a six-field NCRONTAB schedule, in seconds."""
    fields = schedule.split()
    for field, unit in zip(fields[:3], (1, 60, 3600), strict=False):
        if field == "*":
            return unit
        if field.startswith("*/") and field[2:].isdigit():
            return int(field[2:]) * unit
    return 86400


def check_expiry_settings(expire_after_seconds: int, time_to_live: int, sweep_schedule: str) -> str | None:
    """A warning when Cosmos DB's TTL could delete state before the sweeper tells the user."""
    needed = expire_after_seconds + sweep_period_upper_bound(sweep_schedule)
    if time_to_live < needed:
        return (
            f"CosmosDbTimeToLive={time_to_live} is shorter than ExpireAfterSeconds={expire_after_seconds} plus "
            f"the sweep interval of SweepSchedule='{sweep_schedule}' ({needed} s in all): Cosmos DB may delete "
            "idle conversations before the sweeper can notify their users. Raise CosmosDbTimeToLive."
        )
    return None
