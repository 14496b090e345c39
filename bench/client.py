"""An aiohttp load client that plays the channel: it posts activities straight to the host's
/api/messages with serviceUrl = the local Direct Line, whose Connector API takes the bot's replies."""

from __future__ import annotations

import time
import uuid
from typing import Any

import aiohttp

BOT = {"id": "bot", "name": "Bot", "role": "bot"}
MENU_PREFIX = "Which long operation shall I run"
TINY_OPERATION = "prime report end=1000"  # a choice with a parameter: the run itself is negligible


def succeeded(status: int) -> bool:
    """A channel takes any 2xx as a handled activity: the app answers 200, the SDK's CloudAdapter 201."""
    return 200 <= status < 300


class ChannelClient:
    def __init__(self, session: aiohttp.ClientSession, messages_url: str, directline_url: str) -> None:
        self.session = session
        self.messages_url = messages_url
        self.service_url = directline_url if directline_url.endswith("/") else directline_url + "/"

    async def create_conversation(self, user_id: str) -> str:
        """A conversation in the Direct Line (Connector API CreateConversation), so it accepts replies."""
        body = {"bot": BOT, "members": [{"id": user_id, "name": "User"}], "isGroup": False}
        async with self.session.post(f"{self.service_url}v3/conversations", json=body) as response:
            if response.status != 201:
                raise RuntimeError(f"CreateConversation: HTTP {response.status}: {await response.text()}")
            return str((await response.json())["id"])

    def activity(self, conversation_id: str, user_id: str, **fields: Any) -> dict[str, Any]:
        base: dict[str, Any] = {
            "type": "message",
            "id": uuid.uuid4().hex,
            "channelId": "directline",
            "serviceUrl": self.service_url,
            "conversation": {"id": conversation_id},
            "from": {"id": user_id, "name": "User", "role": "user"},
            "recipient": BOT,
            "locale": "en-US",
        }
        base.update(fields)
        return base

    async def post(self, activity: dict[str, Any]) -> tuple[int, float]:
        """POST one activity; (HTTP status, seconds until the answer was read)."""
        started = time.perf_counter()
        async with self.session.post(self.messages_url, json=activity) as response:
            await response.read()
            return response.status, time.perf_counter() - started


class Conversation:
    """One user's conversation, introduced (greeted, name given) so the menu is shown."""

    def __init__(self, client: ChannelClient, conversation_id: str, user_id: str) -> None:
        self.client = client
        self.id = conversation_id
        self.user_id = user_id

    @classmethod
    async def start(cls, client: ChannelClient, name: str = "Ada") -> Conversation:
        user_id = f"u-{uuid.uuid4().hex[:12]}"
        conversation = cls(client, await client.create_conversation(user_id), user_id)
        await conversation.expect(
            type="conversationUpdate", membersAdded=[{"id": BOT["id"]}, {"id": user_id, "name": "User"}]
        )
        await conversation.expect(text=name)
        return conversation

    async def say(self, **fields: Any) -> tuple[int, float]:
        return await self.client.post(self.client.activity(self.id, self.user_id, **fields))

    async def expect(self, **fields: Any) -> float:
        status, elapsed = await self.say(**fields)
        if not succeeded(status):
            raise RuntimeError(f"turn {fields} answered HTTP {status}")
        return elapsed
