"""The channel's side of a conversation: settings, starting conversations and talking to the bot."""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from localdev.directline.activities import Activity
from localdev.directline.errors import ApiError
from localdev.directline.store import Conversation, ConversationStore
from localdev.directline.tokens import STREAM_SCOPE, TokenService

log = logging.getLogger("localdev.directline")

# Sender of a conversationUpdate sent before any user is known (the real service's value is undocumented).
_ANONYMOUS = {"id": "directline", "name": "Direct Line"}


@dataclass(frozen=True)
class Settings:
    bot_endpoint: str
    public_url: str  # ends with "/"; the serviceUrl the bot calls back
    bot_id: str = "bot"
    bot_name: str = "Bot"
    token_ttl: int = 1800
    stream_ttl: int = 120  # the credential in streamUrl only has to last until the socket opens
    bot_timeout: float = 15.0  # what Azure Bot Service gives a bot before reporting a timeout
    max_activities: int = 1000
    max_stored_activities: int = 200_000  # all conversations together; beyond it idle ones go early
    idle_ttl: float = 7200.0
    max_upload_bytes: int = 4 * 1024 * 1024  # the real service's limit per file
    ws_heartbeat: float = 30.0
    webchat_js: Path | None = None
    # Where the Web Chat page asks for its token (the app's /api/directline/token); None: the page says so.
    token_endpoint: str | None = None

    @property
    def domain(self) -> str:
        return f"{self.public_url}v3/directline"

    @property
    def bot_account(self) -> dict[str, Any]:
        return {"id": self.bot_id, "name": self.bot_name, "role": "bot"}

    @property
    def stream_base(self) -> str:
        return "ws" + self.domain.removeprefix("http")  # http -> ws, https -> wss


class BotError(ApiError):
    """The bot failed, timed out or could not be reached; the client's activity stays stored."""


@dataclass
class Channel:
    settings: Settings
    store: ConversationStore
    tokens: TokenService
    secret: str
    session: aiohttp.ClientSession | None = None
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    @property
    def tokens_secret_bytes(self) -> bytes:
        return self.secret.encode()

    # --- what clients get back -------------------------------------------------------------
    def conversation_answer(
        self, conversation: Conversation, user_id: str | None, watermark: str | None = None
    ) -> dict[str, Any]:
        """Answer of start/reconnect: a fresh token and a streamUrl carrying its own short-lived credential."""
        stream_token = self.tokens.issue(conversation.id, user_id, self.settings.stream_ttl, STREAM_SCOPE)
        stream_url = (
            f"{self.settings.stream_base}/conversations/{quote(conversation.id)}/stream"
            f"?watermark={quote(watermark or '')}&t={stream_token}"
        )
        return {**self.token_answer(conversation.id, user_id), "streamUrl": stream_url}

    def token_answer(self, conversation_id: str, user_id: str | None) -> dict[str, Any]:
        token = self.tokens.issue(conversation_id, user_id, self.settings.token_ttl)
        return {"conversationId": conversation_id, "token": token, "expires_in": self.settings.token_ttl}

    # --- conversation life cycle ----------------------------------------------------------------
    def start(self, conversation: Conversation, user: dict[str, Any] | None) -> bool:
        """Start once. Like the real channel, the bot hears that it joined, then (if known) that the user did."""
        if conversation.started:
            return False
        conversation.started = True
        bot = self.settings.bot_account
        conversation.members[bot["id"]] = bot
        joined = [bot]
        if user is not None:
            conversation.members[user["id"]] = user
            joined.append(user)
        conversation.startup = self.spawn(self._announce(conversation, joined, user))
        return True

    async def _announce(self, conversation: Conversation, joined: list[dict[str, Any]], user: Any) -> None:
        for member in joined:
            try:
                await self.post_to_bot(self._members_added(conversation, member, user))
            except BotError as exc:
                log.warning("conversationUpdate for %s in %s: %s", member["id"], conversation.id, exc.message)

    def _members_added(self, conversation: Conversation, member: dict[str, Any], user: Any) -> Activity:
        activity: Activity = {
            "type": "conversationUpdate",
            "membersAdded": [member],
            "from": dict(user) if user else dict(_ANONYMOUS),
            "recipient": self.settings.bot_account,
        }
        # Stored (never shown to clients) so it has an id the bot can reply to.
        return copy.deepcopy(conversation.append(activity, self.settings.public_url))

    async def receive_from_client(self, conversation: Conversation, activity: Activity) -> Activity:
        """Store the client's activity (so it is echoed back even if the bot fails), then forward it."""
        stored = conversation.append(activity, self.settings.public_url)
        outgoing = copy.deepcopy(stored)
        if not conversation.started:
            self.start(conversation, None)
        if conversation.startup is not None:
            await asyncio.shield(conversation.startup)
        sender = stored["from"]
        if sender["id"] not in conversation.members:
            # The real service tells the bot about a user just before that user's first activity.
            conversation.members[sender["id"]] = {k: v for k, v in sender.items() if k in ("id", "name", "role")}
            try:
                await self.post_to_bot(self._members_added(conversation, conversation.members[sender["id"]], sender))
            except BotError as exc:
                log.warning("conversationUpdate for %s in %s: %s", sender["id"], conversation.id, exc.message)
        await self.post_to_bot(outgoing)
        return stored

    # --- the bot ------------------------------------------------------------------------------
    async def post_to_bot(self, activity: Activity) -> None:
        """POST to the messaging endpoint. The bot calls our Connector API meanwhile: hold no lock here."""
        if self.session is None:
            raise RuntimeError("the Direct Line app has not started")
        timeout = aiohttp.ClientTimeout(total=self.settings.bot_timeout)
        try:
            async with self.session.post(self.settings.bot_endpoint, json=activity, timeout=timeout) as response:
                await response.read()
                status = response.status
        except TimeoutError as exc:
            raise BotError(504, "BotTimeout", "Failed to send activity: bot timed out") from exc
        except aiohttp.ClientError as exc:
            raise BotError(
                502, "BotError", f"Failed to send activity: bot unreachable at {self.settings.bot_endpoint}"
            ) from exc
        if not 200 <= status < 300:
            raise BotError(502, "BotError", f"Failed to send activity: bot returned an error ({status})")

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)  # keep a reference: the loop only holds weak ones
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.session is not None:
            await self.session.close()
