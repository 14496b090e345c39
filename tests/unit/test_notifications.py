"""Proactive notifications without emulators: what POST /api/notify answers, the rate limiter on a
fake clock, how a channel's 429 is read, document ids, and remember() when Cosmos DB fails."""

from __future__ import annotations

import asyncio
import base64
import email.utils
import itertools
import json
import logging
from typing import Any

import pytest
import requests
from azure.core.exceptions import ServiceRequestError
from azure.cosmos.exceptions import CosmosHttpResponseError
from botbuilder.schema import ErrorResponseException
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from msrest.serialization import Deserializer

from bot_logic.notification_rules import Notification, envelope_key, seal
from handlers.http_types import HttpRequestData
from handlers.notifications import (
    MAX_BODY_BYTES,
    POISONED,
    ExternalEventDependencies,
    NotifyDependencies,
    handle_external_event,
    handle_notify_request,
)
from handlers.queue_types import QueueMessageData
from services.channel.channel_errors import DEFAULT_RETRY_AFTER_SECONDS, MAX_RETRY_AFTER_SECONDS, retry_after_of
from services.channel.rate_limiter import RateLimiter
from services.notifications.conversation_references import ConversationReferences, UserReach, escape_id
from tests.support.notifications import FakeTime

REFERENCE = {
    "channelId": "directline",
    "serviceUrl": "http://127.0.0.1:1/",
    "conversation": {"id": "conv-1"},
    "user": {"id": "user-1", "name": "Ann"},
    "bot": {"id": "bot"},
}


class FakeTargets:
    """Known users and conversations, topic counts; or a store that is down. `opted_out`: user-1 said
    "stop notifications"."""

    def __init__(self, down: bool = False, opted_out: bool = False) -> None:
        self.down = down
        self.opted_out = opted_out
        self.lookups = 0

    async def _look(self) -> None:
        self.lookups += 1
        if self.down:
            raise ServiceRequestError("Cosmos DB unreachable")

    async def user_reach(self, user_id: str) -> UserReach | None:
        await self._look()
        return UserReach(REFERENCE, [], self.opted_out) if user_id == "user-1" else None

    async def conversation_reach(self, conversation_id: str) -> UserReach | None:
        await self._look()
        return UserReach(REFERENCE, [], self.opted_out) if conversation_id == "conv-1" else None

    async def count_subscribers(self, topic: str) -> int:
        await self._look()
        return {"pizza": 3}.get(topic, 0)


class FakeQueue:
    def __init__(self, down: bool = False) -> None:
        self.down = down
        self.messages: list[tuple[str, float | None]] = []

    async def send_raw(self, text: str, visibility_timeout: float | None = None) -> None:
        if self.down:
            raise ServiceRequestError("queue unreachable: secret-internal-detail")
        self.messages.append((text, visibility_timeout))

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(text) for text, _ in self.messages]


def post(body: Any) -> HttpRequestData:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return HttpRequestData("POST", {"content-type": "application/json"}, raw)


async def notify(body: Any, targets: FakeTargets | None = None, queue: FakeQueue | None = None) -> Any:
    deps = NotifyDependencies(targets or FakeTargets(), queue or FakeQueue(), new_id=lambda: "generated-id")
    return await handle_notify_request(post(body), deps)


# --- POST /api/notify -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"{not json", "the body is not valid JSON"),
        (b"\xff\xfe{}", "the body is not valid JSON: it is not UTF-8 text"),
        (b"[1, 2]", "the body must be a JSON object"),
        (b"[" * 30000 + b"]" * 30000, "the body is not valid JSON: it nests deeper than 64 levels"),
        ({"text": "Hi"}, "name exactly one target: 'userId', 'conversationId' or 'topic'"),
        ({"userId": "user-1", "topic": "pizza", "text": "Hi"}, "name exactly one target, not 'userId' and 'topic'"),
        ({"userId": 17, "text": "Hi"}, "'userId' must be a string, not int"),
        ({"conversationId": "  ", "text": "Hi"}, "'conversationId' must not be empty"),
        ({"topic": "   ", "text": "Hi"}, "'topic' must not be empty"),
        ({"topic": "t" * 101, "text": "Hi"}, "'topic': a topic may be at most 100 characters long"),
        ({"userId": "u" * 1025, "text": "Hi"}, "'userId' is 1025 characters long; at most 1024 are allowed"),
        ({"userId": "user-1"}, "'text' is required"),
        ({"userId": "user-1", "text": None}, "'text' must be a string, not NoneType"),
        ({"userId": "user-1", "text": " \n "}, "'text' must not be empty"),
        ({"userId": "user-1", "text": "x" * 4001}, "'text' is 4001 characters long; at most 4000 are allowed"),
        ({"userId": "user-1", "text": "\ud800"}, "'text' holds an unpaired surrogate"),
        ({"userId": "user-1", "text": "Hi", "id": ""}, "'id' must not be empty"),
        ({"userId": "user-1", "text": "Hi", "id": 5}, "'id' must be a string, not int"),
        ({"userId": "user-1", "text": "Hi", "id": "i" * 129}, "'id' is 129 characters long; at most 128"),
        ({"userId": "user-1", "text": "Hi", "id": "n/u-0123"}, "'id' must not contain '/u-'"),
        ({"userId": "user-1", "text": "Hi", "viaTopic": "pizza"}, "unknown field 'viaTopic' ('viaTopic': kept for"),
        ({"userId": "user-1", "text": "Hi", "failures": 16}, "unknown field 'failures' ('failures': kept for"),
        ({"topic": "pizza", "text": "Hi", "unknown": "x", "extra": 1}, "unknown fields 'unknown', 'extra'; only"),
        ({"userId": "user-1", "text": "Hi", "signature": "00", "envelope": "{}"}, "unknown fields 'signature'"),
    ],
)
async def test_a_malformed_notification_is_400_naming_the_problem(body: Any, problem: str) -> None:
    targets, queue = FakeTargets(), FakeQueue()
    response = await notify(body, targets, queue)
    assert response.status == 400
    assert response.body["error"]["code"] == "InvalidNotification"
    assert problem in response.body["error"]["message"]
    assert targets.lookups == 0 and queue.messages == []


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
NOTIFICATION_LIKE = st.fixed_dictionaries(
    {},
    optional={
        "userId": st.sampled_from(["user-1", "x", "", 5]) | JSON_VALUES,
        "conversationId": st.sampled_from(["conv-1", "c"]) | JSON_VALUES,
        "topic": st.sampled_from(["pizza", " ", "t" * 101]) | JSON_VALUES,
        "text": st.text(max_size=50) | JSON_VALUES,
        "id": st.text(max_size=10) | JSON_VALUES,
        "viaTopic": st.text(max_size=10) | JSON_VALUES,
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=200) | JSON_VALUES.map(json.dumps) | NOTIFICATION_LIKE.map(json.dumps))
def test_any_body_gets_a_clear_answer(body: bytes | str) -> None:
    raw = body.encode() if isinstance(body, str) else body
    response = asyncio.run(notify(raw))
    assert response.status in (202, 400, 404)
    assert response.status == 202 or response.body["error"]["message"]


async def test_an_oversize_body_is_413() -> None:
    queue = FakeQueue()
    response = await notify(b"{" + b" " * MAX_BODY_BYTES + b"}", queue=queue)
    assert response.status == 413 and response.body["error"]["code"] == "PayloadTooLarge"
    assert f"at most {MAX_BODY_BYTES}" in response.body["error"]["message"]
    assert queue.messages == []


async def test_only_post_is_served() -> None:
    deps = NotifyDependencies(FakeTargets(), FakeQueue())
    response = await handle_notify_request(HttpRequestData("GET", {}, b""), deps)
    assert response.status == 405 and response.headers["Allow"] == "POST"


async def test_accepted_notifications_are_queued_with_their_id() -> None:
    queue = FakeQueue()
    response = await notify({"userId": "user-1", "text": "Pizza ready", "id": "order-1"}, queue=queue)
    assert (response.status, response.body) == (202, {"id": "order-1", "status": "accepted"})
    response = await notify({"conversationId": "conv-1", "text": "Hi"}, queue=queue)
    assert (response.status, response.body) == (202, {"id": "generated-id", "status": "accepted"})
    response = await notify({"topic": "  PIZZA ", "text": "Oven on"}, queue=queue)
    assert (response.status, response.body) == (202, {"id": "generated-id", "status": "accepted", "subscribers": 3})
    response = await notify({"topic": "opera", "text": "Tonight"}, queue=queue)
    assert response.status == 202 and response.body["subscribers"] == 0  # accepted: nobody follows it yet
    assert queue.bodies() == [
        {"id": "order-1", "userId": "user-1", "text": "Pizza ready"},
        {"id": "generated-id", "conversationId": "conv-1", "text": "Hi"},
        {"id": "generated-id", "topic": "pizza", "text": "Oven on"},
        {"id": "generated-id", "topic": "opera", "text": "Tonight"},
    ]
    assert [delay for _, delay in queue.messages] == [None] * 4


async def test_internal_and_unknown_fields_are_400_listing_each_one() -> None:
    queue = FakeQueue()
    body = {"userId": "user-1", "text": "Hi", "failures": 16, "viaTopic": "x", "colour": "red"}
    response = await notify(body, queue=queue)
    assert response.status == 400
    assert response.body["error"]["fields"] == ["failures", "viaTopic", "colour"]
    message = response.body["error"]["message"]
    assert "'failures', 'viaTopic'" in message and "never set by a caller" in message
    assert queue.messages == []


async def test_a_user_who_stopped_notifications_is_told_to_the_caller_and_nothing_is_queued() -> None:
    queue = FakeQueue()
    for body in (
        {"userId": "user-1", "text": "Hi", "id": "n-1"},
        {"conversationId": "conv-1", "text": "Hi", "id": "n-1"},
    ):
        response = await notify(body, FakeTargets(opted_out=True), queue)
        assert response.status == 200
        assert response.body["status"] == "not_delivered" and response.body["reason"] == "opted_out"
        assert response.body["id"] == "n-1" and "stop notifications" in response.body["message"]
    assert queue.messages == []


async def test_the_longest_text_fits_a_queue_message() -> None:
    queue = FakeQueue()
    response = await notify({"userId": "user-1", "text": "🍕" * 4000, "id": "i" * 128}, queue=queue)
    assert response.status == 202
    [(text, _)] = queue.messages
    assert len(base64.b64encode(text.encode())) < 64 * 1024  # Azure Storage's limit, after host.json's base64


async def test_unknown_targets_are_404_with_a_reason() -> None:
    queue = FakeQueue()
    response = await notify({"userId": "x", "text": "Hi"}, queue=queue)
    assert response.status == 404 and response.body["error"] == {
        "code": "UnknownUser",
        "message": "No conversation is known for user 'x': they have not talked to the bot yet.",
    }
    response = await notify({"conversationId": "c-9", "text": "Hi"}, queue=queue)
    assert response.status == 404 and response.body["error"]["code"] == "UnknownConversation"
    assert "'c-9'" in response.body["error"]["message"]
    assert queue.messages == []


async def test_an_unavailable_store_or_queue_is_503_in_plain_words() -> None:
    response = await notify({"userId": "user-1", "text": "Hi"}, targets=FakeTargets(down=True))
    assert response.status == 503 and response.body["error"]["code"] == "StoreUnavailable"
    assert "not accepted" in response.body["error"]["message"] and response.headers["Retry-After"]

    response = await notify({"topic": "pizza", "text": "Hi"}, queue=FakeQueue(down=True))
    assert response.status == 503 and response.body["error"]["code"] == "QueueUnavailable"
    assert "not accepted" in response.body["error"]["message"]
    assert "secret-internal-detail" not in json.dumps(response.body)  # no internals


# --- the queue handler's first step -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message_id"),
    [
        (b"\x00\x01", "m1"),
        (b'{"topic": "pizza"}', "m1"),
        (b'{"userId": "a", "conversationId": "b", "text": "x"}', "m1"),
        (b'{"userId": "a", "text": "x"}', ""),  # no id anywhere
        (b'{"userId": "a", "text": "x", "failures": 16}', "m1"),  # internal fields, set by a caller
        (b'{"userId": "a", "text": "x", "viaTopic": "x"}', "m1"),
        (json.dumps(seal(Notification("x", "userId", "a", via_topic="x"), "n1", envelope_key("forged" * 6))), "m1"),
    ],
)
async def test_a_malformed_queue_message_goes_to_the_poison_queue(body: bytes | str, message_id: str) -> None:
    body = body.encode() if isinstance(body, str) else body
    poisoned: list[bytes] = []

    async def send_to_poison(raw: bytes) -> None:
        poisoned.append(raw)

    async def never(*args: Any) -> None:
        raise AssertionError("nothing may be sent")

    deps = ExternalEventDependencies(
        references=None,  # type: ignore[arg-type]  # never reached
        events=FakeQueue(),
        send=never,
        send_to_poison=send_to_poison,
        limiter=RateLimiter(1.0),
        envelope_key=envelope_key("k" * 32),
    )
    assert await handle_external_event(QueueMessageData(message_id, body, 1), deps) == POISONED
    assert poisoned == [body]


# --- the rate limiter -------------------------------------------------------------------------------


def limiter(time: FakeTime, per_second: float) -> RateLimiter:
    return RateLimiter(per_second, clock=time, sleep=time.sleep)


async def test_sends_leave_at_the_configured_rate() -> None:
    time = FakeTime()  # a wall clock's large values: float rounding must not make it spin
    rate = limiter(time, 4.0)
    moments = []
    async with asyncio.timeout(5):
        for _ in range(9):
            await rate.acquire()
            moments.append(time.now)
    assert moments[0] == FakeTime().now  # the first goes at once
    assert moments[-1] - moments[0] >= (9 - 1) / 4.0 - 1e-6
    assert all(later - earlier >= 0.25 - 1e-6 for earlier, later in itertools.pairwise(moments))


async def test_concurrent_senders_share_the_rate() -> None:
    time = FakeTime()
    rate = limiter(time, 10.0)
    moments: list[float] = []

    async def send() -> None:
        await rate.acquire()
        moments.append(time.now)

    async with asyncio.timeout(5):
        await asyncio.gather(*(send() for _ in range(6)))
    assert moments[-1] - moments[0] >= 0.5 - 1e-6


async def test_a_pause_holds_every_send_until_it_ends() -> None:
    time = FakeTime()
    rate = limiter(time, 100.0)
    await rate.acquire()
    rate.pause(30)
    rate.pause(5)  # a shorter pause asked later does not shorten it
    assert rate.paused_for() == 30
    start = time.now
    moments: list[float] = []

    async def send() -> None:
        await rate.acquire()
        moments.append(time.now - start)

    async with asyncio.timeout(5):
        await asyncio.gather(send(), send(), send())
    assert min(moments) >= 30 and rate.paused_for() == 0


async def test_a_caller_may_refuse_to_wait_out_a_long_pause() -> None:
    time = FakeTime()
    rate = limiter(time, 100.0)
    rate.pause(60)
    start = time.now
    assert await rate.acquire(max_pause=10) is False
    assert time.now == start  # it did not wait
    time.now += 55
    assert await rate.acquire(max_pause=10) is True  # 5 s left: waited out
    assert time.now >= start + 60


def test_a_rate_must_be_positive() -> None:
    with pytest.raises(ValueError, match="per_second"):
        RateLimiter(0)


# --- reading a channel's 429 ------------------------------------------------------------------------


def connector_error(status: int, headers: dict[str, str] | None = None) -> ErrorResponseException:
    """The exception botframework-connector raises for a non-2xx answer, on a real requests.Response."""
    response = requests.Response()
    response.status_code = status
    response.reason = "Too Many Requests" if status == 429 else "Error"
    response.headers.update(headers or {})
    response._content = b"{}"
    return ErrorResponseException(Deserializer(), response)


NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"retry-after": "2.5"}, 2.5),
        ({"Retry-After": email.utils.formatdate(NOW + 30, usegmt=True)}, 30.0),
        ({"Retry-After": email.utils.formatdate(NOW - 30, usegmt=True)}, 0.0),
        ({"Retry-After": "-4"}, 0.0),
        ({"Retry-After": "99999999"}, MAX_RETRY_AFTER_SECONDS),
        ({"Retry-After": "soon"}, DEFAULT_RETRY_AFTER_SECONDS),
        ({}, DEFAULT_RETRY_AFTER_SECONDS),
    ],
)
def test_a_429_says_how_long_to_wait(headers: dict[str, str], seconds: float) -> None:
    assert retry_after_of(connector_error(429, headers), now=lambda: NOW) == pytest.approx(seconds)


def test_anything_but_a_connector_429_is_none() -> None:
    assert retry_after_of(connector_error(500, {"Retry-After": "7"})) is None
    assert retry_after_of(connector_error(403)) is None
    assert retry_after_of(ValueError("429 Too Many Requests")) is None
    assert retry_after_of(TimeoutError()) is None


def test_a_wrapped_429_is_found() -> None:
    try:
        try:
            raise connector_error(429, {"Retry-After": "3"})
        except ErrorResponseException as inner:
            raise RuntimeError("the adapter failed") from inner
    except RuntimeError as outer:
        assert retry_after_of(outer) == 3.0


# --- documents and remember() -----------------------------------------------------------------------


def test_any_user_id_makes_a_valid_distinct_cosmos_id() -> None:
    ids = ["a/b", "a*2fb", "a\\b?c#d", "tab\there", "x" * 1000, "x" * 999 + "y"]
    escaped = [escape_id(i) for i in ids]
    assert len(set(escaped)) == len(ids)
    for doc_id in escaped:
        assert not set("/\\?#") & set(doc_id) and len(doc_id) <= 255
        assert all(ord(ch) >= 0x20 for ch in doc_id)


class FlakyContainer:
    """Answers patches; the first `failures` calls fail as given."""

    def __init__(self, failures: list[Exception]) -> None:
        self.failures = failures
        self.patches: list[str] = []

    async def patch_item(self, item: str, partition_key: str, patch_operations: list[dict[str, Any]]) -> dict:
        if self.failures:
            raise self.failures.pop(0)
        self.patches.append(item)
        return {}


@pytest.mark.parametrize(
    "failure",
    [ServiceRequestError("connection refused"), CosmosHttpResponseError(status_code=403, message="Forbidden")],
)
async def test_remember_never_raises_and_the_next_turn_tries_again(failure: Exception) -> None:
    container = FlakyContainer([failure])

    async def get_container() -> Any:
        return container

    time = FakeTime()
    references = ConversationReferences(get_container, time_to_live=86400, clock=time)
    await references.remember(REFERENCE)  # Cosmos DB fails: logged, not raised
    assert container.patches == []
    await references.remember(REFERENCE)  # the next turn writes the user's and the conversation's document
    assert container.patches == ["user-user-1", "conversation-conv-1"]
    await references.remember({**REFERENCE, "activityId": "another turn"})
    assert len(container.patches) == 2  # cached: no request
    time.now += 3600  # after a while it is written again (another instance may have changed it)
    await references.remember(REFERENCE)
    assert len(container.patches) == 4


async def test_remember_gives_up_on_a_slow_cosmos_db_rather_than_hold_the_turn(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class HangingContainer(FlakyContainer):
        hanging = True

        async def patch_item(self, item: str, partition_key: str, patch_operations: list[dict[str, Any]]) -> dict:
            if self.hanging:
                await asyncio.Event().wait()  # the SDK retrying a throttled request, for ever
            return await super().patch_item(item, partition_key, patch_operations)

    container = HangingContainer([])

    async def get_container() -> Any:
        return container

    references = ConversationReferences(get_container, time_to_live=86400, remember_timeout=0.01)
    with caplog.at_level(logging.WARNING):
        async with asyncio.timeout(5):  # a hang here fails the test instead of holding the turn
            await references.remember(REFERENCE)
    assert container.patches == []
    assert caplog.records and all(record.levelno >= logging.WARNING for record in caplog.records)
    assert "user-1" not in caplog.text  # no user id in the log
    container.hanging = False
    await references.remember(REFERENCE)  # given up, not remembered as written: the next turn tries again
    assert container.patches == ["user-user-1", "conversation-conv-1"]


async def test_remember_ignores_what_is_not_a_reference() -> None:
    container = FlakyContainer([])

    async def get_container() -> Any:
        return container

    references = ConversationReferences(get_container, time_to_live=86400)
    await references.remember({"conversation": {"id": "c"}})  # no user
    await references.remember({"user": {"id": "u"}, "conversation": {"id": "c"}, "bad": object()})
    assert container.patches == []
