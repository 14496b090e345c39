"""Which turn an inbound activity starts: the one place that routes it.

  * The channel announcing the worker's own Direct Line conversation: nothing to do, no state.
  * A progress or result event from the worker: it arrives in the worker's conversation; only
    after its signature verifies and it has not expired does the bot continue the user's
    conversation it names (inside the signed payload), where the pending operation must match.
  * Anything else: a turn of the user's conversation.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from botbuilder.core import CloudAdapterBase, TurnContext
from botbuilder.core.conversation_reference_extension import get_continuation_activity
from botbuilder.schema import Activity, ActivityTypes, ConversationReference

from bot_logic.clock import Clock
from bot_logic.operation_protocol import OPERATION_EVENTS, WORKER_ID, trusted_payload

logger = logging.getLogger(__name__)

Turn = Callable[[TurnContext], Awaitable[None]]


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


@dataclass(frozen=True)
class TurnRouter:
    """Routes each inbound activity (see the module's docstring)."""

    run_turn: Turn  # a turn of a user's conversation, as a unit of work
    adapter: CloudAdapterBase
    bot_app_id: str
    signing_key: str
    clock: Clock

    async def __call__(self, context: TurnContext) -> None:
        activity = context.activity
        if is_worker_conversation_activity(activity):
            return
        if is_operation_event(activity):
            await self._resume(activity)
            return
        await self.run_turn(context)

    async def _resume(self, activity: Activity) -> None:
        """Verify an operation event and, if trusted, run a turn in the conversation it names."""
        payload, reason = trusted_payload(activity.name, activity.value, self.signing_key, self.clock())
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
        # It runs as the user's turn (their state, their address), but the worker posted it: say so,
        # for the transcript and anyone reading it.
        continuation.channel_data = {"postedBy": WORKER_ID}
        claims = self.adapter.create_claims_identity(self.bot_app_id)
        await self.adapter.process_proactive(claims, continuation, None, self.run_turn)  # type: ignore[arg-type]  # the SDK's own default audience
