"""A transactional outbox: effects that must not be lost travel inside the conversation's state.

An effect that matters (a reply carrying an operation's result or failure, the sweeper's notice,
the queue message that starts an operation) is written as an entry under OUTBOX_PROPERTY of the
conversation's state, in the same conditional write that commits the state change it belongs to.
Only then is it sent; once sent, it is removed by another conditional write. An entry that could
not be sent stays, with its attempts counted and its next attempt scheduled with backoff, and is
tried again by the next turn of that conversation, by the sweeper (storage indexes the next
attempt), and when the worker's event is redelivered (that, too, is a turn). Whoever commits an
entry, or claims a due one, holds a lease on it while sending, so two senders (a turn and the
sweeper, two instances) do not both send it. An entry whose
deadline passes undelivered is logged as lost, with everything needed to act on it, and dropped.

So these effects are at least once: in the normal case each is sent once; only a send whose
outcome is unknown (a timeout after the channel took it, a crash before the removal is written)
can be sent twice. Everything else a turn sends (typing, progress, prompts) is best effort.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from botbuilder.core import TurnContext
from botbuilder.schema import Activity, ConversationReference

logger = logging.getLogger(__name__)

OUTBOX_PROPERTY = "Outbox"  # in conversation state; clearing a conversation leaves it alone
REPLY = "reply"  # payload: a serialised, addressed Activity
OPERATION = "operation"  # payload: an operation request for the worker's queue
MAX_BACKOFF_SECONDS = 300.0
# Who commits an entry (or claims a due one) sends it: others leave it alone this long. If the
# sender dies, the sweeper finds the entry when the lease ends. Longer than any one send can take.
LEASE_SECONDS = 120.0
SEND_TIMEOUT_SECONDS = 30.0  # one send; well inside the lease (a timed-out send counts as failed)
REPLY_LIFETIME_SECONDS = 24 * 3600  # how long a durable reply is retried before it is logged as lost

SendPayload = Callable[[dict[str, Any]], Awaitable[None]]


def addressed(reference: ConversationReference, text: str) -> Activity:
    """A message to the conversation and user a reference names."""
    return TurnContext.apply_conversation_reference(Activity(type="message", text=text), reference)


def reply_activity(reference: dict[str, Any], text: str) -> dict[str, Any]:
    """A message addressed by a stored conversation reference, as an outbox payload."""
    return dict(addressed(ConversationReference().deserialize(reference), text).serialize())


def entries(state: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list(state.get(OUTBOX_PROPERTY) or [])


def next_attempt_at(state: Mapping[str, Any]) -> float | None:
    """When the earliest undelivered entry is due, if any (storage indexes it for the sweeper)."""
    pending = entries(state)
    return min(entry["nextAttemptAt"] for entry in pending) if pending else None


def last_deadline(state: Mapping[str, Any]) -> float | None:
    """Storage must keep the conversation at least this long, so its entries can still be delivered."""
    pending = entries(state)
    return max(entry["deadline"] for entry in pending) if pending else None


def add_entry(
    state: MutableMapping[str, Any],
    kind: str,
    payload: Mapping[str, Any],
    now: float,
    deadline: float,
    failure_reply: dict[str, Any] | None = None,
) -> str:
    """Put an effect into the state's outbox (to be committed with it); returns its id."""
    entry = {
        "id": str(uuid.uuid4()),
        "kind": kind,
        "payload": payload,
        "createdAt": now,
        "deadline": deadline,
        "attempts": 0,
        "nextAttemptAt": now + LEASE_SECONDS,  # claimed by whoever commits it
        "failureReply": failure_reply,  # a reply told once, after the first failed attempt
    }
    state[OUTBOX_PROPERTY] = [*entries(state), entry]
    return str(entry["id"])


def claim_due(state: MutableMapping[str, Any], now: float) -> list[str]:
    """Claim the entries due for another attempt (to be committed before sending them); their ids."""
    claimed, kept = [], []
    for entry in entries(state):
        if entry["nextAttemptAt"] <= now:
            entry = {**entry, "nextAttemptAt": now + LEASE_SECONDS}
            claimed.append(entry["id"])
        kept.append(entry)
    if claimed:
        state[OUTBOX_PROPERTY] = kept
    return claimed


def warn_unrecorded(conversation: str, delivered: set[str]) -> None:
    """A sent entry whose removal could not be written: it is sent again after its lease (at least once;
    a duplicate has effect once), so this is logged, not failed."""
    logger.warning("conversation %s: delivery of %s not recorded", conversation, sorted(delivered))


@dataclass
class Delivery:
    """What one round of sending did; applied to the stored state afterwards."""

    delivered: set[str] = field(default_factory=set)
    lost: set[str] = field(default_factory=set)
    retries: dict[str, tuple[int, float]] = field(default_factory=dict)  # id -> (attempts, next attempt)
    failure_replies: list[dict[str, Any]] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.delivered or self.lost or self.retries)

    def apply(self, state: MutableMapping[str, Any]) -> None:
        """Record this delivery in a (possibly fresher) copy of the state."""
        kept = []
        for entry in entries(state):
            if entry["id"] in self.delivered or entry["id"] in self.lost:
                continue
            if entry["id"] in self.retries:
                attempts, next_attempt = self.retries[entry["id"]]
                entry = {**entry, "attempts": attempts, "nextAttemptAt": next_attempt}
            kept.append(entry)
        if kept:
            state[OUTBOX_PROPERTY] = kept
        else:
            state.pop(OUTBOX_PROPERTY, None)


class Outbox:
    """Sends a conversation's outbox entries; see the module's docstring."""

    def __init__(self, send_operation: SendPayload, clock: Callable[[], float]) -> None:
        self._send_operation = send_operation
        self._clock = clock

    async def deliver(
        self, state: Mapping[str, Any], ids: list[str], send_reply: SendPayload, conversation: str, delivery: Delivery
    ) -> None:
        """Send the entries named in `ids` (committed or claimed by the caller), in that order. The
        outcome is recorded in `delivery`, not in `state`."""
        now = self._clock()
        handled = delivery.delivered | delivery.lost | set(delivery.retries)
        by_id = {entry["id"]: entry for entry in entries(state) if entry["id"] not in handled}
        for entry_id in ids:
            if entry_id in by_id:
                await self._deliver_one(by_id[entry_id], send_reply, conversation, now, delivery)

    async def _deliver_one(
        self, entry: dict[str, Any], send_reply: SendPayload, conversation: str, now: float, delivery: Delivery
    ) -> None:
        if now >= entry["deadline"]:
            delivery.lost.add(entry["id"])
            # Ids only: a reply's text may echo the user, an operation's payload holds their parameters and id.
            payload = entry["payload"]
            operation_id = payload.get("operationId") if isinstance(payload, dict) else None
            logger.error(
                "LOST %s of conversation %s after %d attempts (deadline passed): entry %s%s",
                entry["kind"],
                conversation,
                entry["attempts"],
                entry["id"],
                f", operation {operation_id}" if operation_id else "",
            )
            return
        send = send_reply if entry["kind"] == REPLY else self._send_operation
        try:
            await asyncio.wait_for(send(entry["payload"]), SEND_TIMEOUT_SECONDS)
        except Exception as error:
            attempts = entry["attempts"] + 1
            backoff = min(MAX_BACKOFF_SECONDS, 5.0 * 2 ** (attempts - 1)) * random.uniform(0.5, 1.0)
            delivery.retries[entry["id"]] = (attempts, min(now + backoff, entry["deadline"]))
            logger.warning(
                "%s of conversation %s not delivered (attempt %d; retrying in %.0f s): %s",
                entry["kind"],
                conversation,
                attempts,
                backoff,
                str(error) or type(error).__name__,  # a timeout has no message: name it
            )
            if attempts == 1 and entry.get("failureReply"):
                delivery.failure_replies.append(entry["failureReply"])
            return
        delivery.delivered.add(entry["id"])
