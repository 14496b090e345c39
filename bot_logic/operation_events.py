"""Results and progress the worker posts back as Direct Line events: trust, then resume.

The event arrives in the worker's own Direct Line conversation. Only after its signature
verifies and it has not expired does the bot continue the user's original conversation
(named inside the signed payload); there the pending operation must match, or nothing changes.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from botbuilder.core import CloudAdapterBase, TurnContext
from botbuilder.core.conversation_reference_extension import get_continuation_activity
from botbuilder.schema import Activity, ActivityTypes, ConversationReference

from bot_logic.clock import Clock
from bot_logic.operation_messages import PROGRESS_EVENT, RESULT_EVENT, WORKER_ID
from services.signing import verified_payload

logger = logging.getLogger(__name__)

OPERATION_EVENTS = (RESULT_EVENT, PROGRESS_EVENT)


def is_operation_event(activity: Activity) -> bool:
    return activity.type == ActivityTypes.event and activity.name in OPERATION_EVENTS


def is_worker_conversation_activity(activity: Activity) -> bool:
    """Activities of the worker's own Direct Line conversation, other than its events: the channel's
    conversationUpdates for it (a member list of the worker and/or the bot). They need no state."""
    if is_operation_event(activity):
        return False
    if activity.from_property is not None and activity.from_property.id == WORKER_ID:
        return True
    added = activity.members_added or []
    bot_id = activity.recipient.id if activity.recipient else None
    return bool(added) and all(member.id in (WORKER_ID, bot_id) for member in added)


def trusted_payload(activity: Activity, signing_key: str, now: float) -> tuple[dict[str, Any] | None, str | None]:
    """(payload, None) for a trustworthy event, else (None, why it is refused)."""
    payload = verified_payload(activity.value, signing_key)
    if payload is None:
        return None, "its signature does not verify"
    if payload.get("event") != activity.name:
        return None, "it was signed for another event"
    expires_at = payload.get("expiresAt")
    if not isinstance(expires_at, (int, float)) or now >= expires_at:
        return None, "it has expired"
    reference = payload.get("conversation")
    if not isinstance(reference, dict) or not isinstance(reference.get("conversation"), dict):
        return None, "it names no conversation"
    return payload, None


async def resume_conversation(
    context: TurnContext,
    adapter: CloudAdapterBase,
    bot_app_id: str,
    signing_key: str,
    clock: Clock,
    run_turn: Callable[[TurnContext], Awaitable[None]],
) -> None:
    """Verify an operation event and, if trusted, run a turn in the conversation it names."""
    activity = context.activity
    payload, reason = trusted_payload(activity, signing_key, clock())
    if payload is None:
        logger.warning(
            "refused %s event from conversation %s (sender %s): %s",
            activity.name,
            activity.conversation.id,
            activity.from_property.id if activity.from_property else None,
            reason,
        )
        return
    reference = ConversationReference().deserialize(payload["conversation"])
    continuation = get_continuation_activity(reference)
    # get_continuation_activity() carries no value: put the event back, as the C# sample does.
    continuation.name = activity.name
    continuation.value = payload
    claims = adapter.create_claims_identity(bot_app_id)
    await adapter.process_proactive(claims, continuation, None, run_turn)
