"""Bookkeeping kept with each conversation's state: when it was last used, how to reach
it proactively, which inbound activities it has already handled; and the one way to clear it."""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # botbuilder is slow to import; keep this module cheap
    from botbuilder.schema import Activity

RECORD_PROPERTY = "ConversationRecord"
DIALOG_STATE_PROPERTY = "DialogState"
# Everything the bot keeps in conversation state; clearing a conversation removes exactly these
# (the storage's own bookkeeping, such as the etag, stays, so the clearing write is conditional).
CONVERSATION_PROPERTIES = (RECORD_PROPERTY, DIALOG_STATE_PROPERTY)
RECENT_ACTIVITY_IDS = 32  # enough to recognise a channel's redelivery of a recent activity


def state_key(reference: Mapping[str, Any]) -> str:
    """The conversation state's storage key for a serialised conversation reference, as the SDK's
    ConversationState builds it from a turn ("<channelId>/conversations/<conversation id>")."""
    return f"{reference['channelId']}/conversations/{reference['conversation']['id']}"


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
    if activity.type == "message" or not record["reference"]:
        # The user's messages address proactive replies; a channel's event (a handoff.status sent
        # on an agent's behalf, say) must not redirect them to its sender.
        record["reference"] = TurnContext.get_conversation_reference(activity).serialize()
    if activity.id:
        ids = [*record["recentActivityIds"], activity.id]
        record["recentActivityIds"] = ids[-RECENT_ACTIVITY_IDS:]


def clear_conversation(state: MutableMapping[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """Forget the conversation's dialogs and bookkeeping in place, keeping only `record`."""
    for name in CONVERSATION_PROPERTIES:
        state.pop(name, None)
    state[RECORD_PROPERTY] = record
    return record


def start_over(state: MutableMapping[str, Any]) -> dict[str, Any]:
    """A fresh start for the next turn of an expired conversation; returns its new record."""
    return clear_conversation(state, new_record())


def close(state: MutableMapping[str, Any], now: float) -> None:
    """Close an idle conversation (the sweeper): only a marker survives, so the next turn says
    "Welcome back!"; nothing is left to sweep, and storage's time-to-live removes it."""
    record = dict(state.get(RECORD_PROPERTY) or new_record())
    clear_conversation(state, {**record, "expiredAt": now, "pendingOperation": None})
