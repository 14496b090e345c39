"""The operation a conversation is waiting for, kept in its ConversationRecord."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot_logic.conversation_record import PendingOperation, Reference


def start_pending(
    name: str, parameters: dict[str, int], now: float, timeout_seconds: int, reference: Reference
) -> PendingOperation:
    """`reference`: the conversation's own, stored with the operation; its result is told there and
    nowhere else (bot_logic/turn_routing.py compares the address a result event carries with it)."""
    return {
        "id": str(uuid.uuid4()),
        "name": name,
        "parameters": parameters,
        "startedAt": now,
        "deadline": now + timeout_seconds,
        # A copy: the record's own reference is the same object, and the state's serialiser would
        # store the second occurrence as a back-reference, unreadable to anything but itself.
        "reference": copy.deepcopy(reference),
    }


def operation_event_refusal(value: Mapping[str, Any], record: Mapping[str, Any]) -> str | None:
    """Why a verified result or progress event must not be told in this conversation, or None: the
    conversation must wait for that very operation, and the reply address the event carries (from the
    queue message) must be the one stored with the pending operation."""
    from bot_logic.operation_protocol import reply_address_matches

    pending = record.get("pendingOperation")
    if not isinstance(pending, Mapping) or pending.get("id") != value.get("operationId"):
        return "the conversation is not waiting for it"
    if not reply_address_matches(value.get("conversation"), pending.get("reference") or record.get("reference")):
        return "the reply address it carries is not the conversation's"
    return None


# A conversation's stored state by its storage key, at least its record; None when it is gone.
ConversationReader = Callable[[str], Awaitable[Mapping[str, Any] | None]]


def still_waiting(conversation_state: Mapping[str, Any] | None, operation_id: str) -> bool:
    """Whether a conversation (its whole stored state; None if it is gone) still waits for an operation.
    The one rule for stopping work: cancel, expiry, a timeout or a new start all replace or clear the
    pending operation, so the worker running it may stop."""
    from bot_logic.conversation_record import RECORD_PROPERTY

    record = (conversation_state or {}).get(RECORD_PROPERTY)
    pending = record.get("pendingOperation") if isinstance(record, Mapping) else None
    return isinstance(pending, Mapping) and pending.get("id") == operation_id


# A progress message tells the user something new only now and then (no two within this many of the
# worker's progress intervals); in between they see typing.
PROGRESS_MESSAGE_GAP_INTERVALS = 3


def progress_message_due(pending: PendingOperation, now: float, limit: int, gap_seconds: float) -> bool:
    """Whether a progress event becomes a message (and count it): at most `limit` per operation, none
    sooner than `gap_seconds` after the start or the previous one; otherwise typing."""
    told = int(pending.get("progressTold") or 0)
    last = pending.get("progressToldAt") or pending["startedAt"]
    if told >= limit or now - last < gap_seconds:
        return False
    pending["progressTold"], pending["progressToldAt"] = told + 1, now
    return True


def progress_text(pending: PendingOperation, percent: object) -> str:
    done = percent if isinstance(percent, int) and 0 <= percent <= 100 else 0
    return f"Still working on the {pending['name']}: {done}% done."


def describe_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, rest = divmod(seconds, 60)
    return f"{minutes} min {rest} s" if rest else f"{minutes} min"


def timeout_notice_once(pending: PendingOperation) -> str | None:
    """Tell the user once that an operation timed out: the notice the first time, None after.

    Whoever notices first (the sweeper at the deadline, the next turn, the waiting dialog)
    tells; the mark is kept with the pending operation so the others stay silent.
    """
    if pending.get("timeoutNotified"):
        return None
    pending["timeoutNotified"] = True
    allowed = describe_duration(pending["deadline"] - pending["startedAt"])
    return f"Sorry, the {pending['name']} timed out: no result came within {allowed}."


def result_reply(name: str, result: dict[str, Any]) -> str:
    """What the user is told of an operation's result or failure (`result`: the worker's event value)."""
    from bot_logic.operation_protocol import SUCCEEDED

    if result.get("outcome") == SUCCEEDED:
        return f"Thanks for waiting. {result.get('text', '')}"
    return f"Sorry, the {name} failed. {result.get('text', '')}".strip()
