"""The conversation: learn the user's name once, then serve requests."""

from __future__ import annotations

from botbuilder.core import MessageFactory, StatePropertyAccessor
from botbuilder.dialogs import (
    ComponentDialog,
    DialogTurnResult,
    WaterfallDialog,
    WaterfallStepContext,
)
from botbuilder.dialogs.prompts import PromptOptions, TextPrompt

from bot_logic.user_profile import display_name, get_profile

NAME_PROMPT = "What's your name?"
MAX_NAME_LENGTH = 60


class MainDialog(ComponentDialog):
    def __init__(self, profile_accessor: StatePropertyAccessor) -> None:
        super().__init__(MainDialog.__name__)
        self._profiles = profile_accessor
        self.add_dialog(TextPrompt("name_prompt"))
        self.add_dialog(WaterfallDialog("main", [self._ask_name, self._remember_name, self._serve]))
        self.initial_dialog_id = "main"

    async def _ask_name(self, step: WaterfallStepContext) -> DialogTurnResult:
        if display_name(await get_profile(self._profiles, step.context)):
            return await step.next(None)
        return await step.prompt("name_prompt", PromptOptions(prompt=MessageFactory.text(NAME_PROMPT)))

    async def _remember_name(self, step: WaterfallStepContext) -> DialogTurnResult:
        profile = await get_profile(self._profiles, step.context)
        if step.result is not None:
            name = " ".join(str(step.result).split())[:MAX_NAME_LENGTH] or "friend"
            profile["name"] = name
            await step.context.send_activity(f"Nice to meet you, {name}! I'll remember your name.")
        return await step.next(None)

    async def _serve(self, step: WaterfallStepContext) -> DialogTurnResult:
        profile = await get_profile(self._profiles, step.context)
        text = (step.context.activity.text or "").strip()
        if step.context.activity.type == "message" and text and text != profile.get("name"):
            await step.context.send_activity(f"{display_name(profile)}, you said: {text}")
        return await step.end_dialog()
