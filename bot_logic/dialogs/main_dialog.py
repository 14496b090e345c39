"""The conversation: learn the user's name once, offer the operations, wait for one, tell the result."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from botbuilder.core import MessageFactory, StatePropertyAccessor, TurnContext
from botbuilder.dialogs import ComponentDialog, DialogTurnResult, WaterfallDialog, WaterfallStepContext
from botbuilder.dialogs.choices import Choice, ListStyle
from botbuilder.dialogs.prompts import ChoicePrompt, PromptOptions, PromptValidatorContext, TextPrompt

from bot_logic.clock import Clock
from bot_logic.conversation_record import new_record
from bot_logic.dialogs.wait_for_operation import CANCELLED, TIMED_OUT, WaitForOperationDialog, with_cancel_button
from bot_logic.effects import DurableEffects
from bot_logic.handoff import NOT_UNDERSTOOD, note_misunderstanding, note_understood
from bot_logic.operation_protocol import operation_request
from bot_logic.operation_quota import OperationQuota, new_usage, record_end, record_start
from bot_logic.pending_operation import describe_duration, result_reply, start_pending, timeout_notice_once
from bot_logic.user_profile import display_name, get_profile
from operations import InvalidParameters, Operation, all_operations, resolve_parameters

NAME_PROMPT = "What's your name?"
NAME_RETRY_PROMPT = "Hello to you too! What name shall I call you?"
# A first message is often a greeting, not the answer to "What's your name?".
GREETINGS = {
    "hi", "hello", "hey", "hallo", "hiya", "howdy", "yo", "greetings", "sup", "whats up", "good morning",
    "good afternoon", "good evening", "good day", "hi there", "hello there", "hey there", "hi bot", "hello bot",
}  # fmt: skip
MAX_NAME_LENGTH = 60
WATERFALL = "main"
PARAMETERS_HINT = "\n\nAnswer with a number or a name; add parameters to change the size, e.g. `1 end=1000000`."
_PARAMETER = re.compile(r"\b([A-Za-z_]\w*)\s*=\s*([\d][\d,_]*)")


def is_greeting(text: str) -> bool:
    words = re.sub(r"[^\w\s]", "", text.lower()).split()
    return " ".join(words) in GREETINGS


async def _is_a_name(prompt: PromptValidatorContext) -> bool:
    return bool(prompt.recognized.succeeded and str(prompt.recognized.value).strip()) and not is_greeting(
        str(prompt.recognized.value)
    )


def parameters_in(text: str) -> dict[str, str]:
    """`name=value` pairs a user added to a choice, e.g. "prime report end=1000000"."""
    return {name: value for name, value in _PARAMETER.findall(text)}


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
        self.add_dialog(ChoicePrompt("operation_prompt", self._understood))
        self.add_dialog(WaitForOperationDialog(records, clock))
        self.add_dialog(
            WaterfallDialog(
                WATERFALL,
                [self._ask_name, self._remember_name, self._offer_operations, self._start_operation, self._tell_result],
            )
        )
        self.initial_dialog_id = WATERFALL

    async def _understood(self, prompt: PromptValidatorContext) -> bool:
        """A choice not understood N times in a row (HandoffAfterMisunderstandings) hands the conversation to
        a person: the handoff's replies stand in for the re-prompt (a prompt re-asks only if nothing was said)."""
        record = await self._records.get(prompt.context, new_record)
        if prompt.recognized.succeeded:
            note_understood(record)
            return True
        limit = self._misunderstandings_limit
        if note_misunderstanding(record, limit):
            await self._hand_off(prompt.context, NOT_UNDERSTOOD.format(count=limit))
        return False

    async def _ask_name(self, step: WaterfallStepContext) -> DialogTurnResult:
        if display_name(await get_profile(self._profiles, step.context)):
            return await step.next(None)
        return await step.prompt(
            "name_prompt",
            PromptOptions(prompt=MessageFactory.text(NAME_PROMPT), retry_prompt=MessageFactory.text(NAME_RETRY_PROMPT)),
        )

    async def _remember_name(self, step: WaterfallStepContext) -> DialogTurnResult:
        if step.result is not None:
            profile = await get_profile(self._profiles, step.context)
            name = " ".join(str(step.result).split())[:MAX_NAME_LENGTH] or "friend"
            profile["name"] = name
            await step.context.send_activity(f"Nice to meet you, {name}! I'll remember your name.")
        return await step.next(None)

    async def _offer_operations(self, step: WaterfallStepContext) -> DialogTurnResult:
        operations = all_operations()
        name = display_name(await get_profile(self._profiles, step.context)) or "friend"
        lines = [f"{n}. {op.name} — {op.description}" for n, op in enumerate(operations, start=1)]
        text = f"Which long operation shall I run, {name}?\n\n" + "\n".join(lines) + PARAMETERS_HINT
        # No separate retry prompt: the prompt is asked again. Prompt options live in dialog state,
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
        operation: Operation = next(op for op in all_operations() if op.name == step.result.value)
        try:
            parameters = resolve_parameters(operation, parameters_in(step.context.activity.text or ""))
        except InvalidParameters as error:
            await step.context.send_activity(f"I can't run the {operation.name} like that: {error}")
            return await step.replace_dialog(WATERFALL)
        usage = await self._quota_usage.get(step.context, new_usage)
        now = self._clock()
        refusal = self._quota.refusal(usage, now)
        if refusal:
            await step.context.send_activity(refusal)
            return await step.replace_dialog(WATERFALL)
        record = await self._records.get(step.context, new_record)
        pending = start_pending(operation.name, parameters, now, self._timeout, record["reference"])
        record_start(usage, pending["id"], pending["deadline"], now)
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
        result: dict[str, Any] = step.result or {}
        name = result.get("name", "operation")
        outcome = result.get("outcome")
        if isinstance(result.get("operationId"), str):
            record_end(await self._quota_usage.get(step.context, new_usage), result["operationId"])
        # A result or failure must reach the user: durable replies, kept until delivered.
        if outcome == TIMED_OUT:
            notice = timeout_notice_once(result)
            if notice:
                await step.context.send_activity(notice)
        elif outcome == CANCELLED:
            await step.context.send_activity(f"Cancelled the {name}. If its result still arrives, I'll ignore it.")
        else:
            self._effects.reply_durably(step.context, result_reply(name, result))
        return await step.replace_dialog(WATERFALL)
