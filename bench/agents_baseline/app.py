"""The Agents SDK baseline agent: the app's conversation written for the Microsoft 365 Agents SDK.

Hosted as the SDK's Python samples host an agent: an AgentApplication[TurnState] over MemoryStorage
(conversation and user state loaded before and saved after each turn by the application), the
aiohttp CloudAdapter with an MsalConnectionManager configured from the environment (here empty: no
client id, so requests are anonymous and replies go to the activity's serviceUrl with no token, as the
app's do locally), and POST /api/messages -> start_agent_process. The dialog uses the SDK's own
dialogs package (microsoft-agents-hosting-dialogs, the port of botbuilder-dialogs): a waterfall with a
TextPrompt for the name and a ChoicePrompt for the menu, whose validator says what it did not understand
and, after HandoffAfterMisunderstandings in a row, offers a person (the app's rules, bot_logic/handoff.py).

Left out, compared with the app (as for the botbuilder baseline): durable state, transcripts, the
outbox, one turn at a time per conversation, redelivery checks, request validation, the worker, and
the commands (help, menu, cancel, notifications). A start turn keeps the pending operation in the
conversation state, saves it, then sends the request straight to the app's Azure Storage queue
(Azurite; nothing consumes it) with the app's own StorageQueue client.

The texts are the app's (bot_logic/dialogs/main_dialog.py and bot_logic/bot.py), restated here so this
process never imports botbuilder.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from microsoft_agents.activity import ActionTypes, CardAction, load_configuration_from_env
from microsoft_agents.authentication.msal import MsalConnectionManager
from microsoft_agents.hosting.aiohttp import CloudAdapter, start_agent_process
from microsoft_agents.hosting.core import (
    AgentApplication,
    MemoryStorage,
    MessageFactory,
    StatePropertyAccessor,
    TurnContext,
    TurnState,
)
from microsoft_agents.hosting.dialogs import (
    ChoicePrompt,
    ComponentDialog,
    DialogExtensions,
    DialogTurnResult,
    PromptOptions,
    PromptValidatorContext,
    TextPrompt,
    WaterfallDialog,
    WaterfallStepContext,
)
from microsoft_agents.hosting.dialogs.choices import Choice, ListStyle

from bench.agents_baseline import TURN_ERROR_LOG
from bot_logic.commands import yes_or_no
from bot_logic.handoff import (
    NOT_UNDERSTOOD,
    OFFER_TEXT,
    REQUESTED_TEXT,
    answer_offer,
    note_misunderstanding,
    note_understood,
    offer_handoff,
)
from bot_logic.operation_protocol import operation_request
from bot_logic.pending_operation import describe_duration, start_pending
from operations import all_operations
from services.queues.storage_queue import StorageQueue
from services.settings import Settings, load_settings

logger = logging.getLogger("bench.agents_baseline")

WELCOME = "Hello and welcome! I run long operations for you and tell you here when they are done."
WELCOME_BACK = "Welcome back, {name}!"
NAME_PROMPT = "What's your name?"
NAME_RETRY_PROMPT = "Hello to you too! What name shall I call you?"
NOT_A_NAME_PROMPT = "I'd like to call you by your name: what is it? (Just the name, please.)"
GREETINGS = {"hi", "hello", "hey", "hallo", "hiya", "howdy", "yo", "greetings", "hi there", "hello there"}
MAX_NAME_LENGTH = 60
PARAMETERS_HINT = "\n\nAnswer with a number or a name; add parameters to change the size, e.g. `1 end=1000000`."
MENU_QUESTION = "Which long operation shall I run, {name}?"
SHORT_MENU = MENU_QUESTION + " Tap one, or say 'help' to see what each does."
NOT_UNDERSTOOD_TEXT = (
    "Sorry, I didn't understand “{text}”. Pick one of the operations: tap a button, or type its number or name."
)
ERROR_TEXT = "The agent encountered an error or bug."
WATERFALL = "main"
_PARAMETER = re.compile(r"\b([A-Za-z_]\w*)\s*=\s*(\d+)")
_YES_NO = [
    CardAction(type=ActionTypes.im_back, title="Yes, a person please", value="yes"),
    CardAction(type=ActionTypes.im_back, title="No, thanks", value="no"),
]
_REQUESTS_KEY = "bench.agents_baseline.requests"  # operation requests of this turn, sent once state is saved


def _name_problem(text: str) -> str | None:
    name = " ".join(text.split())
    if " ".join(re.sub(r"[^\w\s]", "", name.lower()).split()) in GREETINGS:
        return NAME_RETRY_PROMPT
    if len(name) > MAX_NAME_LENGTH or not any(character.isalpha() for character in name):
        return NOT_A_NAME_PROMPT
    return None


async def _is_a_name(prompt: PromptValidatorContext) -> bool:
    problem = _name_problem(str(prompt.recognized.value or "")) if prompt.recognized.succeeded else NOT_A_NAME_PROMPT
    if problem is None:
        return True
    prompt.options.retry_prompt = MessageFactory.text(problem)
    return False


def _operation_list() -> str:
    return "\n".join(f"{n}. {op.name} — {op.description}" for n, op in enumerate(all_operations(), start=1))


class MainDialog(ComponentDialog):
    def __init__(self, profiles: StatePropertyAccessor, records: StatePropertyAccessor, settings: Settings) -> None:
        super().__init__(MainDialog.__name__)
        self._profiles = profiles
        self._records = records
        self._settings = settings
        self.add_dialog(TextPrompt("name_prompt", _is_a_name))
        self.add_dialog(ChoicePrompt("operation_prompt", self._understood))
        self.add_dialog(
            WaterfallDialog(WATERFALL, [self._ask_name, self._remember_name, self._offer_operations, self._start])
        )
        self.initial_dialog_id = WATERFALL

    async def _understood(self, prompt: PromptValidatorContext) -> bool:
        record = await self._records.get(prompt.context, dict)
        if prompt.recognized.succeeded:
            note_understood(record)
            return True
        if note_misunderstanding(record, self._settings.handoff_after_misunderstandings):
            offer_handoff(record)
            await prompt.context.send_activity(MessageFactory.suggested_actions(_YES_NO, OFFER_TEXT))
            return False
        said = " ".join((prompt.context.activity.text or "").split())
        said = said if len(said) <= 40 else said[:39] + "…"
        prompt.options.retry_prompt = MessageFactory.text(NOT_UNDERSTOOD_TEXT.format(text=said))
        return False

    async def _ask_name(self, step: WaterfallStepContext) -> DialogTurnResult:
        if (await self._profiles.get(step.context, dict)).get("name"):
            return await step.next(None)
        return await step.prompt(
            "name_prompt",
            PromptOptions(prompt=MessageFactory.text(NAME_PROMPT), retry_prompt=MessageFactory.text(NAME_RETRY_PROMPT)),
        )

    async def _remember_name(self, step: WaterfallStepContext) -> DialogTurnResult:
        if step.result is not None:
            name = " ".join(str(step.result).split())
            (await self._profiles.get(step.context, dict))["name"] = name
            await step.context.send_activity(f"Nice to meet you, {name}! I'll remember your name.")
        return await step.next(None)

    async def _offer_operations(self, step: WaterfallStepContext) -> DialogTurnResult:
        profile = await self._profiles.get(step.context, dict)
        name = profile.get("name") or "friend"
        if profile.get("menuSeen"):
            text = SHORT_MENU.format(name=name)
        else:
            text = MENU_QUESTION.format(name=name) + "\n\n" + _operation_list() + PARAMETERS_HINT
            profile["menuSeen"] = True
        return await step.prompt(
            "operation_prompt",
            PromptOptions(
                prompt=MessageFactory.text(text),
                choices=[Choice(value=op.name) for op in all_operations()],
                style=ListStyle.suggested_action,
            ),
        )

    async def _start(self, step: WaterfallStepContext) -> DialogTurnResult:
        operation = next(op for op in all_operations() if op.name == step.result.value)
        parameters = {k: int(v) for k, v in _PARAMETER.findall(step.context.activity.text or "")}
        record = await self._records.get(step.context, dict)
        reference = step.context.activity.get_conversation_reference().model_dump(by_alias=True, exclude_none=True)
        pending = start_pending(
            operation.name, parameters, time.time(), self._settings.operation_timeout_seconds, reference
        )
        record["pendingOperation"] = pending
        step.context.turn_state.setdefault(_REQUESTS_KEY, []).append(operation_request(pending))
        await step.context.send_activity(
            f"Starting the {operation.name}. It will take a while; I'll tell you here when it's done "
            f"(at the latest in {describe_duration(self._settings.operation_timeout_seconds)})."
        )
        return await step.end_dialog()  # the app waits in a dialog for the result; nothing reports one here


def create_agent(settings: Settings, storage: MemoryStorage, queue: StorageQueue) -> AgentApplication[TurnState]:
    # The samples' .env with an empty client id: anonymous, as the botbuilder baseline and the app locally.
    connections = MsalConnectionManager(
        **load_configuration_from_env({"CONNECTIONS__SERVICE_CONNECTION__SETTINGS__CLIENTID": ""})
    )
    agent = AgentApplication[TurnState](storage=storage, connection_manager=connections)
    # Accessors on the application's own state scopes (created per turn by TurnState.load).
    dialog_state_name, record_name, profile_name = "DialogState", "record", "profile"

    def accessor(scope: str, name: str) -> StatePropertyAccessor:
        class _Accessor(StatePropertyAccessor):
            def __init__(self) -> None:
                self.name = name

            async def get(self, context: TurnContext, default_value_or_factory: Any = None) -> Any:
                state: TurnState = context.turn_state["agent_state"]
                return state.get_value(f"{scope}.{name}", default_value_or_factory)

            async def set(self, context: TurnContext, value: Any) -> None:
                context.turn_state["agent_state"].set_value(f"{scope}.{name}", value)

            async def delete(self, context: TurnContext) -> None:
                context.turn_state["agent_state"].delete_value(f"{scope}.{name}")

        return _Accessor()

    records = accessor("ConversationState", record_name)
    dialog = MainDialog(accessor("UserState", profile_name), records, settings)
    dialog_state = accessor("ConversationState", dialog_state_name)

    async def run_then_send(context: TurnContext, state: TurnState) -> None:
        context.turn_state["agent_state"] = state
        await DialogExtensions.run_dialog(dialog, context, dialog_state)
        requests = context.turn_state.get(_REQUESTS_KEY)
        if requests:
            await state.save(context)  # the pending operation is kept before its request leaves
            for request in requests:
                await queue.send(request)

    @agent.conversation_update("membersAdded")
    async def on_members_added(context: TurnContext, state: TurnState) -> None:
        recipient = context.activity.recipient.id if context.activity.recipient else None
        if not any(member.id != recipient for member in context.activity.members_added or []):
            return
        name = state.get_value(f"UserState.{profile_name}", dict).get("name")
        await context.send_activity(WELCOME_BACK.format(name=name) if name else WELCOME)
        await run_then_send(context, state)

    @agent.activity("message")
    async def on_message(context: TurnContext, state: TurnState) -> None:
        record = state.get_value(f"ConversationState.{record_name}", dict)
        offered = answer_offer(record, yes_or_no(context.activity.text or ""))
        if offered is True:
            limit = settings.handoff_after_misunderstandings
            logger.debug("handoff requested: %s", NOT_UNDERSTOOD.format(count=limit))
            await context.send_activity(REQUESTED_TEXT)
            return
        if offered is False:
            await context.send_activity("OK, let's carry on.")
        await run_then_send(context, state)

    @agent.error
    async def on_error(context: TurnContext, error: Exception) -> None:
        conversation = context.activity.conversation.id if context.activity.conversation else None
        logger.error("%s in conversation %s", TURN_ERROR_LOG, conversation, exc_info=error)
        await context.send_activity(ERROR_TEXT)

    return agent


def create_app(environ: Mapping[str, str] | None = None) -> web.Application:
    """The baseline's web app, configured from the app's own settings (HandoffAfterMisunderstandings,
    OperationTimeoutSeconds, the operations queue) so it matches the app being compared."""
    settings = load_settings(environ)
    storage = MemoryStorage()
    queue = StorageQueue(settings.storage, settings.operations_queue_name)
    agent = create_agent(settings, storage, queue)
    adapter = CloudAdapter(connection_manager=agent.connection_manager)

    async def messages(request: web.Request) -> web.Response:
        response = await start_agent_process(request, agent, adapter)
        return response if response is not None else web.Response(status=201)

    async def close_queue(_: web.Application) -> None:
        await queue.close()

    app = web.Application()
    app.router.add_post("/api/messages", messages)
    app.on_cleanup.append(close_queue)
    return app
