"""The bot's activity handler. It never saves state itself: the unit of work commits."""

from __future__ import annotations

import logging
from typing import Any

from botbuilder.core import ActivityHandler, ConversationState, TurnContext, UserState
from botbuilder.dialogs import DialogExtensions
from botbuilder.schema import ChannelAccount

from bot_logic.clock import Clock
from bot_logic.conversation_record import (
    DIALOG_STATE_PROPERTY,
    RECORD_PROPERTY,
    already_handled,
    new_record,
    remember_activity,
    start_over,
)
from bot_logic.dialogs.main_dialog import MainDialog
from bot_logic.effects import DurableEffects
from bot_logic.expiry import WELCOME_BACK_TEXT, is_expired
from bot_logic.operation_protocol import PROGRESS_EVENT
from bot_logic.pending_operation import timeout_notice_once
from bot_logic.turn_routing import is_operation_event
from bot_logic.user_profile import PROFILE_PROPERTY, display_name, get_profile

logger = logging.getLogger(__name__)

WELCOME = "Hello and welcome! I run long operations for you and tell you here when they are done."
WELCOME_BACK = "Welcome back, {name}!"
# A message the bot could not take in (its conversation stayed busy); {text} is the message.
BUSY_TEXT = "Sorry, I couldn't take in “{text}”: I was still busy with your earlier messages. Please send it again."


class LongOperationBot(ActivityHandler):
    def __init__(
        self,
        conversation_state: ConversationState,
        user_state: UserState,
        effects: DurableEffects,
        clock: Clock,
        operation_timeout_seconds: int,
        expire_after_seconds: int,
    ) -> None:
        self._conversation_state = conversation_state
        self._expire_after_seconds = expire_after_seconds
        self.records = conversation_state.create_property(RECORD_PROPERTY)
        self._dialog_state = conversation_state.create_property(DIALOG_STATE_PROPERTY)
        self.profiles = user_state.create_property(PROFILE_PROPERTY)
        self._clock = clock
        self._dialog = MainDialog(self.profiles, self.records, effects, clock, operation_timeout_seconds)

    async def on_turn(self, turn_context: TurnContext) -> None:
        activity = turn_context.activity
        if is_operation_event(activity):
            # Never create state for an event: its conversation may be gone (expired, deleted by TTL).
            record = (self._conversation_state.get(turn_context) or {}).get(RECORD_PROPERTY)
            await self._on_operation_event(turn_context, record or {})
            return
        record = await self.records.get(turn_context, new_record)
        if already_handled(record, activity):
            logger.info(
                "activity %s of conversation %s was already handled; ignoring the redelivery",
                activity.id,
                activity.conversation.id,
            )
            return
        now = self._clock()
        if is_expired(record, self._expire_after_seconds, now):
            pending = record.get("pendingOperation")
            record = start_over(self._conversation_state.get(turn_context))
            notice = timeout_notice_once(pending) if pending else None
            if notice:
                await turn_context.send_activity(notice)
            await turn_context.send_activity(WELCOME_BACK_TEXT)
        remember_activity(record, activity, now)
        await super().on_turn(turn_context)

    async def _on_operation_event(self, turn_context: TurnContext, record: dict[str, Any]) -> None:
        """A verified result or progress event, continued into the user's conversation."""
        value = turn_context.activity.value
        pending = record.get("pendingOperation")
        if not pending or pending["id"] != value.get("operationId"):
            logger.warning(
                "refused %s for operation %s: conversation %s is not waiting for it",
                turn_context.activity.name,
                value.get("operationId"),
                turn_context.activity.conversation.id,
            )
            return
        if turn_context.activity.name == PROGRESS_EVENT:
            await turn_context.send_activity(f"{pending['name']}: {value.get('percent', 0)}% done.")
            return
        record["lastAccessAt"] = self._clock()
        await DialogExtensions.run_dialog(self._dialog, turn_context, self._dialog_state)

    async def on_members_added_activity(self, members_added: list[ChannelAccount], turn_context: TurnContext) -> None:
        bot_id = turn_context.activity.recipient.id if turn_context.activity.recipient else None
        if not any(member.id != bot_id for member in members_added):
            return
        name = display_name(await get_profile(self.profiles, turn_context))
        await turn_context.send_activity(WELCOME_BACK.format(name=name) if name else WELCOME)
        await DialogExtensions.run_dialog(self._dialog, turn_context, self._dialog_state)

    async def on_message_activity(self, turn_context: TurnContext) -> None:
        await DialogExtensions.run_dialog(self._dialog, turn_context, self._dialog_state)
