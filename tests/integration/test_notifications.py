"""Proactive notifications end to end on the emulators: references and subscriptions in the Cosmos
DB stand-in, the external-events queue in Azurite, proactive sends through the app's Bot Framework
adapter to a local Connector. Time is a fake clock: rate limits and Retry-After cost no waiting."""

from __future__ import annotations

import asyncio
import email.utils
import itertools
import json
import secrets
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bootstrap import Composition
from bot_logic.notification_rules import MAX_TRANSIENT_FAILURES, Notification, envelope_key, seal
from handlers.http_types import HttpRequestData
from handlers.notifications import (
    DEFERRED,
    DELIVERED,
    DROPPED,
    DUPLICATE,
    FANNED_OUT,
    OPTED_OUT,
    POISONED,
    NotifyDependencies,
    delivery_id,
    handle_notify_request,
)
from localdev.emulators import Azurite, CosmosStandIn
from services.notifications.conversation_references import (
    ConversationReferences,
    conversation_document_id,
    user_document_id,
)
from tests.support.app import composed_app
from tests.support.notifications import (
    EventsQueue,
    FakeTime,
    HostStopped,
    NotificationHost,
    RefusingConnector,
    StopAfter,
    notification_host,
    proactive_send,
    reference_of,
)

pytestmark = pytest.mark.emulators


@pytest.fixture
def time() -> FakeTime:
    return FakeTime()


@pytest.fixture
async def app(azurite: Azurite, cosmos: CosmosStandIn, time: FakeTime) -> AsyncIterator[Composition]:
    async with composed_app(azurite, cosmos, time, ExternalEventsQueueName=f"events-{secrets.token_hex(4)}") as app:
        yield app


@pytest.fixture
async def channel() -> AsyncIterator[RefusingConnector]:
    async with RefusingConnector() as connector:
        yield connector


@pytest.fixture
async def host(app: Composition, time: FakeTime) -> AsyncIterator[NotificationHost]:
    host = notification_host(app, time)
    yield host
    await host.close()


@pytest.fixture
async def queue(app: Composition) -> AsyncIterator[EventsQueue]:
    events = EventsQueue(app)
    yield events
    await events.close()


def notify(body: Any) -> HttpRequestData:
    return HttpRequestData("POST", {"content-type": "application/json"}, json.dumps(body).encode())


def notify_deps(host: NotificationHost) -> NotifyDependencies:
    return NotifyDependencies(references=host.references, events=host.events)


async def known_users(
    host: NotificationHost, channel: RefusingConnector, count: int, topic: str | None = None
) -> dict[str, str]:
    """`count` users who have talked to the bot (user id -> their conversation id), subscribed to `topic`."""
    users = {}
    for _ in range(count):
        user, conversation = f"user-{uuid.uuid4().hex[:8]}", f"conv-{uuid.uuid4().hex[:8]}"
        reference = reference_of(user, conversation, channel.service_url)
        await host.references.remember(reference)
        if topic:
            await host.references.subscribe(reference, topic)
        users[user] = conversation
    return users


def received(channel: RefusingConnector, users: dict[str, str]) -> dict[str, list[str]]:
    """What each user saw in their conversation."""
    return {user: channel.messages(conversation) for user, conversation in users.items()}


# --- references and subscriptions -----------------------------------------------------------------


async def test_the_latest_conversation_is_remembered_durably_and_repeats_cost_nothing(
    app: Composition, host: NotificationHost, channel: RefusingConnector, time: FakeTime
) -> None:
    user = "team/a\\b?c#d*e"  # every character Cosmos DB forbids in an id, and the escape character
    first, second = (reference_of(user, f"conv-{n}", channel.service_url) for n in (1, 2))
    await host.references.remember(first)
    assert (await host.references.user_reference(user))["conversation"]["id"] == "conv-1"

    counters = host.references.counters
    before = (counters.reads, counters.writes, counters.queries)
    for _ in range(5):  # the same conversation, turn after turn
        time.now += 10
        await host.references.remember({**first, "activityId": str(uuid.uuid4())})
    assert (counters.reads, counters.writes, counters.queries) == before  # not one Cosmos DB request

    await host.references.remember(second)
    another_process = ConversationReferences(app.cosmos.reference_container, app.settings.cosmos_time_to_live)
    latest = await another_process.user_reference(user)
    assert latest is not None and latest["conversation"]["id"] == "conv-2"
    assert "activityId" not in latest
    assert (await another_process.conversation_reference("conv-1"))["user"]["id"] == user
    assert await another_process.user_reference("someone else") is None
    assert await another_process.conversation_reference("conv-unknown") is None


async def test_the_documents_hold_what_the_brief_promises(
    app: Composition, host: NotificationHost, channel: RefusingConnector, time: FakeTime
) -> None:
    reference = reference_of("u-doc", "c-doc", channel.service_url)
    await host.references.remember(reference)
    await host.references.subscribe(reference, "pizza")
    container = await app.cosmos.reference_container()
    user_doc = await container.read_item(user_document_id("u-doc"), user_document_id("u-doc"))
    assert user_doc["userId"] == "u-doc" and user_doc["topics"] == ["pizza"] and user_doc["updatedAt"] == time.now
    assert "ttl" not in user_doc  # subscriptions do not expire
    conversation_id = conversation_document_id("c-doc")
    conversation_doc = await container.read_item(conversation_id, conversation_id)
    assert conversation_doc["ttl"] == app.settings.cosmos_time_to_live
    assert conversation_doc["delivered"] == [] and conversation_doc["reference"]["conversation"]["id"] == "c-doc"
    properties = await container.read()
    assert properties["defaultTtl"] == -1  # per-document time to live
    assert properties["indexingPolicy"]["includedPaths"] == [{"path": "/topics/[]/?"}]


async def test_subscribe_and_unsubscribe(host: NotificationHost, channel: RefusingConnector) -> None:
    reference = reference_of("ann", "conv-ann", channel.service_url)
    references = host.references
    assert await references.subscribe(reference, "pizza") == ["pizza"]  # never remembered before: fine
    assert await references.subscribe(reference, "pizza") == ["pizza"]
    await references.remember(reference)  # a later turn: the topics stay
    assert await references.subscribe(reference, "news") == ["pizza", "news"]
    other = reference_of("bob", "conv-bob", channel.service_url)
    await references.subscribe(other, "news")

    assert sorted([u async for u, _ in references.subscribers("news")]) == ["ann", "bob"]
    assert [r["conversation"]["id"] async for _, r in references.subscribers("pizza")] == ["conv-ann"]
    assert await references.count_subscribers("news") == 2

    assert await references.stop_notifications(reference) == ["pizza", "news"]
    assert await references.stop_notifications(reference) == []
    never_seen = reference_of("never-seen", "conv-never", channel.service_url)
    assert await references.stop_notifications(never_seen) == []
    assert await references.direct_notices_off("never-seen")  # the choice is kept even for a new user
    assert [u async for u, _ in references.subscribers("pizza")] == []
    assert [u async for u, _ in references.subscribers("news")] == ["bob"]
    reach = await references.user_reach("ann")
    assert reach is not None and reach.direct_notices_off and reach.topics == []
    assert reach.reference["conversation"]["id"] == "conv-ann"
    assert await references.start_notifications(reference) is True
    assert await references.start_notifications(reference) is False
    assert not await references.direct_notices_off("ann")
    assert await references.start_notifications(reference_of("nobody", "c", channel.service_url)) is False


async def test_concurrent_subscriptions_are_all_kept(host: NotificationHost, channel: RefusingConnector) -> None:
    reference = reference_of("carol", "conv-carol", channel.service_url)
    await host.references.remember(reference)
    topics = [f"topic-{n}" for n in range(5)]
    await asyncio.gather(*(host.references.subscribe(reference, t) for t in topics))  # etag races
    found = await host.references.user_reach("carol")
    assert found is not None and sorted(found.topics) == topics


# --- POST /api/notify -------------------------------------------------------------------------------


async def test_a_notification_for_a_known_user_is_accepted_and_queued(
    host: NotificationHost, channel: RefusingConnector, queue: EventsQueue
) -> None:
    users = await known_users(host, channel, 1)
    [(user, conversation)] = users.items()
    response = await handle_notify_request(
        notify({"userId": user, "text": "Your pizza is ready", "id": "order-17"}), notify_deps(host)
    )
    assert (response.status, response.body) == (202, {"id": "order-17", "status": "accepted"})
    assert await queue.visible() == [{"id": "order-17", "userId": user, "text": "Your pizza is ready"}]

    response = await handle_notify_request(notify({"conversationId": conversation, "text": "Hi"}), notify_deps(host))
    assert response.status == 202 and response.body["status"] == "accepted" and response.body["id"]

    assert await queue.run(host) == [DELIVERED, DELIVERED]
    assert received(channel, users) == {user: ["Your pizza is ready", "Hi"]}


async def test_unknown_targets_are_404_with_a_reason(host: NotificationHost, queue: EventsQueue) -> None:
    response = await handle_notify_request(notify({"userId": "x", "text": "Hi"}), notify_deps(host))
    assert response.status == 404
    assert response.body["error"]["message"] == (
        "No conversation is known for user 'x': they have not talked to the bot yet."
    )
    response = await handle_notify_request(notify({"conversationId": "c-none", "text": "Hi"}), notify_deps(host))
    assert response.status == 404 and "c-none" in response.body["error"]["message"]
    assert await queue.count() == 0


async def test_a_topic_is_accepted_with_its_subscriber_count_even_when_nobody_follows_it(
    host: NotificationHost, channel: RefusingConnector, queue: EventsQueue
) -> None:
    await known_users(host, channel, 2, topic="pizza")
    response = await handle_notify_request(notify({"topic": " Pizza", "text": "Oven on"}), notify_deps(host))
    assert response.status == 202 and response.body["subscribers"] == 2
    response = await handle_notify_request(notify({"topic": "opera", "text": "Tonight"}), notify_deps(host))
    assert response.status == 202 and response.body["subscribers"] == 0
    assert [m["topic"] for m in await queue.visible()] == ["pizza", "opera"]


# --- the external-events queue ----------------------------------------------------------------------


async def test_a_topic_fans_out_to_each_subscriber_exactly_once(
    host: NotificationHost, channel: RefusingConnector, queue: EventsQueue
) -> None:
    subscribers = await known_users(host, channel, 6, topic="pizza")
    bystanders = await known_users(host, channel, 2, topic="news")
    response = await handle_notify_request(notify({"topic": "pizza", "text": "Pizza is ready"}), notify_deps(host))
    assert response.status == 202

    outcomes = await queue.run(host)
    assert outcomes == [FANNED_OUT] + [DELIVERED] * 6
    assert received(channel, subscribers) == {user: ["Pizza is ready"] for user in subscribers}
    assert received(channel, bystanders) == {user: [] for user in bystanders}
    assert await queue.count() == 0


async def test_a_user_who_stops_notifications_gets_none_of_a_fan_out_still_queued(
    host: NotificationHost, channel: RefusingConnector, queue: EventsQueue
) -> None:
    users = await known_users(host, channel, 2, topic="pizza")
    leaver, stayer = users
    await queue.put(json.dumps({"id": "n-stop", "topic": "pizza", "text": "Pizza is ready"}))
    [_] = await _take_one(queue, host)  # the fan-out ran; its deliveries wait on the queue
    leaver_reference = reference_of(leaver, users[leaver], channel.service_url)
    assert await host.references.stop_notifications(leaver_reference) == ["pizza"]  # "stop notifications"
    assert sorted(await queue.run(host)) == [DELIVERED, DROPPED]
    assert received(channel, users) == {leaver: [], stayer: ["Pizza is ready"]}


async def _take_one(queue: EventsQueue, host: NotificationHost) -> list[str]:
    """Run the queue's first message only (the rest stay)."""
    return await queue.run(host, max_messages=1, max_rounds=1, drained=False)


async def test_a_redelivered_message_is_sent_once(
    app: Composition, time: FakeTime, host: NotificationHost, channel: RefusingConnector, queue: EventsQueue
) -> None:
    users = await known_users(host, channel, 1)
    [user] = users
    body = json.dumps({"id": "n-1", "userId": user, "text": "Once"})
    await queue.put(body)
    await queue.put(body)  # the same message again (a caller's retry, a host's redelivery)
    assert await queue.run(host) == [DELIVERED, DUPLICATE]

    await queue.put(body)
    another_process = notification_host(app, time)
    try:
        assert await queue.run(another_process) == [DUPLICATE]  # it is recorded in Cosmos DB, not in memory
    finally:
        await another_process.close()
    assert received(channel, users) == {user: ["Once"]}


async def test_a_message_put_on_the_queue_without_an_id_takes_the_queue_message_id(
    host: NotificationHost, channel: RefusingConnector, queue: EventsQueue
) -> None:
    users = await known_users(host, channel, 1)
    [(user, conversation)] = users.items()
    await queue.put(json.dumps({"conversationId": conversation, "text": "From the shop system"}))
    assert await queue.run(host) == [DELIVERED]
    assert received(channel, users) == {user: ["From the shop system"]}


async def test_a_fan_out_stopped_midway_is_finished_by_the_next_host(
    app: Composition, time: FakeTime, channel: RefusingConnector, queue: EventsQueue
) -> None:
    stop = StopAfter(2)  # the host stops after queueing 2 of the 6 deliveries
    first = notification_host(app, time, events=stop.queue)
    first.deps.fan_out_concurrency = 2  # batches of 2: the stop comes as the second batch starts
    subscribers = await known_users(first, channel, 6, topic="pizza")
    await queue.put(json.dumps({"id": "oven-1", "topic": "pizza", "text": "Pizza is ready"}))
    with pytest.raises(HostStopped):
        await queue.run(first)
    await first.close()
    assert stop.calls == 2 and received(channel, subscribers) == {user: [] for user in subscribers}
    assert await queue.count() == 3  # the topic message (back when the host's lease lapses) and 2 deliveries

    second = notification_host(app, time)  # a fresh process: nothing in memory
    try:
        outcomes = await queue.run(second)
    finally:
        await second.close()
    # The topic message came back and queued all 6 again; the 2 queued before the stop are duplicates.
    assert sorted(outcomes) == sorted([FANNED_OUT] + [DELIVERED] * 6 + [DUPLICATE] * 2)
    assert received(channel, subscribers) == {user: ["Pizza is ready"] for user in subscribers}
    assert await queue.count() == 0


async def test_deliveries_stopped_midway_are_finished_by_the_next_host_each_user_once(
    app: Composition, time: FakeTime, channel: RefusingConnector, queue: EventsQueue
) -> None:
    stop = StopAfter(3)  # the host stops as it is about to send the 4th of 6
    first = notification_host(app, time)
    first.deps.send = stop.send(first.deps.send)
    subscribers = await known_users(first, channel, 6, topic="pizza")
    await queue.put(json.dumps({"id": "oven-2", "topic": "pizza", "text": "Pizza is ready"}))
    with pytest.raises(HostStopped):
        await queue.run(first)
    await first.close()
    assert sum(len(m) for m in received(channel, subscribers).values()) == 3

    # The stopped host's message reappears when the host's lease on it lapses (minutes): its claim
    # on the delivery has lapsed by then too.
    time.now += 600
    second = notification_host(app, time)
    try:
        outcomes = await queue.run(second)
    finally:
        await second.close()
    assert outcomes.count(DELIVERED) == 3
    assert received(channel, subscribers) == {user: ["Pizza is ready"] for user in subscribers}
    assert await queue.count() == 0


async def test_a_delivery_of_another_process_in_flight_is_deferred_not_doubled(
    host: NotificationHost, channel: RefusingConnector, queue: EventsQueue, time: FakeTime
) -> None:
    users = await known_users(host, channel, 1)
    [(user, conversation)] = users.items()
    claim = await host.references.claim_delivery(conversation, "n-busy", 120)  # another process is sending it
    assert claim.status == "claimed"
    await queue.put(json.dumps({"id": "n-busy", "userId": user, "text": "Busy"}))
    assert await queue.run(host) == [DEFERRED]
    assert received(channel, users) == {user: []}
    assert await queue.visible() == [] and await queue.count() == 1  # back on the queue, hidden for now


async def test_a_short_retry_after_pauses_sending_then_succeeds(
    host: NotificationHost, channel: RefusingConnector, queue: EventsQueue, time: FakeTime
) -> None:
    users = await known_users(host, channel, 1)
    [user] = users
    channel.refuse_next(1, 429, {"Retry-After": "3"})
    await queue.put(json.dumps({"id": "n-429", "userId": user, "text": "After a pause"}))
    start = time.now
    assert await queue.run(host) == [DELIVERED]
    assert len(channel.refused) == 1 and received(channel, users) == {user: ["After a pause"]}
    assert time.now - start >= 3.0  # the limiter waited the channel's Retry-After before sending again


async def test_a_retry_after_as_an_http_date_is_honoured(
    host: NotificationHost, channel: RefusingConnector, queue: EventsQueue, time: FakeTime
) -> None:
    users = await known_users(host, channel, 1)
    [user] = users
    channel.refuse_next(1, 429, {"Retry-After": email.utils.formatdate(time.now + 6, usegmt=True)})
    await queue.put(json.dumps({"id": "n-date", "userId": user, "text": "Later"}))
    start = time.now
    assert await queue.run(host) == [DELIVERED]
    assert 6.0 <= time.now - start < 7.0
    assert received(channel, users) == {user: ["Later"]}


async def test_a_long_retry_after_requeues_with_that_delay_and_holds_every_send(
    app: Composition, host: NotificationHost, channel: RefusingConnector, queue: EventsQueue, time: FakeTime
) -> None:
    users = await known_users(host, channel, 2)
    first, second = users
    channel.refuse_next(1, 429, {"Retry-After": "120"})
    await queue.put(json.dumps({"id": "n-long-1", "userId": first, "text": "One"}))
    await queue.put(json.dumps({"id": "n-long-2", "userId": second, "text": "Two"}))
    requeued: list[tuple[str, float | None]] = []
    original = host.events.send_raw

    async def recording_send_raw(text: str, visibility_timeout: float | None = None) -> None:
        requeued.append((text, visibility_timeout))
        await original(text, visibility_timeout)

    host.events.send_raw = recording_send_raw  # type: ignore[method-assign]
    assert await queue.run(host) == [DEFERRED, DEFERRED]
    assert len(channel.refused) == 1  # the second one did not even try: this process is paused
    assert received(channel, users) == {first: [], second: []}
    [(_, first_delay), (_, second_delay)] = requeued
    assert first_delay == 120.0 and second_delay is not None and 119.0 <= second_delay <= 120.0
    assert await queue.visible() == [] and await queue.count() == 2  # kept on the queue, hidden for the delay

    # Two minutes later they are visible again (Azurite hides them for real seconds: put them back by hand).
    time.now += 121
    await queue.clear()
    for text, _ in requeued:
        await queue.put(text)
    later = notification_host(app, time)
    try:
        assert await queue.run(later) == [DELIVERED, DELIVERED]
    finally:
        await later.close()
    assert received(channel, users) == {first: ["One"], second: ["Two"]}


async def test_the_configured_rate_is_respected(
    app: Composition, time: FakeTime, channel: RefusingConnector, queue: EventsQueue
) -> None:
    sent_at: list[float] = []
    send = proactive_send(app)

    async def timed_send(reference: dict[str, Any], text: str) -> None:
        sent_at.append(time.now)
        await send(reference, text)

    host = notification_host(app, time, send=timed_send, per_second=2.0)
    try:
        users = await known_users(host, channel, 5, topic="pizza")
        await queue.put(json.dumps({"id": "rate-1", "topic": "pizza", "text": "Slowly"}))
        assert (await queue.run(host)).count(DELIVERED) == 5
    finally:
        await host.close()
    assert sent_at[-1] - sent_at[0] >= (5 - 1) / 2.0
    assert all(b - a >= 0.5 - 1e-6 for a, b in itertools.pairwise(sent_at))
    assert received(channel, users) == {user: ["Slowly"] for user in users}


async def test_malformed_messages_go_to_the_poison_queue(host: NotificationHost, queue: EventsQueue) -> None:
    bodies = [
        "not json",
        json.dumps({"text": "no target"}),
        json.dumps({"userId": "u", "topic": "t", "text": "two targets"}),
        json.dumps({"userId": "u"}),
        json.dumps(["a", "list"]),
    ]
    for body in bodies:
        await queue.put(body)
    assert await queue.run(host) == [POISONED] * len(bodies)
    assert [b.decode() for b in host.poisoned] == bodies
    assert await queue.count() == 0


async def test_an_unknown_user_is_dropped_not_retried(host: NotificationHost, queue: EventsQueue) -> None:
    await queue.put(json.dumps({"userId": "nobody", "text": "Hello?"}))
    await queue.put(json.dumps({"conversationId": "nowhere", "text": "Hello?"}))
    assert await queue.run(host) == [DROPPED, DROPPED]
    assert await queue.count() == 0 and host.poisoned == []


async def test_a_channel_outage_backs_off_on_the_queue_and_a_refusal_is_poisoned(
    host: NotificationHost, channel: RefusingConnector, queue: EventsQueue
) -> None:
    users = await known_users(host, channel, 3)
    flaky, refused, hopeless = users
    channel.refuse_next(1, 500)
    await queue.put(json.dumps({"id": "n-flaky", "userId": flaky, "text": "Eventually"}))
    assert await queue.run(host) == [DEFERRED]  # queued again, hidden 5 s: the queue's retries are not spent
    assert await queue.count() == 1 and await queue.visible() == [] and host.poisoned == []
    await queue.clear()

    channel.refuse_next(3, 403)  # the channel will never take it: the queue's retries, then poison
    await queue.put(json.dumps({"id": "n-refused", "userId": refused, "text": "Never"}))
    assert await queue.run(host) == ["raised"] * 3
    assert len(queue.poisoned_by_host) == 1

    channel.refuse_next(3, 503)  # an outage outlasting every back-off: poisoned in the end too
    last_try = Notification("Never", "userId", hopeless, failures=MAX_TRANSIENT_FAILURES)
    await queue.put(json.dumps(seal(last_try, "n-hopeless", host.deps.envelope_key)))  # as the app re-queues it
    assert await queue.run(host) == ["raised"] * 3
    assert len(queue.poisoned_by_host) == 2
    assert received(channel, users)[refused] == received(channel, users)[hopeless] == []


def test_delivery_ids_are_stable_and_distinct() -> None:
    assert delivery_id("n", "a") == delivery_id("n", "a")
    assert len({delivery_id("n", "a"), delivery_id("n", "b"), delivery_id("m", "a")}) == 3


# --- what an outside system may not do ----------------------------------------------------------------


async def test_internal_fields_from_a_caller_are_refused_over_http_and_poisoned_from_the_queue(
    host: NotificationHost, channel: RefusingConnector, queue: EventsQueue, caplog: pytest.LogCaptureFixture
) -> None:
    users = await known_users(host, channel, 1, topic="pizza")
    [user] = users
    secret = "secret user text 4111"
    for extra in ({"failures": 16}, {"viaTopic": "x"}, {"failures": 16, "viaTopic": "pizza"}):
        body = {"userId": user, "text": secret, **extra}
        response = await handle_notify_request(notify(body), notify_deps(host))
        assert response.status == 400 and response.body["error"]["fields"] == list(extra)
    assert await queue.count() == 0

    forged_elsewhere = seal(Notification(secret, "userId", user, via_topic="x"), "n-f", envelope_key("other" * 8))
    tampered = seal(Notification(secret, "userId", user, via_topic="pizza"), "n-t", host.deps.envelope_key)
    tampered["envelope"] = tampered["envelope"].replace('"pizza"', '"x"')
    bodies = [
        json.dumps({"id": "n-1", "userId": user, "text": secret, "viaTopic": "x"}),
        json.dumps({"id": "n-2", "userId": user, "text": secret, "failures": 16}),
        json.dumps({"id": "n-3", "userId": user, "text": secret, "internal": {"failures": 16}}),
        json.dumps(forged_elsewhere),
        json.dumps(tampered),
    ]
    for body in bodies:
        await queue.put(body)
    with caplog.at_level("WARNING", logger="handlers.notifications"):
        assert await queue.run(host) == [POISONED] * len(bodies)
    assert [b.decode() for b in host.poisoned] == bodies
    assert received(channel, users) == {user: []}
    refusals = [r for r in caplog.records if "poison queue" in r.getMessage()]
    assert len(refusals) == len(bodies) and all(r.levelname == "WARNING" for r in refusals)
    assert "'viaTopic'" in refusals[0].getMessage() and "signature does not verify" in refusals[3].getMessage()
    assert not any(secret in r.getMessage() or user in r.getMessage() for r in caplog.records)


async def test_the_apps_own_sealed_delivery_is_delivered(
    host: NotificationHost, channel: RefusingConnector, queue: EventsQueue
) -> None:
    users = await known_users(host, channel, 1, topic="pizza")
    [user] = users
    delivery = Notification("Sealed", "userId", user, via_topic="pizza", failures=2)
    await queue.put(json.dumps(seal(delivery, delivery_id("n-s", user), host.deps.envelope_key)))
    assert await queue.run(host) == [DELIVERED]
    assert received(channel, users) == {user: ["Sealed"]}


async def test_a_user_who_stopped_notifications_gets_no_direct_notice_until_they_start_again(
    host: NotificationHost, channel: RefusingConnector, queue: EventsQueue
) -> None:
    users = await known_users(host, channel, 1, topic="pizza")
    [(user, conversation)] = users.items()
    reference = reference_of(user, conversation, channel.service_url)
    assert await host.references.stop_notifications(reference) == ["pizza"]

    for body in ({"userId": user, "text": "By user"}, {"conversationId": conversation, "text": "By conversation"}):
        response = await handle_notify_request(notify(body), notify_deps(host))
        assert response.status == 200
        assert (response.body["status"], response.body["reason"]) == ("not_delivered", "opted_out")
    assert await queue.count() == 0

    # Straight onto the queue (or accepted before the user said it): counted as not delivered.
    await queue.put(json.dumps({"id": "q-1", "userId": user, "text": "By user"}))
    await queue.put(json.dumps({"id": "q-2", "conversationId": conversation, "text": "By conversation"}))
    await queue.put(json.dumps({"id": "q-3", "topic": "pizza", "text": "By topic"}))
    assert await queue.run(host) == [OPTED_OUT, OPTED_OUT, FANNED_OUT]
    assert received(channel, users) == {user: []}

    assert await host.references.start_notifications(reference) is True
    response = await handle_notify_request(notify({"userId": user, "text": "Welcome back"}), notify_deps(host))
    assert response.status == 202
    await queue.put(json.dumps({"id": "q-4", "conversationId": conversation, "text": "Again"}))
    await queue.put(json.dumps({"id": "q-5", "topic": "pizza", "text": "Topics stay off"}))
    assert sorted(await queue.run(host)) == sorted([DELIVERED, DELIVERED, FANNED_OUT])
    assert received(channel, users) == {user: ["Welcome back", "Again"]}
