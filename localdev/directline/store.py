"""In-memory conversations: a bounded activity log per conversation and the live streams reading it.

Like the real service, a conversation has at most one open stream: opening another closes the one
before ("collision"); the displaced client reconnects with its watermark and misses nothing.

Limits (all configurable through create_app): each conversation keeps its last
`max_activities` activities (older ones can no longer be fetched with an old watermark), and a
conversation with no open stream is dropped once idle for `idle_ttl` (two hours by default: as the
service, it keeps every conversation a client may still use, however many there are). Only when all
conversations together hold more than `max_stored_activities` activities are the least recently used
idle ones dropped early, to bound memory. Uploaded files are kept per conversation (at most
`MAX_ATTACHMENTS`, oldest dropped). Every drop is logged. A dropped conversation answers 404, which
Microsoft's client reads as "conversation ended".
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from localdev.directline.activities import Activity, activity_id, is_visible_to_client, random_id, utc_timestamp

log = logging.getLogger("localdev.directline")

MAX_ATTACHMENTS = 50
# A stream whose reader falls this far behind is closed; the client reconnects with its watermark.
STREAM_BACKLOG_LIMIT = 1000


@dataclass
class Entry:
    seq: int
    activity: Activity
    hidden: bool = False  # superseded by an update, or deleted
    private: bool = False  # between the channel and the bot only (handoff status): never sent to clients


@dataclass
class StoredFile:
    content_type: str
    name: str
    data: bytes


@dataclass(eq=False)  # one per socket: told apart by identity
class Subscription:
    """One open stream. None in the queue means: close it."""

    queue: asyncio.Queue[tuple[int, Activity] | None] = field(default_factory=asyncio.Queue)
    overflowed: bool = False
    displaced: bool = False  # a newer stream of the same conversation took over ("collision")

    def end(self, displaced: bool = False) -> None:
        self.displaced = displaced
        self.queue.put_nowait(None)


def parse_watermark(value: str | None) -> int:
    """-1 means "from the start". Watermarks are the seq of the last activity the client has."""
    if value is None or value in ("", "-", "null", "undefined"):
        return -1
    try:
        return int(value)
    except ValueError as exc:
        raise ValueError(f"invalid watermark {value!r}") from exc


class Conversation:
    def __init__(self, conversation_id: str, max_activities: int, now: float) -> None:
        self.id = conversation_id
        self.entries: deque[Entry] = deque(maxlen=max_activities)
        self.next_seq = 0
        self.last_used = now
        self.started = False
        self.members: dict[str, dict[str, Any]] = {}
        self.stream: Subscription | None = None  # the one open WebSocket stream, if any
        self.attachments: OrderedDict[str, StoredFile] = OrderedDict()
        # The conversationUpdate sent on start; later activities wait for it so the bot sees them in order.
        self.startup: asyncio.Task[None] | None = None

    @property
    def watermark(self) -> str | None:
        return str(self.next_seq - 1) if self.next_seq else None

    def append(
        self,
        activity: Activity,
        service_url: str,
        *,
        keep_id: bool = False,
        keep_timestamp: bool = False,
        private: bool = False,
    ) -> Activity:
        """Store an activity, filling what the channel owns, and push it to the open streams (unless private)."""
        seq = self.next_seq
        self.next_seq += 1
        if not (keep_id and activity.get("id")):
            activity["id"] = activity_id(self.id, seq)
        if not (keep_timestamp and activity.get("timestamp")):
            activity["timestamp"] = utc_timestamp()
        activity["channelId"] = "directline"
        activity["conversation"] = {**(activity.get("conversation") or {}), "id": self.id}
        activity["serviceUrl"] = service_url
        self.entries.append(Entry(seq, activity, private=private))
        if not private:
            self._publish(seq, activity)
        return activity

    def find(self, activity_id_: str) -> Entry | None:
        for entry in reversed(self.entries):
            if not entry.hidden and entry.activity.get("id") == activity_id_:
                return entry
        return None

    def replace(self, activity_id_: str, activity: Activity, service_url: str) -> Activity | None:
        """UpdateActivity: the new version is appended (so streams and polls see it) under the same id.

        Fields the update leaves out (replyToId, recipient...) are kept from the old version.
        """
        old = self.find(activity_id_)
        if old is None:
            return None
        old.hidden = True
        merged = {**old.activity, **activity, "id": activity_id_}
        merged.pop("timestamp", None)
        return self.append(merged, service_url, keep_id=True, private=old.private)

    def delete(self, activity_id_: str) -> bool:
        entry = self.find(activity_id_)
        if entry is not None:
            entry.hidden = True
        return entry is not None

    def visible_after(self, watermark: int, websocket: bool) -> list[tuple[int, Activity]]:
        return [
            (e.seq, e.activity)
            for e in self.entries
            if e.seq > watermark and not e.hidden and not e.private and is_visible_to_client(e.activity, websocket)
        ]

    def subscribe(self) -> Subscription:
        """Open the conversation's stream; one that was open is displaced (closed with reason "collision")."""
        if self.stream is not None:
            self.stream.end(displaced=True)
        self.stream = Subscription()
        return self.stream

    def unsubscribe(self, subscription: Subscription) -> None:
        if self.stream is subscription:
            self.stream = None

    def close_streams(self) -> None:
        if self.stream is not None:
            self.stream.end()
            self.stream = None

    def add_attachment(self, stored: StoredFile) -> str:
        attachment_id = random_id(16)
        self.attachments[attachment_id] = stored
        while len(self.attachments) > MAX_ATTACHMENTS:
            self.attachments.popitem(last=False)
        return attachment_id

    def _publish(self, seq: int, activity: Activity) -> None:
        if activity.get("type") == "conversationUpdate":
            return
        stream = self.stream
        if stream is None or stream.overflowed:
            return
        if stream.queue.qsize() >= STREAM_BACKLOG_LIMIT:
            stream.overflowed = True
        stream.queue.put_nowait((seq, activity))


class ConversationStore:
    def __init__(
        self,
        max_activities: int,
        idle_ttl: float,
        clock: Callable[[], float],
        max_stored_activities: int = 200_000,
    ) -> None:
        self.max_activities = max_activities
        self.max_stored_activities = max_stored_activities
        self.idle_ttl = idle_ttl
        self._clock = clock
        self._conversations: dict[str, Conversation] = {}

    def __len__(self) -> int:
        return len(self._conversations)

    def create(self, conversation_id: str | None = None) -> Conversation:
        self.sweep()
        conversation = Conversation(conversation_id or random_id(), self.max_activities, self._clock())
        self._conversations[conversation.id] = conversation
        return conversation

    def get(self, conversation_id: str) -> Conversation | None:
        conversation = self._conversations.get(conversation_id)
        if conversation is not None:
            conversation.last_used = self._clock()
        return conversation

    def peek(self, conversation_id: str) -> Conversation | None:
        """Like get, but reading does not count as use (an agent console polling keeps nothing alive)."""
        return self._conversations.get(conversation_id)

    def all(self) -> list[Conversation]:
        return list(self._conversations.values())

    def sweep(self) -> list[str]:
        """Drop conversations idle for idle_ttl; then, only while all of them hold more than
        max_stored_activities, the least recently used idle ones. Returns the dropped ids, each logged."""
        now = self._clock()
        idle = sorted((c for c in self._conversations.values() if c.stream is None), key=lambda c: c.last_used)
        stored = sum(len(c.entries) for c in self._conversations.values())
        dropped: list[str] = []
        for conversation in idle:
            idle_minutes = (now - conversation.last_used) / 60
            if now - conversation.last_used >= self.idle_ttl:
                log.info("conversation %s dropped: idle for %.0f min", conversation.id, idle_minutes)
            elif stored > self.max_stored_activities:
                log.warning(
                    "conversation %s dropped early, idle for %.1f min: all conversations hold more than %d activities",
                    conversation.id,
                    idle_minutes,
                    self.max_stored_activities,
                )
            else:
                continue
            stored -= len(conversation.entries)
            dropped.append(conversation.id)
            del self._conversations[conversation.id]
        return dropped

    def close_all_streams(self) -> None:
        for conversation in self._conversations.values():
            conversation.close_streams()
