"""Where the bot can reach a user proactively: conversation references and topic subscriptions,
durable in Cosmos DB (the SDK sample keeps them in a dict, lost at every restart and not shared
by scaled-out instances).

One container (partition key /id, TTL on per document, only `topics` indexed) holds two kinds
of document:

    user          {"id": "user-<escaped user id>", "type": "user", "userId", "conversationId",
                   "reference", "topics": [...], "directNoticesOff"?, "updatedAt"}   no ttl: kept
    conversation  {"id": "conversation-<escaped id>", "type": "conversation", "conversationId",
                   "reference", "delivered": [notification ids, newest last, at most 100],
                   "sending": [{"id", "until"}], "updatedAt", "ttl"}      expires when idle

`reference` is a serialised ConversationReference (camelCase, as `.serialize()` gives it) without
its `activityId`: a notification is a new message in the conversation, not a reply to the turn
that happened to be the user's last.

Read-modify-writes (topics, delivered ids, claims) are conditional on the document's etag and run
again on fresh data when another writer won (bounded). Remembering a reference is a patch, which
Cosmos DB applies atomically, so it never erases topics or delivered ids written meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from azure.core import MatchConditions
from azure.core.exceptions import ServiceRequestError, ServiceResponseError
from azure.cosmos.aio import ContainerProxy
from azure.cosmos.exceptions import CosmosHttpResponseError, CosmosResourceNotFoundError

from services.state.cosmos import TRANSIENT_STATUSES, escape_id
from services.unavailable import ServiceUnavailable

logger = logging.getLogger(__name__)

MAX_TOPICS_PER_USER = 50  # a user document's size stays small
MAX_DELIVERED_IDS = 100  # per conversation: enough to catch a redelivery, small enough to rewrite
DEFAULT_CLAIM_SECONDS = 120.0
# How long this process trusts that what it wrote for a user is still what Cosmos DB holds.
# Another instance may have stored a newer conversation for the same user meanwhile; after this
# long the next turn writes again (and a conversation's document is refreshed before its ttl).
MAX_CACHE_AGE_SECONDS = 900.0
DEFAULT_CACHE_SIZE = 10_000
# remember() runs inside a user's turn, which the channel gives 15 s: the Cosmos DB SDK's own
# retries (of a throttled request, say) must not spend that on bookkeeping the next turn can redo.
REMEMBER_TIMEOUT_SECONDS = 3.0

_MAX_RACES = 5  # conditional writes tried before giving up (each loser re-reads)
USER_PREFIX = "user-"
CONVERSATION_PREFIX = "conversation-"

TOPICS_QUERY = "SELECT c.userId, c.reference FROM c WHERE ARRAY_CONTAINS(c.topics, @topic)"
COUNT_QUERY = "SELECT VALUE COUNT(1) FROM c WHERE ARRAY_CONTAINS(c.topics, @topic)"

ClaimStatus = Literal["claimed", "delivered", "in-flight", "unknown"]
# On a user's document: true after "stop notifications" (until "start notifications"): nothing sent to
# them by user id or conversation id reaches them. Missing means on.
DIRECT_NOTICES_OFF = "directNoticesOff"


class ReferencesUnavailable(ServiceUnavailable):
    """Cosmos DB did not serve the request now (throttled, unavailable, timed out, or every
    conditional write lost its race)."""


class TooManyTopics(ValueError):
    """The user follows MAX_TOPICS_PER_USER topics already; the message says so."""


class InvalidReference(ValueError):
    """Not a serialised ConversationReference with user and conversation ids."""


def user_document_id(user_id: str) -> str:
    return escape_id(USER_PREFIX + user_id)


def conversation_document_id(conversation_id: str) -> str:
    return escape_id(CONVERSATION_PREFIX + conversation_id)


def parties_of(reference: Any) -> tuple[str, str]:
    """(user id, conversation id) of a serialised reference; raises InvalidReference."""
    if not isinstance(reference, dict):
        raise InvalidReference("a conversation reference must be a JSON object")
    ids = []
    for party in ("user", "conversation"):
        value = reference.get(party)
        party_id = value.get("id") if isinstance(value, dict) else None
        if not isinstance(party_id, str) or not party_id:
            raise InvalidReference(f"the conversation reference has no {party}.id")
        ids.append(party_id)
    return ids[0], ids[1]


def storable_reference(reference: dict[str, Any]) -> dict[str, Any]:
    """The reference as stored: plain JSON (a copy), without activityId and empty fields."""
    try:
        plain = {k: v for k, v in reference.items() if k != "activityId" and v is not None}
        copy: dict[str, Any] = json.loads(json.dumps(plain))
    except (TypeError, ValueError) as error:
        raise InvalidReference(f"the conversation reference is not plain JSON: {error}") from None
    return copy


@dataclass(frozen=True)
class UserReach:
    """How a notification may reach a user: their latest reference, the topics they follow, and
    whether they turned notices sent to them directly off."""

    reference: dict[str, Any]
    topics: list[str]
    direct_notices_off: bool


@dataclass
class ReferenceCounters:
    """Cosmos DB round trips made (tests and benchmarks read them)."""

    reads: int = 0
    writes: int = 0
    queries: int = 0


@dataclass
class DeliveryClaim:
    """The outcome of claiming one notification's delivery to one conversation.

    claimed    this process may send now (to `reference`), then record_delivery / release_delivery
    delivered  it was delivered already: do nothing (a redelivered queue message)
    in-flight  another process claimed it and may be sending it now, until `busy_until`
    unknown    no conversation of that id is known
    """

    status: ClaimStatus
    conversation_id: str
    notification_id: str
    reference: dict[str, Any] | None = None
    busy_until: float | None = None
    document: dict[str, Any] | None = field(default=None, repr=False)  # as written, with its etag


class ConversationReferences:
    """Implements bot_logic.notifications.NotificationSubscriptions, and the lookups and delivery
    bookkeeping handlers/notifications.py needs."""

    def __init__(
        self,
        container: Callable[[], Awaitable[ContainerProxy]],
        time_to_live: int,
        clock: Callable[[], float] = time.time,
        cache_size: int = DEFAULT_CACHE_SIZE,
        counters: ReferenceCounters | None = None,
        remember_timeout: float = REMEMBER_TIMEOUT_SECONDS,
    ) -> None:
        self._container = container
        self._time_to_live = time_to_live  # of a conversation's document, refreshed by each write
        self._clock = clock
        self._cache_size = cache_size
        self._remember_timeout = remember_timeout
        self._cache_age = min(MAX_CACHE_AGE_SECONDS, time_to_live / 2)
        # user id -> (the reference this process stored for them, when): what makes remember() free.
        self._remembered: OrderedDict[str, tuple[dict[str, Any], float]] = OrderedDict()
        self.counters = counters or ReferenceCounters()

    # --- NotificationSubscriptions (bot logic's port) -------------------------------------

    async def remember(self, reference: dict[str, Any]) -> None:
        """Store `reference` as its user's latest conversation and as its conversation's reference.
        Free when this process stored the same reference recently; never raises (a failure is
        logged and the next turn tries again)."""
        try:
            user_id, conversation_id = parties_of(reference)
            stored = storable_reference(reference)
        except InvalidReference as error:
            logger.warning("conversation reference not remembered: %s", error)
            return
        now = self._clock()
        cached = self._remembered.get(user_id)
        if cached is not None and cached[0] == stored and now - cached[1] < self._cache_age:
            self._remembered.move_to_end(user_id)
            return
        try:
            async with asyncio.timeout(self._remember_timeout):
                await self._patch_or_create(
                    user_document_id(user_id),
                    {"reference": stored, "conversationId": conversation_id, "updatedAt": now},
                    lambda: self._new_user_document(user_id, stored, now),
                )
                await self._patch_or_create(
                    conversation_document_id(conversation_id),
                    {"reference": stored, "updatedAt": now, "ttl": self._time_to_live},
                    lambda: self._new_conversation_document(conversation_id, stored, now),
                )
        except (ReferencesUnavailable, TimeoutError) as error:
            # Never the user id at WARNING (privacy): the conversation id finds it when needed.
            logger.warning("conversation %s not remembered now: %s", conversation_id, error or "timed out")
            return
        except Exception:
            logger.exception("conversation %s not remembered", conversation_id)
            return
        self._remembered[user_id] = (stored, now)
        self._remembered.move_to_end(user_id)
        while len(self._remembered) > self._cache_size:
            self._remembered.popitem(last=False)

    async def subscribe(self, reference: dict[str, Any], topic: str) -> list[str]:
        """Subscribe the reference's user to `topic` (normalised by bot_logic.notification_rules.normalise_topic);
        the user's topics now. Raises TooManyTopics, InvalidReference, ReferencesUnavailable."""
        _, conversation_id = parties_of(reference)
        stored = storable_reference(reference)

        def add(document: dict[str, Any], now: float) -> tuple[bool, list[str]]:
            topics = list(document.get("topics") or [])
            if topic in topics:
                return False, topics
            if len(topics) >= MAX_TOPICS_PER_USER:
                raise TooManyTopics(f"a user may follow at most {MAX_TOPICS_PER_USER} topics")
            topics.append(topic)
            document.update(topics=topics, reference=stored, conversationId=conversation_id, updatedAt=now)
            return True, topics

        return await self._change_user(reference, {"topics": [topic]}, [topic], add)

    async def stop_notifications(self, reference: dict[str, Any]) -> list[str]:
        """Stop everything for the reference's user: remove all their subscriptions and turn off notices
        sent to them directly (by user id or conversation id); the topics removed. Creates the user's
        document if it is missing (the turn's own remember() may have failed), so the choice is kept.
        Raises InvalidReference, ReferencesUnavailable."""

        def stop(document: dict[str, Any], now: float) -> tuple[bool, list[str]]:
            removed = list(document.get("topics") or [])
            if not removed and document.get(DIRECT_NOTICES_OFF) is True:
                return False, []
            document.update(topics=[], updatedAt=now, **{DIRECT_NOTICES_OFF: True})
            return True, removed

        return await self._change_user(reference, {DIRECT_NOTICES_OFF: True}, [], stop)

    async def _change_user(
        self,
        reference: dict[str, Any],
        new_fields: dict[str, Any],
        created: list[str],
        change: Callable[[dict[str, Any], float], tuple[bool, list[str]]],
    ) -> list[str]:
        """Create the reference's user's document with `new_fields` (answering `created`), or `change` the
        one there in place (whether to write it, the answer), written conditionally: a lost race reads again."""
        user_id, _ = parties_of(reference)
        stored = storable_reference(reference)
        doc_id = user_document_id(user_id)
        for _ in range(_MAX_RACES):
            now = self._clock()
            document = await self._read(doc_id)
            if document is None:
                if await self._create({**self._new_user_document(user_id, stored, now), **new_fields}) is None:
                    continue  # created meanwhile: read it
                return created
            write, answer = change(document, now)
            if not write or await self._replace(document) is not None:
                return answer
        raise ReferencesUnavailable("a user's subscriptions: every write lost a race")

    async def start_notifications(self, reference: dict[str, Any]) -> bool:
        """Turn notices sent to the reference's user directly back on; True if they were off.
        Topics stay as they are. Raises InvalidReference, ReferencesUnavailable."""
        user_id, _ = parties_of(reference)
        doc_id = user_document_id(user_id)
        for _ in range(_MAX_RACES):
            document = await self._read(doc_id)
            if document is None or document.get(DIRECT_NOTICES_OFF) is not True:
                return False  # on: a missing document is the default, on
            document.update(updatedAt=self._clock(), **{DIRECT_NOTICES_OFF: False})
            if await self._replace(document) is not None:
                return True
        raise ReferencesUnavailable("a user's subscriptions: every write lost a race")

    # --- lookups --------------------------------------------------------------------------

    async def user_reference(self, user_id: str) -> dict[str, Any] | None:
        """The reference of the user's latest conversation, or None if they never talked to the bot."""
        document = await self._read(user_document_id(user_id))
        return document.get("reference") if document else None

    async def user_reach(self, user_id: str) -> UserReach | None:
        """The user's latest reference, topics and whether direct notices are off, in one read; None if
        they never talked to the bot."""
        document = await self._read(user_document_id(user_id))
        if not document or not document.get("reference"):
            return None
        return UserReach(
            document["reference"], list(document.get("topics") or []), document.get(DIRECT_NOTICES_OFF) is True
        )

    async def direct_notices_off(self, user_id: str) -> bool:
        """Whether the user said "stop notifications" (and not "start notifications" since)."""
        document = await self._read(user_document_id(user_id))
        return document is not None and document.get(DIRECT_NOTICES_OFF) is True

    async def conversation_reach(self, conversation_id: str) -> UserReach | None:
        """The conversation's reference and whether its user turned direct notices off (two reads);
        None if the conversation is unknown (never seen, or expired). `topics` is left empty."""
        reference = await self.conversation_reference(conversation_id)
        if reference is None:
            return None
        user = reference.get("user")
        user_id = user.get("id") if isinstance(user, dict) else None
        off = await self.direct_notices_off(user_id) if isinstance(user_id, str) and user_id else False
        return UserReach(reference, [], off)

    async def conversation_reference(self, conversation_id: str) -> dict[str, Any] | None:
        """The conversation's reference, or None if it is unknown (never seen, or expired)."""
        document = await self._read(conversation_document_id(conversation_id))
        return document.get("reference") if document else None

    async def subscribers(self, topic: str) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """(user id, latest reference) of every user subscribed to `topic`, page by page
        (an indexed query across partitions). Raises ReferencesUnavailable."""
        parameters: list[dict[str, object]] = [{"name": "@topic", "value": topic}]
        container = await self._container()
        self.counters.queries += 1
        with _translated(f"subscribers of {topic!r}"):
            async for row in container.query_items(TOPICS_QUERY, parameters=parameters):
                yield row["userId"], row["reference"]

    async def count_subscribers(self, topic: str) -> int:
        parameters: list[dict[str, object]] = [{"name": "@topic", "value": topic}]
        container = await self._container()
        self.counters.queries += 1
        with _translated(f"subscribers of {topic!r}"):
            counts = [n async for n in container.query_items(COUNT_QUERY, parameters=parameters)]
        return sum(int(n) for n in counts)  # type: ignore[call-overload]  # the query's rows are numbers (VALUE COUNT)

    # --- delivery bookkeeping (effect once per conversation) -------------------------------

    async def claim_delivery(
        self,
        conversation_id: str,
        notification_id: str,
        lease_seconds: float = DEFAULT_CLAIM_SECONDS,
        reference: dict[str, Any] | None = None,
    ) -> DeliveryClaim:
        """Claim the right to send notification `notification_id` to the conversation, for
        `lease_seconds` (a claim of a process that stopped lapses then). With `reference` (a user's
        latest, say) the conversation's document is created if it is missing (expired), and the
        claim sends to that reference; without it a missing conversation is "unknown"."""
        doc_id = conversation_document_id(conversation_id)
        stored = storable_reference(reference) if reference is not None else None

        def outcome(status: ClaimStatus, **fields: Any) -> DeliveryClaim:
            return DeliveryClaim(status, conversation_id, notification_id, **fields)

        for _ in range(_MAX_RACES):
            now = self._clock()
            claim = {"id": notification_id, "until": now + lease_seconds}
            document = await self._read(doc_id)
            if document is None:
                if stored is None:
                    return outcome("unknown")
                new = {**self._new_conversation_document(conversation_id, stored, now), "sending": [claim]}
                saved = await self._create(new)
                if saved is None:
                    continue
                return outcome("claimed", reference=stored, document=saved)
            if notification_id in (document.get("delivered") or []):
                return outcome("delivered")
            sending = [s for s in document.get("sending") or [] if s.get("until", 0) > now]
            other = next((s for s in sending if s.get("id") == notification_id), None)
            if other is not None:
                return outcome("in-flight", busy_until=float(other["until"]))
            document["sending"] = [*sending, claim]
            saved = await self._replace(document)
            if saved is None:
                continue
            return outcome("claimed", reference=stored or document.get("reference"), document=saved)
        raise ReferencesUnavailable(f"conversation {conversation_id}: every claim lost a race")

    async def record_delivery(self, claim: DeliveryClaim) -> None:
        """Record a claimed notification as delivered (a redelivery is then skipped) and drop the claim."""
        nid = claim.notification_id

        def delivered(document: dict[str, Any]) -> None:
            ids = [i for i in document.get("delivered") or [] if i != nid] + [nid]
            document["delivered"] = ids[-MAX_DELIVERED_IDS:]
            self._drop_claim(document, nid)

        await self._update_claimed(claim, delivered, recreate=True)

    async def release_delivery(self, claim: DeliveryClaim) -> None:
        """Give a claim up unsent (a failed or deferred send), so another attempt need not wait for it to lapse."""
        await self._update_claimed(claim, lambda document: self._drop_claim(document, claim.notification_id))

    # --- internals ------------------------------------------------------------------------

    def _drop_claim(self, document: dict[str, Any], notification_id: str) -> None:
        now = self._clock()
        document["sending"] = [
            s for s in document.get("sending") or [] if s.get("id") != notification_id and s.get("until", 0) > now
        ]

    async def _update_claimed(
        self, claim: DeliveryClaim, change: Callable[[dict[str, Any]], None], recreate: bool = False
    ) -> None:
        doc_id = conversation_document_id(claim.conversation_id)
        document = dict(claim.document) if claim.document is not None else None
        for _ in range(_MAX_RACES):
            if document is None:
                document = await self._read(doc_id)
            if document is None:
                if not recreate or claim.reference is None:
                    return  # expired meanwhile: nothing to release
                new = self._new_conversation_document(claim.conversation_id, claim.reference, self._clock())
                change(new)
                if await self._create(new) is not None:
                    return
            else:
                change(document)
                if await self._replace(document) is not None:
                    return
            document = None  # lost a race: read again
        raise ReferencesUnavailable(f"conversation {claim.conversation_id}: every write lost a race")

    def _new_user_document(self, user_id: str, reference: dict[str, Any], now: float) -> dict[str, Any]:
        return {
            "id": user_document_id(user_id),
            "type": "user",
            "userId": user_id,
            "conversationId": reference["conversation"]["id"],
            "reference": reference,
            "topics": [],
            "updatedAt": now,
        }

    def _new_conversation_document(self, conversation_id: str, reference: dict[str, Any], now: float) -> dict[str, Any]:
        return {
            "id": conversation_document_id(conversation_id),
            "type": "conversation",
            "conversationId": conversation_id,
            "reference": reference,
            "delivered": [],
            "sending": [],
            "updatedAt": now,
            "ttl": self._time_to_live,
        }

    async def _read(self, doc_id: str) -> dict[str, Any] | None:
        container = await self._container()
        self.counters.reads += 1
        with _translated(doc_id):
            try:
                return await container.read_item(item=doc_id, partition_key=doc_id)
            except CosmosResourceNotFoundError:
                return None

    async def _create(self, document: dict[str, Any]) -> dict[str, Any] | None:
        """The created document, or None if one of that id exists (created meanwhile)."""
        container = await self._container()
        self.counters.writes += 1
        with _translated(document["id"]):
            try:
                return await container.create_item(body=document)
            except CosmosHttpResponseError as error:
                if error.status_code == 409:
                    return None
                raise

    async def _replace(self, document: dict[str, Any]) -> dict[str, Any] | None:
        """The replaced document, or None if it changed (412) or vanished (404) since it was read."""
        container = await self._container()
        self.counters.writes += 1
        body = {k: v for k, v in document.items() if not k.startswith("_")}
        with _translated(document["id"]):
            try:
                return await container.replace_item(
                    item=document["id"],
                    body=body,
                    etag=document["_etag"],
                    match_condition=MatchConditions.IfNotModified,
                )
            except CosmosHttpResponseError as error:
                if error.status_code in (404, 412):
                    return None
                raise

    async def _patch_or_create(
        self, doc_id: str, fields: dict[str, Any], new_document: Callable[[], dict[str, Any]]
    ) -> None:
        """Set `fields` on the document (atomically, keeping the rest), creating it if missing."""
        container = await self._container()
        operations = [{"op": "set", "path": f"/{name}", "value": value} for name, value in fields.items()]
        for _ in range(_MAX_RACES):
            self.counters.writes += 1
            with _translated(doc_id):
                try:
                    await container.patch_item(item=doc_id, partition_key=doc_id, patch_operations=operations)
                    return
                except CosmosResourceNotFoundError:
                    pass
            if await self._create(new_document()) is not None:
                return
        raise ReferencesUnavailable(f"{doc_id}: created and deleted under every write")


@contextmanager
def _translated(what: str) -> Iterator[None]:
    """Cosmos DB's transient failures as ReferencesUnavailable; anything else as it is. A user's
    document is not named (its id holds the user id, which logs must not)."""
    if what.startswith(USER_PREFIX):
        what = "a user's document"
    try:
        yield
    except CosmosHttpResponseError as error:
        if error.status_code in TRANSIENT_STATUSES:
            raise ReferencesUnavailable(f"{what}: HTTP {error.status_code}") from error
        raise
    except (ServiceRequestError, ServiceResponseError) as error:
        raise ReferencesUnavailable(f"{what}: {error}") from error
