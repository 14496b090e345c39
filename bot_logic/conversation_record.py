"""Bookkeeping kept with each conversation's state: when it was last used, how to reach
it proactively, which inbound activities it has already handled; and the one way to clear it."""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict, cast

if TYPE_CHECKING:  # botbuilder is slow to import; keep this module cheap
    from botbuilder.core import StatePropertyAccessor, TurnContext
    from botbuilder.schema import Activity
    from msrest.serialization import Model

# A serialised ConversationReference (ConversationReference.serialize()): channelId, serviceUrl,
# conversation {id}, user {id, name}, bot {id}, ...
Reference = dict[str, Any]


class PendingOperation(TypedDict):
    """The operation a conversation waits for (bot_logic/pending_operation.py)."""

    id: str
    name: str
    parameters: dict[str, Any]
    startedAt: float
    deadline: float
    reference: Reference  # the conversation's own, where its result is told
    progressTold: NotRequired[int]  # progress messages told so far
    progressToldAt: NotRequired[float]
    timeoutNotified: NotRequired[bool]


class Handoff(TypedDict):
    """A handoff to a person (bot_logic/handoff.py)."""

    id: str
    state: str  # waiting or active
    requestedAt: float
    deadline: float
    reason: str
    agent: NotRequired[str]  # the person's name, once one accepted


class ConversationRecord(TypedDict):
    """The bot's bookkeeping kept in conversation state under RECORD_PROPERTY: the one list of its keys."""

    lastAccessAt: float | None
    reference: Reference | None  # for proactive messages: the user's latest message's
    recentActivityIds: list[str]
    pendingOperation: PendingOperation | None
    expiredAt: float | None  # set when the sweeper closed the conversation
    handoff: NotRequired[Handoff | None]
    misunderstood: NotRequired[int]  # consecutive messages the bot did not understand
    handoffOffered: NotRequired[bool]  # the bot asked whether to bring in a person; the next message answers


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


def new_record() -> ConversationRecord:
    return {
        "lastAccessAt": None,
        "reference": None,
        "recentActivityIds": [],
        "pendingOperation": None,
        "expiredAt": None,
    }


async def load_record(records: StatePropertyAccessor, turn_context: TurnContext) -> ConversationRecord:
    """This turn's record (a new one for a new conversation), typed: the state accessor returns an object."""
    return cast(ConversationRecord, await records.get(turn_context, new_record))


def stored_record(state: Mapping[str, Any] | None) -> ConversationRecord | None:
    """The record in a conversation's stored state, if it holds one."""
    record = (state or {}).get(RECORD_PROPERTY)
    return cast(ConversationRecord, record) if isinstance(record, dict) else None


def already_handled(record: ConversationRecord, activity: Activity) -> bool:
    return bool(activity.id) and activity.id in record["recentActivityIds"]


# A model's JSON form, as its `.serialize()` gives it (the composition root passes a faster equivalent).
ModelJson = Callable[["Model"], dict[str, Any]]


def msrest_json(model: Model) -> dict[str, Any]:
    return dict(model.serialize())


def remember_activity(
    record: ConversationRecord, activity: Activity, now: float, model_json: ModelJson = msrest_json
) -> None:
    """Record the turn: last access, the reference for proactive messages, the activity id."""
    from botbuilder.core import TurnContext

    record["lastAccessAt"] = now
    if activity.type == "message" or not record["reference"]:
        # The user's messages address proactive replies; a channel's event (a handoff.status sent
        # on an agent's behalf, say) must not redirect them to its sender.
        reference: Reference = model_json(TurnContext.get_conversation_reference(activity))
        record["reference"] = reference
    if activity.id:
        ids = [*record["recentActivityIds"], activity.id]
        record["recentActivityIds"] = ids[-RECENT_ACTIVITY_IDS:]


def clear_conversation(state: MutableMapping[str, Any], record: ConversationRecord) -> ConversationRecord:
    """Forget the conversation's dialogs and bookkeeping in place, keeping only `record`."""
    for name in CONVERSATION_PROPERTIES:
        state.pop(name, None)
    state[RECORD_PROPERTY] = record
    return record


def start_over(state: MutableMapping[str, Any]) -> ConversationRecord:
    """A fresh start for the next turn of an expired conversation; returns its new record."""
    return clear_conversation(state, new_record())


def close(state: MutableMapping[str, Any], now: float) -> None:
    """Close an idle conversation (the sweeper): only a marker survives, so the next turn says
    "Welcome back!"; nothing is left to sweep, and storage's time-to-live removes it."""
    record = ConversationRecord(**(stored_record(state) or new_record()))
    record["expiredAt"], record["pendingOperation"] = now, None
    clear_conversation(state, record)
