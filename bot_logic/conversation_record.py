"""Bookkeeping kept with each conversation's state: when it was last used, how to reach
it proactively, which inbound activities it has already handled."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # botbuilder is slow to import; function_app imports this module at start-up
    from botbuilder.schema import Activity

RECORD_PROPERTY = "ConversationRecord"
RECENT_ACTIVITY_IDS = 32  # enough to recognise a channel's redelivery of a recent activity


def new_record() -> dict[str, Any]:
    return {
        "lastAccessAt": None,
        "reference": None,
        "recentActivityIds": [],
        "pendingOperation": None,
        "expiredAt": None,
    }


def already_handled(record: dict[str, Any], activity: Activity) -> bool:
    return bool(activity.id) and activity.id in record["recentActivityIds"]


def remember_activity(record: dict[str, Any], activity: Activity, now: float) -> None:
    """Record the turn: last access, the reference for proactive messages, the activity id."""
    from botbuilder.core import TurnContext

    record["lastAccessAt"] = now
    record["reference"] = TurnContext.get_conversation_reference(activity).serialize()
    if activity.id:
        ids = [*record["recentActivityIds"], activity.id]
        record["recentActivityIds"] = ids[-RECENT_ACTIVITY_IDS:]
