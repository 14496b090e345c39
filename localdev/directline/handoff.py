"""Human handoff as the channel sees it: which conversations a bot has handed to a person, and how far along.

The bot asks for a person with the Bot Framework's handoff protocol (what the C#/JS SDKs'
`EventFactory` builds): an event `handoff.initiate` sent into the user's conversation through the
Connector API, its `value` the context and an `application/vnd.microsoft.activity.transcript`
attachment the conversation so far. The channel (an agent hub; here the agent console,
agent_console.py) answers with `handoff.status` events whose `value` is signed (bot_logic/handoff.py:
the state `accepted`, `failed` or `completed`, and the `handoffId` the initiate's value carried).
A bot that gives up sends `handoff.status` `failed` itself (unsigned: the bot speaks for itself
there): the handoff is withdrawn.

The desk keeps the latest handoff of each conversation and forgets it with the conversation, so its
memory is bounded by the store's (at most one handoff per stored conversation, each transcript capped at
`max_activities`).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from aiohttp import web

from localdev.directline.activities import Activity, account, utc_timestamp
from localdev.directline.errors import ApiError
from localdev.directline.store import Conversation, ConversationStore

log = logging.getLogger("localdev.directline")

INITIATE_EVENT = "handoff.initiate"
STATUS_EVENT = "handoff.status"
TRANSCRIPT_CONTENT_TYPE = "application/vnd.microsoft.activity.transcript"


class State(StrEnum):
    WAITING = "waiting"  # initiated by the bot, nobody has taken it yet
    ACCEPTED = "accepted"  # an agent is talking to the user
    COMPLETED = "completed"  # the agent (or the bot) ended it
    FAILED = "failed"  # the agent hub gave up (rejected, or failed after accepting)
    WITHDRAWN = "withdrawn"  # the bot sent handoff.status failed itself (e.g. nobody accepted in time)


OPEN_STATES = frozenset({State.WAITING, State.ACCEPTED})


@dataclass(frozen=True)
class Transition:
    """What an agent may do: the status sent to the bot, the states it may start from, and where it leads."""

    action: str
    status: str  # value.state of the handoff.status event sent to the bot
    allowed_from: frozenset[State]
    leads_to: State


ACCEPT = Transition("accept", "accepted", frozenset({State.WAITING}), State.ACCEPTED)
COMPLETE = Transition("complete", "completed", frozenset({State.ACCEPTED}), State.COMPLETED)
FAIL = Transition("fail", "failed", OPEN_STATES, State.FAILED)


def conflict(message: str) -> ApiError:
    return ApiError(409, "Conflict", message)


@dataclass(eq=False)
class Handoff:
    number: int  # creation order: newest first in listings
    conversation: Conversation
    start_seq: int  # seq of the handoff.initiate event in the conversation
    initiated_at: str
    context: Any  # the initiate event's value, as the bot sent it
    transcript: list[Activity]
    user: dict[str, Any] | None
    state: State = State.WAITING
    agent: str | None = None
    accepted_at: str | None = None
    ended_at: str | None = None
    end_seq: int | None = None  # later activities of the conversation are not this handoff's
    message: str | None = None  # the message of the last handoff.status, either way
    pending: str | None = None  # the action being forwarded to the bot right now, e.g. "accept"

    @property
    def conversation_id(self) -> str:
        return self.conversation.id

    @property
    def handoff_id(self) -> str | None:
        """The bot's id for this handoff (its initiate's value.handoffId): the console's statuses name it."""
        handoff_id = self.context.get("handoffId") if isinstance(self.context, dict) else None
        return handoff_id if isinstance(handoff_id, str) and handoff_id else None

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES

    def claim(self, transition: Transition) -> None:
        """Reserve the handoff for one action while its status event is with the bot (409 if it does not fit)."""
        if self.pending is not None:
            raise conflict(
                f"The handoff in conversation {self.conversation_id} is {self.state}, "
                f"with '{self.pending}' still in progress"
            )
        self._require(transition)
        self.pending = transition.action

    def release(self) -> None:
        self.pending = None

    def settle(self, transition: Transition, agent: str | None, message: str | None) -> None:
        """The bot took the status event. It may have withdrawn the handoff meanwhile (409 then)."""
        if self.state not in transition.allowed_from:
            raise conflict(
                f"The bot answered, but the handoff in conversation {self.conversation_id} became {self.state} "
                f"meanwhile, so it was not {transition.leads_to}"
            )
        now = utc_timestamp()
        self.state = transition.leads_to
        self.message = message
        if transition.leads_to is State.ACCEPTED:
            self.agent, self.accepted_at = agent, now
        else:
            self._end(now)

    def require_state(self, state: State, action: str) -> None:
        if self.state is not state:
            raise conflict(
                f"Cannot {action}: the handoff in conversation {self.conversation_id} is {self.state}, not {state}"
            )

    def end_by_bot(self, state: State, message: str | None) -> None:
        """The bot ended it itself (its handoff.status failed: withdrawn; completed: completed)."""
        self.state = state
        self.message = message
        self._end(utc_timestamp())

    def activities(self) -> list[Activity]:
        """The conversation since the handoff began, from the store: what the user, the bot and the agent said,
        and the handoff events (typing and conversationUpdate left out)."""
        return [
            entry.activity
            for entry in self.conversation.entries
            if entry.seq > self.start_seq
            and (self.end_seq is None or entry.seq < self.end_seq)
            and not entry.hidden
            and entry.activity.get("type") not in ("typing", "conversationUpdate")
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "conversationId": self.conversation_id,
            "handoffId": self.handoff_id,
            "state": str(self.state),
            "pending": self.pending,
            "initiatedAt": self.initiated_at,
            "acceptedAt": self.accepted_at,
            "endedAt": self.ended_at,
            "agent": self.agent,
            "message": self.message,
            "user": self.user,
            "context": self.context,
            "transcript": self.transcript_in_channel_order(),
            "activities": self.activities(),
        }

    def transcript_in_channel_order(self) -> list[Activity]:
        """The bot's transcript in the order this channel saw its activities (their sequence in the
        conversation), not the order or timestamps the bot gave them; one the channel never saw keeps
        its place after the one before it."""
        seq_of = {entry.activity.get("id"): entry.seq for entry in self.conversation.entries}
        keyed, last = [], -1
        for index, activity in enumerate(self.transcript):
            seq = seq_of.get(activity.get("id"), last)
            last = seq
            keyed.append((seq, index, activity))
        return [activity for _, _, activity in sorted(keyed, key=lambda item: item[:2])]

    def _require(self, transition: Transition) -> None:
        if self.state not in transition.allowed_from:
            allowed = " or ".join(sorted(transition.allowed_from))
            raise conflict(
                f"Cannot {transition.action}: the handoff in conversation {self.conversation_id} "
                f"is {self.state}, not {allowed}"
            )

    def _end(self, now: str) -> None:
        self.ended_at = now
        self.end_seq = self.conversation.next_seq


class HandoffDesk:
    """The handoffs the bots have asked for, the latest one per conversation."""

    def __init__(self, store: ConversationStore, max_transcript: int) -> None:
        self._store = store
        self._max_transcript = max_transcript
        self._handoffs: dict[str, Handoff] = {}
        self._numbers = itertools.count(1)

    def __len__(self) -> int:
        return len(self._handoffs)

    def observe_bot_activity(self, conversation: Conversation, activity: Activity) -> None:
        """Called with every activity the bot sends (already stored): notices handoff events."""
        if activity.get("type") != "event":
            return
        if activity.get("name") == INITIATE_EVENT:
            self._initiated(conversation, activity)
        elif activity.get("name") == STATUS_EVENT:
            self._status_from_bot(conversation, activity)

    def get(self, conversation_id: str) -> Handoff | None:
        handoff = self._handoffs.get(conversation_id)
        if handoff is not None and not self._alive(handoff):
            del self._handoffs[conversation_id]
            return None
        return handoff

    def all(self) -> list[Handoff]:
        """Newest first."""
        self.prune()
        return sorted(self._handoffs.values(), key=lambda handoff: handoff.number, reverse=True)

    def prune(self) -> None:
        """Forget handoffs whose conversation the store dropped (or replaced with a new one of the same id)."""
        for conversation_id, handoff in list(self._handoffs.items()):
            if not self._alive(handoff):
                del self._handoffs[conversation_id]

    def _alive(self, handoff: Handoff) -> bool:
        return self._store.peek(handoff.conversation_id) is handoff.conversation

    def _initiated(self, conversation: Conversation, activity: Activity) -> None:
        current = self.get(conversation.id)
        if current is not None and current.is_open:
            # One handoff at a time: the bot asked again while the first one still runs.
            log.info("handoff.initiate in %s ignored: its handoff is still %s", conversation.id, current.state)
            return
        self.prune()  # bounded: only handoffs of live conversations stay
        entry = conversation.entries[-1] if conversation.entries else None
        start_seq = entry.seq if entry is not None and entry.activity is activity else conversation.next_seq - 1
        self._handoffs[conversation.id] = Handoff(
            number=next(self._numbers),
            conversation=conversation,
            start_seq=start_seq,
            initiated_at=str(activity.get("timestamp") or utc_timestamp()),
            context=activity.get("value"),
            transcript=_transcript(activity.get("attachments"))[-self._max_transcript :],
            user=_user_of(activity, conversation),
        )
        log.info("handoff requested in conversation %s", conversation.id)

    def _status_from_bot(self, conversation: Conversation, activity: Activity) -> None:
        handoff = self.get(conversation.id)
        value = activity.get("value")
        state = value.get("state") if isinstance(value, dict) else None
        message = value.get("message") if isinstance(value, dict) else None
        if handoff is None or not handoff.is_open:
            return
        message = message if isinstance(message, str) else None
        if state == "failed":
            handoff.end_by_bot(State.WITHDRAWN, message)
        elif state == "completed":
            handoff.end_by_bot(State.COMPLETED, message)


HANDOFFS = web.AppKey("directline_handoffs", HandoffDesk)


def _transcript(attachments: Any) -> list[Activity]:
    """The activities of the first transcript attachment ({"activities": [...]}, as the SDKs send it)."""
    for attachment in attachments if isinstance(attachments, list) else []:
        if not isinstance(attachment, dict) or attachment.get("contentType") != TRANSCRIPT_CONTENT_TYPE:
            continue
        content = attachment.get("content")
        activities = content.get("activities") if isinstance(content, dict) else None
        if isinstance(activities, list):
            return [item for item in activities if isinstance(item, dict)]
    return []


def _user_of(activity: Activity, conversation: Conversation) -> dict[str, Any] | None:
    """Whom the handoff is about: the initiate's recipient (the Python SDK addresses it to the user),
    its relatesTo.user, or the last user who wrote in the conversation."""
    relates_to = activity.get("relatesTo")
    candidates: Iterable[Any] = itertools.chain(
        (activity.get("recipient"), relates_to.get("user") if isinstance(relates_to, dict) else None),
        (entry.activity.get("from") for entry in reversed(conversation.entries)),
    )
    for candidate in candidates:
        user = account(candidate)
        if user is not None and user.get("role", "user") == "user" and user["id"] != "directline":
            return {key: value for key, value in user.items() if key in ("id", "name", "role")}
    return None
