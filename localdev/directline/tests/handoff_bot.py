"""A tiny bot that hands conversations to a person with the Bot Framework's handoff events, for tests.

It is the echo bot of support.py plus the bot's side of the handoff protocol:
- message "agent" -> "asking a person", then a `handoff.initiate` event (value {"reason", "userName",
  "handoffId"}, a transcript attachment of the conversation as the bot saw it), as
  EventFactory.createHandoffInitiation builds it and the Python SDK sends it (from the bot, to the user,
  as a reply);
- message "withdraw" -> "no person came", then `handoff.status` failed (nobody accepted in time);
- message "break" -> the next `handoff.status` it receives is answered 500;
- message "hold" -> the next `handoff.status` is answered only once the test sets `release`;
- message "too late" -> the next `handoff.status` accepted is refused with `handoff.status` failed
  (as a bot that has given up meanwhile does);
- event `handoff.status` -> kept in `statuses`; if signed with HANDOFF_SIGNING_KEY (as the real bot checks,
  bot_logic/handoff.py, simplified: signature and conversation), answered "handoff <state> by <agentName>",
  else ignored;
- while a handoff is accepted, the user's messages get no answer (a person answers them).
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from typing import Any

from aiohttp import web

from bot_logic.signing import verified_payload
from localdev.directline.tests.support import HANDOFF_SIGNING_KEY, Activity, EchoBot

TRANSCRIPT = "application/vnd.microsoft.activity.transcript"
REASON = "user asked for a person"
WITHDRAWN_MESSAGE = "nobody accepted in time"


class HandoffBot(EchoBot):
    def __init__(self) -> None:
        super().__init__()
        self.transcripts: dict[str, list[Activity]] = {}  # messages per conversation, as the bot saw them
        self.handoff_state: dict[str, str] = {}  # conversation id -> "waiting" | "accepted"
        self.broken: set[str] = set()  # conversations whose next handoff.status is answered 500
        self.held: set[str] = set()  # conversations whose next handoff.status waits for `release`
        self.too_late: set[str] = set()  # conversations whose next accept the bot refuses
        self.release = threading.Event()
        self.handoff_ids: dict[str, str] = {}  # conversation id -> the latest handoff's id
        self._numbers = itertools.count(1)

    def statuses(self, conversation_id: str) -> list[Activity]:
        """The handoff.status events the channel sent in that conversation."""
        return [a for a in self.received_in(conversation_id) if a.get("name") == "handoff.status"]

    def status_payloads(self, conversation_id: str) -> list[dict[str, Any] | None]:
        """What each of those said, if signed with the key (None where the signature does not verify)."""
        return [verified_payload(a.get("value"), HANDOFF_SIGNING_KEY) for a in self.statuses(conversation_id)]

    async def handle(self, request: web.Request) -> web.Response:
        activity = await request.json()
        conversation_id = activity["conversation"]["id"]
        kind, text = activity.get("type"), activity.get("text") or ""
        if kind == "event" and activity.get("name") == "handoff.status":
            return await self._on_status(activity)
        if kind != "message" or text in ("fail", "typing"):
            return await super().handle(request)
        self._record(self.received, activity)
        self.transcripts.setdefault(conversation_id, []).append(activity)
        if text == "agent":
            await self.reply(activity, {"type": "message", "text": "asking a person"})
            await self._initiate(activity)
        elif text == "withdraw":
            self.handoff_state.pop(conversation_id, None)
            await self.reply(activity, {"type": "message", "text": "no person came"})
            status = {"state": "failed", "message": WITHDRAWN_MESSAGE}
            await self.reply(activity, {"type": "event", "name": "handoff.status", "value": status})
        elif text in ("break", "hold", "too late"):
            {"break": self.broken, "hold": self.held, "too late": self.too_late}[text].add(conversation_id)
            await self.reply(activity, {"type": "message", "text": f"the next handoff.status: {text}"})
        elif self.handoff_state.get(conversation_id) != "accepted":
            await self.reply(activity, {"type": "message", "text": f"echo: {text}"})
        return web.Response(status=200)

    async def reply(self, incoming: Activity, activity: Activity) -> str:
        activity_id = await super().reply(incoming, activity)
        if activity.get("type") == "message":
            sent = {**activity, "id": activity_id, "from": incoming["recipient"], "recipient": incoming["from"]}
            self.transcripts.setdefault(incoming["conversation"]["id"], []).append(sent)
        return activity_id

    async def _initiate(self, activity: Activity) -> None:
        conversation_id = activity["conversation"]["id"]
        self.handoff_state[conversation_id] = "waiting"
        user = activity["from"]
        handoff_id = self.handoff_ids[conversation_id] = f"handoff-{next(self._numbers)}"
        context: dict[str, Any] = {
            "reason": REASON,
            "userName": user.get("name") or user["id"],
            "handoffId": handoff_id,
        }
        transcript = {"activities": list(self.transcripts.get(conversation_id, []))}
        await self.reply(
            activity,
            {
                "type": "event",
                "name": "handoff.initiate",
                "value": context,
                "attachments": [{"contentType": TRANSCRIPT, "content": transcript, "name": "Transcript"}],
            },
        )

    async def _on_status(self, activity: Activity) -> web.Response:
        self._record(self.received, activity)
        conversation_id = activity["conversation"]["id"]
        if conversation_id in self.broken:
            self.broken.discard(conversation_id)
            return web.Response(status=500, text="status handling broke")
        if conversation_id in self.held:
            self.held.discard(conversation_id)
            if not await asyncio.to_thread(self.release.wait, 10):
                return web.Response(status=500, text="never released")
        payload = verified_payload(activity.get("value"), HANDOFF_SIGNING_KEY)
        if payload is None or payload.get("conversationId") != conversation_id:
            return web.Response(status=200)  # not the hub's: ignored
        state = payload.get("state")
        if state == "accepted" and conversation_id in self.too_late:
            self.too_late.discard(conversation_id)
            self.handoff_state.pop(conversation_id, None)
            refusal = {"state": "failed", "message": "the bot is no longer waiting"}
            await self.reply(activity, {"type": "event", "name": "handoff.status", "value": refusal})
            return web.Response(status=200)
        if state == "accepted":
            self.handoff_state[conversation_id] = "accepted"
        else:
            self.handoff_state.pop(conversation_id, None)
        agent = payload.get("agentName")
        await self.reply(activity, {"type": "message", "text": f"handoff {state} by {agent}"})
        return web.Response(status=200)
