"""Waiting for a long operation: answers the user meanwhile, ends when the result arrives,
the user cancels, or the deadline passes."""

from __future__ import annotations

from botbuilder.core import MessageFactory, StatePropertyAccessor
from botbuilder.dialogs import Dialog, DialogContext, DialogTurnResult
from botbuilder.schema import ActionTypes, Activity, ActivityTypes, CardAction

from bot_logic.clock import Clock
from bot_logic.commands import CANCEL, command_in
from bot_logic.conversation_record import load_record
from bot_logic.operation_protocol import RESULT_EVENT
from bot_logic.pending_operation import describe_duration

TIMED_OUT = "timed_out"
_CANCEL_BUTTON = CardAction(type=ActionTypes.im_back, title="Cancel", value="cancel")
CANCELLED = "cancelled"


def with_cancel_button(text: str) -> Activity:
    """`text` with a "Cancel" button where the channel shows suggested actions; typing 'cancel' works too."""
    return MessageFactory.suggested_actions([_CANCEL_BUTTON], text)


class WaitForOperationDialog(Dialog):
    def __init__(self, records: StatePropertyAccessor, clock: Clock) -> None:
        super().__init__(WaitForOperationDialog.__name__)
        self._records = records
        self._clock = clock

    async def begin_dialog(self, dialog_context: DialogContext, options: object = None) -> DialogTurnResult:
        return Dialog.end_of_turn

    async def continue_dialog(self, dialog_context: DialogContext) -> DialogTurnResult:
        context = dialog_context.context
        activity = context.activity
        record = await load_record(self._records, context)
        pending = record.get("pendingOperation")
        if pending is None:  # cleared elsewhere (e.g. expiry); nothing to wait for
            return await dialog_context.end_dialog({"outcome": CANCELLED, "name": "operation"})

        if activity.type == ActivityTypes.event and activity.name == RESULT_EVENT:
            value = activity.value or {}
            if value.get("operationId") != pending["id"]:
                return Dialog.end_of_turn
            record["pendingOperation"] = None
            return await dialog_context.end_dialog({**value, "name": pending["name"]})

        if activity.type != ActivityTypes.message:
            return Dialog.end_of_turn

        now = self._clock()
        if now >= pending["deadline"]:
            record["pendingOperation"] = None
            return await dialog_context.end_dialog({"outcome": TIMED_OUT, "operationId": pending["id"], **pending})
        if command_in(activity.text) == CANCEL:
            record["pendingOperation"] = None
            return await dialog_context.end_dialog(
                {"outcome": CANCELLED, "name": pending["name"], "operationId": pending["id"]}
            )

        await context.send_activity(Activity(type=ActivityTypes.typing))
        elapsed = describe_duration(now - pending["startedAt"])
        await context.send_activity(
            with_cancel_button(
                f"Still working on the {pending['name']} (running for {elapsed}). "
                "I'll tell you here when it's done; say 'cancel' to stop it."
            )
        )
        return Dialog.end_of_turn
