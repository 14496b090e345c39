"""The bot's activity handler. It never saves state itself: the unit of work commits."""

from __future__ import annotations

import logging

from botbuilder.core import ActivityHandler, ConversationState, TurnContext, UserState
from botbuilder.dialogs import Dialog, DialogExtensions
from botbuilder.schema import ChannelAccount

from bot_logic.clock import Clock
from bot_logic.conversation_record import RECORD_PROPERTY, already_handled, new_record, remember_activity
from bot_logic.user_profile import PROFILE_PROPERTY, display_name, get_profile

logger = logging.getLogger(__name__)

WELCOME = "Hello and welcome! I run long operations for you and tell you here when they are done."
WELCOME_BACK = "Welcome back, {name}!"


class LongOperationBot(ActivityHandler):
    def __init__(
        self,
        conversation_state: ConversationState,
        user_state: UserState,
        dialog_factory: type[Dialog] | None = None,
        clock: Clock | None = None,
    ) -> None:
        from bot_logic.clock import system_clock
        from bot_logic.dialogs.main_dialog import MainDialog

        self._records = conversation_state.create_property(RECORD_PROPERTY)
        self._dialog_state = conversation_state.create_property("DialogState")
        self.profiles = user_state.create_property(PROFILE_PROPERTY)
        self._dialog = (dialog_factory or MainDialog)(self.profiles)
        self._clock = clock or system_clock

    async def on_turn(self, turn_context: TurnContext) -> None:
        record = await self._records.get(turn_context, new_record)
        if already_handled(record, turn_context.activity):
            logger.info(
                "activity %s of conversation %s was already handled; ignoring the redelivery",
                turn_context.activity.id,
                turn_context.activity.conversation.id,
            )
            return
        remember_activity(record, turn_context.activity, self._clock())
        await super().on_turn(turn_context)

    async def on_members_added_activity(self, members_added: list[ChannelAccount], turn_context: TurnContext) -> None:
        bot_id = turn_context.activity.recipient.id if turn_context.activity.recipient else None
        if not any(member.id != bot_id for member in members_added):
            return
        name = display_name(await get_profile(self.profiles, turn_context))
        await turn_context.send_activity(WELCOME_BACK.format(name=name) if name else WELCOME)
        await DialogExtensions.run_dialog(self._dialog, turn_context, self._dialog_state)

    async def on_message_activity(self, turn_context: TurnContext) -> None:
        await DialogExtensions.run_dialog(self._dialog, turn_context, self._dialog_state)
