"""The conversation: learn the user's name once, offer the operations, wait for one, tell the result."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any, cast

from botbuilder.core import MessageFactory, StatePropertyAccessor, TurnContext
from botbuilder.dialogs import (
    ComponentDialog,
    Dialog,
    DialogContext,
    DialogTurnResult,
    WaterfallDialog,
    WaterfallStepContext,
)
from botbuilder.dialogs.choices import Choice, FoundChoice, ListStyle
from botbuilder.dialogs.prompts import ChoicePrompt, PromptOptions, PromptValidatorContext, TextPrompt
from botbuilder.schema import ActionTypes, CardAction

from bot_logic.clock import Clock
from bot_logic.commands import CANCEL, HELP, MENU, command_in, yes_or_no
from bot_logic.conversation_record import ConversationRecord, PendingOperation, load_record, state_key
from bot_logic.dialogs.wait_for_operation import CANCELLED, TIMED_OUT, WaitForOperationDialog, with_cancel_button
from bot_logic.effects import DurableEffects
from bot_logic.handoff import (
    NOT_UNDERSTOOD,
    OFFER_TEXT,
    answer_offer,
    note_misunderstanding,
    note_understood,
    offer_handoff,
)
from bot_logic.operation_protocol import operation_request
from bot_logic.operation_quota import OperationQuota, load_usage, record_start
from bot_logic.pending_operation import describe_duration, result_reply, start_pending, timeout_notice_once
from bot_logic.user_profile import MENU_SEEN, display_name, get_profile
from operations import InvalidParameters, Operation, all_operations, resolve_parameters

NAME_PROMPT = "What's your name?"
NAME_RETRY_PROMPT = "Hello to you too! What name shall I call you?"
NOT_A_NAME_PROMPT = "I'd like to call you by your name: what is it? (Just the name, please.)"
NAME_TOO_LONG_PROMPT = "That's longer than I can remember ({limit} characters at most). What shall I call you?"
# A first message is often a greeting, not the answer to "What's your name?".
GREETINGS = {
    "hi", "hello", "hey", "hallo", "hiya", "howdy", "yo", "greetings", "sup", "whats up", "good morning",
    "good afternoon", "good evening", "good day", "hi there", "hello there", "hey there", "hi bot", "hello bot",
}  # fmt: skip
MAX_NAME_LENGTH = 60
WATERFALL = "main"
PARAMETERS_HINT = "\n\nAnswer with a number or a name; add parameters to change the size, e.g. `1 end=1000000`."
MENU_QUESTION = "Which long operation shall I run, {name}?"
# After the first full menu: the question and the buttons; the list comes back with "help".
SHORT_MENU = MENU_QUESTION + " Tap one, or say 'help' to see what each does."
NOT_UNDERSTOOD_TEXT = (
    "Sorry, I didn't understand “{text}”. Pick one of the operations: tap a button, or type its number or name."
)
HELP_TEXT = (
    "I run long operations for you and tell you here when they're done; you can go on chatting meanwhile.\n\n"
    "{operations}{hint}\n\n"
    "Say 'cancel' to stop a running operation, 'menu' to start over, 'agent' to talk to a person, "
    "or 'notify me about <topic>' to hear of outside events."
)
NOTHING_TO_CANCEL = "There's nothing running to cancel."
# Every `name=value` in a choice, whatever the value: the registry checks names and values, in one place.
_PARAMETER = re.compile(r"\b([A-Za-z_]\w*)\s*=\s*([^\s=]*)")


def is_greeting(text: str) -> bool:
    words = re.sub(r"[^\w\s]", "", text.lower()).split()
    return " ".join(words) in GREETINGS


def name_problem(text: str) -> str | None:
    """What to ask again when `text` is not a name (a greeting, too long, no letters); None for a name.
    Commands never get here: the dialog takes them first."""
    name = " ".join(text.split())
    if is_greeting(name):
        return NAME_RETRY_PROMPT
    if len(name) > MAX_NAME_LENGTH:
        return NAME_TOO_LONG_PROMPT.format(limit=MAX_NAME_LENGTH)
    if not any(character.isalpha() for character in name):
        return NOT_A_NAME_PROMPT
    return None


async def _is_a_name(prompt: PromptValidatorContext) -> bool:
    problem = name_problem(str(prompt.recognized.value or "")) if prompt.recognized.succeeded else NOT_A_NAME_PROMPT
    if problem is None:
        return True
    prompt.options.retry_prompt = MessageFactory.text(problem)  # the prompt asks again with this
    return False


def operation_list() -> str:
    return "\n".join(f"{n}. {op.name} — {op.description}" for n, op in enumerate(all_operations(), start=1))


def parameters_in(text: str) -> dict[str, str]:
    """`name=value` pairs a user added to a choice, e.g. "prime report end=1000000"."""
    return {name: value for name, value in _PARAMETER.findall(text)}


_YES_NO = [
    CardAction(type=ActionTypes.im_back, title="Yes, a person please", value="yes"),
    CardAction(type=ActionTypes.im_back, title="No, thanks", value="no"),
]


# The user's name, carried from one round of the menu to the next in the waterfall's options: the
# result turn (and any other way back to the menu) then reads no user state. A name is set only
# before the first menu of a conversation, so the carried one is current.
CARRIED_NAME = "name"


def _carried_name(step: WaterfallStepContext) -> str | None:
    return display_name(step.options) if isinstance(step.options, dict) else None


def _back_to_the_menu(step: WaterfallStepContext) -> dict[str, str] | None:
    name = display_name(step.values)
    return {CARRIED_NAME: name} if name else None


class MainDialog(ComponentDialog):
    def __init__(
        self,
        profiles: StatePropertyAccessor,
        records: StatePropertyAccessor,
        effects: DurableEffects,
        clock: Clock,
        operation_timeout_seconds: int,
        hand_off: Callable[[TurnContext, str], Awaitable[None]],
        handoff_after_misunderstandings: int,
        quota: OperationQuota,
        quota_usage: StatePropertyAccessor,
    ) -> None:
        super().__init__(MainDialog.__name__)
        self._quota = quota
        self._quota_usage = quota_usage
        self._hand_off = hand_off
        self._misunderstandings_limit = handoff_after_misunderstandings
        self._profiles = profiles
        self._records = records
        self._effects = effects
        self._clock = clock
        self._timeout = operation_timeout_seconds
        self.add_dialog(TextPrompt("name_prompt", _is_a_name))
        self.add_dialog(ChoicePrompt("operation_prompt", self._understood))  # type: ignore[arg-type]  # awaited by the SDK
        self.add_dialog(WaitForOperationDialog(records, clock))
        self.add_dialog(
            WaterfallDialog(
                WATERFALL,
                [self._ask_name, self._remember_name, self._offer_operations, self._start_operation, self._tell_result],
            )
        )
        self.initial_dialog_id = WATERFALL  # type: ignore[assignment]  # the SDK declares it None

    async def on_continue_dialog(self, inner_dc: DialogContext) -> DialogTurnResult:
        """Commands at any prompt, and the answer to "Shall I bring in a person?", before the prompt sees them."""
        context = inner_dc.context
        if context.activity.type != "message":
            return await super().on_continue_dialog(inner_dc)
        text = context.activity.text
        record = await load_record(self._records, context)
        offered = answer_offer(record, yes_or_no(text))
        if offered is True:
            await self._hand_off(context, NOT_UNDERSTOOD.format(count=self._misunderstandings_limit))
            return Dialog.end_of_turn
        if offered is False:
            await context.send_activity("OK, let's carry on.")
            await inner_dc.reprompt_dialog()
            return Dialog.end_of_turn
        command = command_in(text)
        if command == HELP:
            await context.send_activity(HELP_TEXT.format(operations=operation_list(), hint=PARAMETERS_HINT))
            pending = record.get("pendingOperation")
            if pending:
                await context.send_activity(with_cancel_button(f"Right now I'm running the {pending['name']}."))
            await inner_dc.reprompt_dialog()
            return Dialog.end_of_turn
        if command == MENU:
            await self._stop_pending(context, record)
            await inner_dc.cancel_all_dialogs()
            return await inner_dc.begin_dialog(WATERFALL)
        waiting = inner_dc.active_dialog is not None and inner_dc.active_dialog.id == WaitForOperationDialog.__name__
        if command == CANCEL and not waiting:
            await context.send_activity(NOTHING_TO_CANCEL)
            await inner_dc.reprompt_dialog()
            return Dialog.end_of_turn
        return await super().on_continue_dialog(inner_dc)

    async def _stop_pending(self, context: TurnContext, record: ConversationRecord) -> None:
        """Stop the running operation, if any (its worker stops at its next check)."""
        pending = record.get("pendingOperation")
        if not pending:
            return
        record["pendingOperation"] = None  # the quota sees it ended from this record (bot_logic/operation_quota.py)
        await context.send_activity(f"Stopped the {pending['name']}.")

    async def _understood(self, prompt: PromptValidatorContext) -> bool:
        """A choice not understood is said so, with what the bot expects; after N in a row
        (HandoffAfterMisunderstandings) the bot offers a person instead (the offer stands in for the
        re-prompt: a prompt re-asks only if nothing was said)."""
        record = await load_record(self._records, prompt.context)
        if prompt.recognized.succeeded:
            note_understood(record)
            return True
        if note_misunderstanding(record, self._misunderstandings_limit):
            offer_handoff(record)
            await prompt.context.send_activity(MessageFactory.suggested_actions(_YES_NO, OFFER_TEXT))
            return False
        said = " ".join((prompt.context.activity.text or "").split())
        said = said if len(said) <= 40 else said[:39] + "…"
        prompt.options.retry_prompt = MessageFactory.text(NOT_UNDERSTOOD_TEXT.format(text=said))
        return False

    async def _ask_name(self, step: WaterfallStepContext) -> DialogTurnResult:
        if _carried_name(step) or display_name(await get_profile(self._profiles, step.context)):
            return await step.next(None)
        return await step.prompt(
            "name_prompt",
            PromptOptions(prompt=MessageFactory.text(NAME_PROMPT), retry_prompt=MessageFactory.text(NAME_RETRY_PROMPT)),
        )

    async def _remember_name(self, step: WaterfallStepContext) -> DialogTurnResult:
        if step.result is not None:
            profile = await get_profile(self._profiles, step.context)
            name = " ".join(str(step.result).split())
            profile["name"] = name
            await step.context.send_activity(f"Nice to meet you, {name}! I'll remember your name.")
        return await step.next(None)

    async def _offer_operations(self, step: WaterfallStepContext) -> DialogTurnResult:
        operations = all_operations()
        name, seen = _carried_name(step), True  # carried: back at the menu, which has been seen
        if name is None:
            profile = await get_profile(self._profiles, step.context)
            name, seen = display_name(profile), bool(profile.get(MENU_SEEN))
            if not seen:
                profile[MENU_SEEN] = True
        if name:
            step.values[CARRIED_NAME] = name
        shown = name or "friend"
        if seen:
            text = SHORT_MENU.format(name=shown)
        else:
            text = MENU_QUESTION.format(name=shown) + "\n\n" + operation_list() + PARAMETERS_HINT
        # The retry prompt is set when a choice is not understood (_understood). Prompt options live in dialog state,
        # which is serialised on every turn; one copy of the menu keeps that state small. The text
        # lists the choices for channels without buttons; Web Chat also shows one button per operation
        # (suggested actions, built when prompting, so not stored); typed answers still work.
        return await step.prompt(
            "operation_prompt",
            PromptOptions(
                prompt=MessageFactory.text(text),
                choices=[Choice(value=op.name) for op in operations],
                style=ListStyle.suggested_action,
            ),
        )

    async def _start_operation(self, step: WaterfallStepContext) -> DialogTurnResult:
        choice = cast(FoundChoice, step.result)
        operation: Operation = next(op for op in all_operations() if op.name == choice.value)
        try:
            parameters = resolve_parameters(operation, parameters_in(step.context.activity.text or ""))
        except InvalidParameters as error:
            await step.context.send_activity(f"I can't run the {operation.name} like that: {error}")
            return await step.replace_dialog(WATERFALL, _back_to_the_menu(step))
        now = self._clock()
        usage = None  # no limits, nothing to count: the start then reads and writes no user state
        if self._quota.limits:
            usage = await load_usage(self._quota_usage, step.context)
            refusal = await self._quota.refusal(usage, now)
            if refusal:
                await step.context.send_activity(refusal)
                return await step.replace_dialog(WATERFALL, _back_to_the_menu(step))
        record = await load_record(self._records, step.context)
        assert record["reference"] is not None  # remembered at the start of every turn
        pending = start_pending(operation.name, parameters, now, self._timeout, record["reference"])
        if usage is not None:
            record_start(usage, pending["id"], pending["deadline"], now, state_key(record["reference"]))
        record["pendingOperation"] = pending
        self._effects.request_operation(
            step.context,
            operation_request(pending),
            deadline=pending["deadline"],
            failure_reply=f"The {operation.name} has not started yet: its work queue is not answering. "
            "I'll keep trying; write 'cancel' to stop waiting.",
        )
        await step.context.send_activity(
            with_cancel_button(
                f"Starting the {operation.name}. It will take a while; I'll tell you here when it's done "
                f"(at the latest in {describe_duration(self._timeout)})."
            )
        )
        return await step.begin_dialog(WaitForOperationDialog.__name__)

    async def _tell_result(self, step: WaterfallStepContext) -> DialogTurnResult:
        result = cast(dict[str, Any], step.result or {})
        name = result.get("name", "operation")
        outcome = result.get("outcome")
        # A result or failure must reach the user: durable replies, kept until delivered.
        if outcome == TIMED_OUT:
            notice = timeout_notice_once(cast(PendingOperation, result))  # the pending operation, with outcome
            if notice:
                await step.context.send_activity(notice)
        elif outcome == CANCELLED:
            await step.context.send_activity(f"Cancelled the {name}.")
        else:
            self._effects.reply_durably(step.context, result_reply(name, result))
        return await step.replace_dialog(WATERFALL, _back_to_the_menu(step))
