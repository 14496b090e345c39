"""A CloudAdapterBase for Azure Functions: one inbound activity per HTTP request.

The SDK's JWT validation authenticates the request (services/turns/authentication.py builds it).
While a turn's state is not yet committed, its outgoing activities are held
(HoldsRepliesUntilCommit); what is really sent goes into the turn's transcript (RecordsSentActivities).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from botbuilder.core import CloudAdapterBase, TurnContext
from botbuilder.schema import Activity, ConversationReference
from botframework.connector import ConnectorClient
from botframework.connector.auth import BotFrameworkAuthentication, ClaimsIdentity, ConnectorFactory, UserTokenClient

from services.channel.activity_json import from_json
from services.transcripts.middleware import RecordsSentActivities
from services.turns.turn_context import CopyingTurnContext
from services.turns.unit_of_work import HoldsRepliesUntilCommit


class FunctionsBotAdapter(HoldsRepliesUntilCommit, RecordsSentActivities, CloudAdapterBase):
    def __init__(self, authentication: BotFrameworkAuthentication, bot_app_id: str) -> None:
        super().__init__(authentication)
        self.bot_app_id = bot_app_id

    def _create_turn_context(
        self,
        activity: Activity,
        claims_identity: ClaimsIdentity,
        oauth_scope: str,
        connector_client: ConnectorClient,
        user_token_client: UserTokenClient,
        logic: Callable[[TurnContext], Awaitable[Any]],
        connector_factory: ConnectorFactory,
    ) -> TurnContext:
        """The SDK's turn context (CloudAdapterBase, botbuilder-core 4.17.1), copying replies faster
        (services/turns/turn_context.py)."""
        context = CopyingTurnContext(self, activity)
        context.turn_state[self.BOT_IDENTITY_KEY] = claims_identity
        context.turn_state[self.BOT_CONNECTOR_CLIENT_KEY] = connector_client
        context.turn_state[self.USER_TOKEN_CLIENT_KEY] = user_token_client
        context.turn_state[self.BOT_CALLBACK_HANDLER_KEY] = logic
        context.turn_state[self.CONNECTOR_FACTORY_KEY] = connector_factory
        context.turn_state[self.BOT_OAUTH_SCOPE_KEY] = oauth_scope
        return context

    async def send_stored(self, payload: dict[str, Any]) -> None:
        """Send a stored, addressed activity outside any turn (the sweeper's outbox deliveries)."""
        activity = from_json(Activity, payload)
        # The SDK reads a reference off an inbound activity; this one is outbound: swap the parties.
        reference = TurnContext.get_conversation_reference(activity)
        reference.user, reference.bot = activity.recipient, activity.from_property
        reference.activity_id = None  # type: ignore[assignment]  # the SDK's own default

        async def deliver(context: TurnContext) -> None:
            await context.send_activity(activity)

        await self.continue_conversation(reference, deliver, self.bot_app_id)

    async def send_text(self, reference: dict[str, Any], text: str) -> None:
        """A proactive message to a stored conversation reference (notifications from outside events).
        The channel's errors (a 429 among them) reach the caller."""

        async def deliver(context: TurnContext) -> None:
            await context.send_activity(text)

        await self.continue_conversation(ConversationReference().deserialize(reference), deliver, self.bot_app_id)
