"""Human handoff, with the Bot Framework's handoff events.

  * The bot asks the channel for a person with a `handoff.initiate` event: `value` carries the
    context, an attachment of content type application/vnd.microsoft.activity.transcript the
    conversation so far (the shape the C# and JavaScript SDKs' `EventFactory` give it; the Python
    SDK has no factory, so `initiation_event` is the small equivalent).
  * The channel (an agent hub; locally the agent console of localdev/directline) answers with
    `handoff.status` events: `accepted`, `failed` or `completed`, each signed by the hub with
    HandoffSigningKey (`verified_status` is the one rule that decides whether the bot acts on one).
  * While a handoff waits or runs, the bot runs no dialogs in that conversation; a running long
    operation still reports its result.
  * A handoff nobody accepts before its deadline is failed back to the user, by the next turn or
    the sweeper (bot_logic/expiry.py), and the bot withdraws it with a `handoff.status` event of
    state `failed` sent to the channel, so the agent hub stops offering it.

The handoff lives in the conversation record: {"id", "state": "waiting" | "accepted", "requestedAt",
"deadline", "reason", "agent"?}; `id` (the handoffId) goes to the hub in the initiate event's value.

Why the hub signs: on Direct Line any client can post an event named handoff.status into its own
conversation, so the event's name and its `from` prove nothing. The status still arrives in the
conversation itself (the Bot Framework's handoff protocol, unchanged; the channel authenticates the
address), and carries `value` = {"payload": "<JSON text>", "signature": "<hex HMAC-SHA256 of that
text with HandoffSigningKey>"} (bot_logic/signing.py), the payload naming the conversation and the
handoffId: a status for another conversation, or one replayed from an earlier handoff, is refused
even with a good signature. Any hub that can compute an HMAC (as webhook senders do) can sign.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Protocol

from bot_logic.conversation_record import ConversationRecord, Handoff
from bot_logic.signing import is_signed_shape, sign, verified_payload

if TYPE_CHECKING:  # botbuilder is slow to import; keep this module cheap
    from botbuilder.schema import Activity

INITIATE_EVENT = "handoff.initiate"
STATUS_EVENT = "handoff.status"
TRANSCRIPT_CONTENT_TYPE = "application/vnd.microsoft.activity.transcript"
ACCEPTED, FAILED, COMPLETED = "accepted", "failed", "completed"
WAITING = "waiting"
HANDOFF_KEY: Final = "handoff"  # in the conversation record
MISUNDERSTOOD_KEY: Final = "misunderstood"  # consecutive messages the bot did not understand
OFFERED_KEY: Final = "handoffOffered"  # the bot asked whether to bring in a person; the next message answers
USER_ASKED = "the user asked for a person"
NOT_UNDERSTOOD = "the bot did not understand the user {count} times in a row"
TIMED_OUT_MESSAGE = "nobody accepted the handoff in time"
# How long a hub's signed status is good for (what the local agent console gives it), and the most
# the bot accepts: a status is meant for now, and a short life bounds any replay.
STATUS_LIFETIME_SECONDS = 300
MAX_STATUS_LIFETIME_SECONDS = 600
# What a hub may say, from each state of the bot's handoff.
LEGAL_STATUSES = {WAITING: frozenset({ACCEPTED, FAILED}), ACCEPTED: frozenset({COMPLETED, FAILED})}
MAX_AGENT_NAME = 64
MAX_STATUS_MESSAGE = 1000

REQUESTED_TEXT = "I'm asking a person to take over; they'll see our conversation so far. Please wait here."
STILL_WAITING_TEXT = "Still waiting for a person to join; they will see your messages."
ACCEPTED_TEXT = "{agent} has joined the conversation: you're now talking to a person."
FAILED_TEXT = "Sorry, no person could take over ({reason}). You're back with the bot."
TIMED_OUT_TEXT = "Sorry, no person was available within {duration}. You're back with the bot: send anything to go on."
COMPLETED_TEXT = "The person has left the conversation. You're back with the bot."
OFFER_TEXT = "Sorry, I keep misunderstanding you. Shall I bring in a person to help?"

_PEOPLE = r"(?:(?:a|an|some|the|real|live)\s+)*(?:human|person|agent|someone|somebody|operator|representative|people)"
_REQUEST = re.compile(
    rf"^(?:(?:please|i want to|i'd like to|i would like to|can i|could i|let me)\s+)?"
    rf"(?:(?:talk|speak|chat)\s+(?:to|with)\s+{_PEOPLE}|{_PEOPLE})[\s.!?]*(?:please)?[\s.!?]*$",
    re.IGNORECASE,
)


class TranscriptSource(Protocol):
    async def transcript(self, activity: Activity) -> list[dict[str, Any]]:
        """The conversation so far, ending with `activity` (this turn's, not recorded yet), serialised,
        oldest first, as a person may see it (redacted as the transcripts are; bounded in size)."""
        ...


def asks_for_a_person(text: str | None) -> bool:
    """ "agent", "human", "talk to someone", "I want to speak with a person", ..."""
    return bool(text) and _REQUEST.match(" ".join((text or "").split())) is not None


def active_handoff(record: ConversationRecord) -> Handoff | None:
    handoff = record.get(HANDOFF_KEY)
    return handoff if isinstance(handoff, dict) else None


def start_handoff(record: ConversationRecord, reason: str, now: float, timeout_seconds: int) -> str:
    """Start a waiting handoff; returns its fresh id (the handoffId the hub's statuses must name)."""
    handoff_id = uuid.uuid4().hex
    record[HANDOFF_KEY] = {
        "id": handoff_id,
        "state": WAITING,
        "requestedAt": now,
        "deadline": now + timeout_seconds,
        "reason": reason,
    }
    record[MISUNDERSTOOD_KEY] = 0
    return handoff_id


def waiting_deadline(record: ConversationRecord) -> float | None:
    """When a waiting handoff is failed back (the sweeper indexes it); None if none waits."""
    handoff = active_handoff(record)
    return handoff["deadline"] if handoff and handoff["state"] == WAITING else None


def timed_out(record: ConversationRecord, now: float) -> bool:
    deadline = waiting_deadline(record)
    return deadline is not None and now >= deadline


def end_handoff(record: ConversationRecord) -> None:
    record[HANDOFF_KEY] = None
    record[MISUNDERSTOOD_KEY] = 0


def fail_back_timed_out(record: ConversationRecord, timeout_seconds: float) -> tuple[str, bool]:
    """End a waiting handoff whose deadline passed (the next turn or the sweeper, whoever comes first):
    what to tell the user, and whether the dialog restarts (not while it waits for a running operation,
    whose result it must still tell)."""
    end_handoff(record)
    return timed_out_text(timeout_seconds), not record.get("pendingOperation")


def timed_out_text(timeout_seconds: float) -> str:
    from bot_logic.pending_operation import describe_duration

    return TIMED_OUT_TEXT.format(duration=describe_duration(timeout_seconds))


def note_misunderstanding(record: ConversationRecord, limit: int) -> bool:
    """Count a message the bot did not understand; True when it is time to hand off (never if `limit` is 0)."""
    record[MISUNDERSTOOD_KEY] = int(record.get(MISUNDERSTOOD_KEY) or 0) + 1
    return 0 < limit <= record[MISUNDERSTOOD_KEY]


def note_understood(record: ConversationRecord) -> None:
    record[MISUNDERSTOOD_KEY] = 0


def offer_handoff(record: ConversationRecord) -> None:
    """The bot asked "Shall I bring in a person?": the next message answers it."""
    record[OFFERED_KEY] = True


def answer_offer(record: ConversationRecord, answer: bool | None) -> bool | None:
    """The user's answer to an offered handoff: True (hand off), False (declined: the count starts again),
    None when no offer was open or the message was no answer (it is then taken as usual; the offer lapses)."""
    if not record.get(OFFERED_KEY):
        return None
    record[OFFERED_KEY] = False
    if answer is False:
        note_understood(record)
    return answer


# --- the hub's signed statuses ---------------------------------------------------------------


@dataclass(frozen=True)
class HandoffStatus:
    """A status the hub signed for the conversation's active handoff."""

    state: str  # accepted | failed | completed
    message: str | None
    agent_name: str | None  # who accepted, as the hub names them (never the event's `from`)


def status_payload(
    conversation_id: str,
    handoff_id: str,
    state: str,
    now: float,
    message: str | None = None,
    agent_name: str | None = None,
    lifetime_seconds: float = STATUS_LIFETIME_SECONDS,
) -> dict[str, Any]:
    """What a hub signs for a handoff.status (the local agent console does; see the docs for hubs)."""
    payload: dict[str, Any] = {
        "conversationId": conversation_id,
        "handoffId": handoff_id,
        "state": state,
        "issuedAt": now,
        "expiresAt": now + lifetime_seconds,
    }
    if message is not None:
        payload["message"] = message
    if agent_name is not None:
        payload["agentName"] = agent_name
    return payload


def signed_status(payload: Mapping[str, Any], key: str) -> dict[str, str]:
    """The handoff.status event value carrying `payload`, signed with HandoffSigningKey."""
    return sign(payload, key)


def _optional_text(payload: Mapping[str, Any], name: str, limit: int) -> str | None:
    value = payload.get(name)
    return (value.strip()[:limit] or None) if isinstance(value, str) else None


def verified_status(
    value: object, conversation_id: str, record: ConversationRecord, key: str, now: float
) -> tuple[HandoffStatus | None, str | None]:
    """The one rule for a handoff.status event: (status, None) when the bot acts on it, else (None, why not).

    Refused: unsigned, a bad signature, expired (or meant to live too long), for another conversation,
    for another handoff than the active one (or none is active: this makes a replayed status of an
    earlier handoff harmless), or a step the active handoff cannot take (completed while waiting, ...)."""
    if not is_signed_shape(value):
        return None, "it is not signed"
    payload = verified_payload(value, key)
    if payload is None:
        return None, "its signature does not verify"
    expires_at, issued_at = payload.get("expiresAt"), payload.get("issuedAt")
    if not isinstance(expires_at, (int, float)) or not isinstance(issued_at, (int, float)):
        return None, "it has no issuedAt and expiresAt times"
    if now >= expires_at:
        return None, "it has expired"
    if expires_at - max(issued_at, now) > MAX_STATUS_LIFETIME_SECONDS:
        return None, f"it would live longer than {MAX_STATUS_LIFETIME_SECONDS} s"
    if payload.get("conversationId") != conversation_id:
        return None, "it was signed for another conversation"
    handoff = active_handoff(record)
    if handoff is None:
        return None, "no handoff is active in this conversation"
    if not isinstance(payload.get("handoffId"), str) or payload["handoffId"] != handoff.get("id"):
        return None, "it was signed for another handoff"
    state = payload.get("state")
    if state not in LEGAL_STATUSES.get(handoff["state"], frozenset()):
        return None, f"{state!r} is not a step a {handoff['state']} handoff can take"
    return HandoffStatus(
        state=state,
        message=_optional_text(payload, "message", MAX_STATUS_MESSAGE),
        agent_name=_optional_text(payload, "agentName", MAX_AGENT_NAME),
    ), None


# --- the bot's own events ---------------------------------------------------------------------


def _handoff_event(name: str, value: Any, conversation: Any) -> Activity:
    from botbuilder.schema import Activity, ActivityTypes

    return Activity(
        type=ActivityTypes.event,
        name=name,
        value=value,
        id=str(uuid.uuid4()),
        timestamp=datetime.now(UTC),
        conversation=conversation,
        attachments=[],
        entities=[],
    )


def initiation_event(activity: Activity, handoff_context: dict[str, Any], transcript: list[dict[str, Any]]) -> Activity:
    """`handoff.initiate`, as EventFactory.createHandoffInitiation builds it from the turn's activity."""
    from botbuilder.core import TurnContext
    from botbuilder.schema import Attachment

    event = _handoff_event(INITIATE_EVENT, handoff_context, activity.conversation)
    event.from_property = activity.from_property
    event.relates_to = TurnContext.get_conversation_reference(activity)
    event.reply_to_id = activity.id
    event.service_url = activity.service_url
    event.channel_id = activity.channel_id
    event.attachments = [Attachment(content_type=TRANSCRIPT_CONTENT_TYPE, content={"activities": transcript})]
    return event


def status_event(conversation: Any, state: str, message: str | None = None) -> Activity:
    """`handoff.status`, as EventFactory.createHandoffStatus builds it."""
    value: dict[str, Any] = {"state": state}
    if message is not None:
        value["message"] = message
    return _handoff_event(STATUS_EVENT, value, conversation)


def withdrawal_payload(reference: dict[str, Any]) -> dict[str, Any]:
    """The bot's `handoff.status` failed event for a stored conversation reference, as an outbox payload
    (the sweeper withdraws a timed-out handoff outside any turn)."""
    from botbuilder.core import TurnContext
    from botbuilder.schema import ConversationReference

    parsed = ConversationReference().deserialize(reference)
    event = status_event(parsed.conversation, FAILED, TIMED_OUT_MESSAGE)
    return dict(TurnContext.apply_conversation_reference(event, parsed).serialize())
