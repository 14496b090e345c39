"""A CloudAdapterBase for Azure Functions: one inbound activity per HTTP request.

The SDK's JWT validation authenticates the request (services/authentication.py builds it).
While a turn's state is not yet committed, its outgoing activities are held
(HoldsRepliesUntilCommit).
"""

from __future__ import annotations

from typing import Any

from botbuilder.core import CloudAdapterBase, TurnContext
from botbuilder.schema import Activity
from botframework.connector.auth import BotFrameworkAuthentication

from services.unit_of_work import HoldsRepliesUntilCommit


class FunctionsBotAdapter(HoldsRepliesUntilCommit, CloudAdapterBase):
    def __init__(self, authentication: BotFrameworkAuthentication, bot_app_id: str) -> None:
        super().__init__(authentication)
        self.bot_app_id = bot_app_id

    async def send_stored(self, payload: dict[str, Any]) -> None:
        """Send a stored, addressed activity outside any turn (the sweeper's outbox deliveries)."""
        activity = Activity().deserialize(payload)
        # The SDK reads a reference off an inbound activity; this one is outbound: swap the parties.
        reference = TurnContext.get_conversation_reference(activity)
        reference.user, reference.bot, reference.activity_id = activity.recipient, activity.from_property, None

        async def deliver(context: TurnContext) -> None:
            await context.send_activity(activity)

        await self.continue_conversation(reference, deliver, self.bot_app_id)
