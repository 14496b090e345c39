"""A CloudAdapterBase for Azure Functions: one inbound activity per HTTP request.

The SDK's JWT validation authenticates the request (services/authentication.py builds it).
While a turn's state is not yet committed, its outgoing activities are held in the turn's
outbox (HoldsRepliesUntilCommit).
"""

from __future__ import annotations

from typing import Any

from botbuilder.core import CloudAdapterBase, TurnContext
from botbuilder.schema import ConversationReference
from botframework.connector.auth import BotFrameworkAuthentication

from services.unit_of_work import HoldsRepliesUntilCommit


class FunctionsBotAdapter(HoldsRepliesUntilCommit, CloudAdapterBase):
    def __init__(self, authentication: BotFrameworkAuthentication, bot_app_id: str) -> None:
        super().__init__(authentication)
        self.bot_app_id = bot_app_id

    async def tell(self, reference: dict[str, Any], texts: list[str]) -> None:
        """Send texts proactively into the conversation a stored reference names (no turn, no state)."""

        async def send(context: TurnContext) -> None:
            for text in texts:
                await context.send_activity(text)

        await self.continue_conversation(ConversationReference().deserialize(reference), send, self.bot_app_id)
