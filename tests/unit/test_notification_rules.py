"""Notifications' rules as plain functions: which fields a caller may send, their types and lengths,
the app's sealed envelope (what a queue writer without the key cannot forge), what a topic is, and
whether and when a delivery goes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from bot_logic.notification_rules import (
    MAX_DELIVERY_ID_LENGTH,
    MAX_FAILURE_BACKOFF_SECONDS,
    MAX_NAMED_FIELDS,
    MAX_TEXT_LENGTH,
    MAX_TOPIC_LENGTH,
    MAX_TRANSIENT_FAILURES,
    TOPIC,
    USER,
    InvalidNotification,
    InvalidTopic,
    Notification,
    after_failed_send,
    caller_notification,
    delivery_id,
    envelope_key,
    in_flight_delay,
    normalise_topic,
    open_envelope,
    queue_message,
    refusal_for_user,
    seal,
    topic_delivery,
    waits_on_queue,
)
from bot_logic.operation_protocol import sign

SIGNING_KEY = "s" * 32
KEY = envelope_key(SIGNING_KEY)


def refused(data: Any) -> InvalidNotification:
    with pytest.raises(InvalidNotification) as caught:
        caller_notification(data)
    return caught.value


def test_a_caller_sends_text_one_target_and_an_optional_id() -> None:
    assert caller_notification({"userId": "u", "text": "Hi"}) == Notification("Hi", "userId", "u")
    assert caller_notification({"topic": " Pizza ", "text": "Hi", "id": "n-1"}) == Notification(
        "Hi", "topic", "pizza", "n-1"
    )


@pytest.mark.parametrize("name", ["failures", "viaTopic"])
def test_internal_fields_are_refused_from_a_caller_and_named(name: str) -> None:
    problem = refused({"userId": "u", "text": "Hi", name: 1})
    assert problem.fields == (name,)
    assert "kept for the app's own bookkeeping" in str(problem)


def test_every_unknown_field_is_named_and_the_list_is_bounded() -> None:
    assert refused({"userId": "u", "text": "Hi", "a": 1, "b": 2}).fields == ("a", "b")
    many = {"userId": "u", "text": "Hi", **{f"f{n}": n for n in range(1000)}}
    problem = refused(many)
    assert len(problem.fields) == MAX_NAMED_FIELDS and "and 990 more" in str(problem)
    long_name = refused({"userId": "u", "text": "Hi", "x" * 5000: 1})
    assert len(str(long_name)) < 400  # an attacker's field name is not echoed whole


def test_the_envelope_fields_are_unknown_to_a_caller() -> None:
    assert refused({"userId": "u", "text": "Hi", "envelope": "{}"}).fields == ("envelope",)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"userId": "u"}, "text"),
        ({"userId": 5, "text": "Hi"}, "userId"),
        ({"userId": "u", "text": "x" * (MAX_TEXT_LENGTH + 1)}, "text"),
        ({"userId": "u", "text": "Hi", "id": "i" * 129}, "id"),
        ({"userId": "u", "text": "Hi", "id": "n/u-abc"}, "id"),  # the shape of a topic delivery's id
        ({"topic": "t" * 101, "text": "Hi"}, "topic"),
    ],
)
def test_types_and_lengths(data: dict[str, Any], field: str) -> None:
    assert field in refused(data).fields


def test_a_refusal_never_holds_the_users_text() -> None:
    secret = "my card number is 4111"
    for data in (
        {"userId": "u", "text": secret * 400},
        {"userId": "u", "text": secret, "viaTopic": secret},
        {"userId": secret, "conversationId": secret, "text": secret},
    ):
        assert secret not in str(refused(data))


# --- the sealed envelope ---------------------------------------------------------------------------


def sealed(notification: Notification, notification_id: str = "n-1", key: bytes = KEY) -> bytes:
    return json.dumps(seal(notification, notification_id, key), ensure_ascii=False).encode()


def test_the_apps_bookkeeping_round_trips_in_the_envelope() -> None:
    delivery = Notification("Pizza!", "userId", "u", via_topic="pizza", failures=3)
    parsed = queue_message(json.loads(sealed(delivery, delivery_id("n-1", "u"))), KEY)
    assert parsed.sealed
    assert parsed.notification == Notification("Pizza!", "userId", "u", delivery_id("n-1", "u"), "pizza", 3)


def test_a_plain_message_is_a_callers() -> None:
    parsed = queue_message({"conversationId": "c", "text": "Hi"}, KEY)
    assert not parsed.sealed and parsed.notification == Notification("Hi", "conversationId", "c")


def test_an_envelope_sealed_with_another_key_is_refused() -> None:
    forged = sealed(Notification("x", "userId", "u", failures=MAX_TRANSIENT_FAILURES), key=envelope_key("t" * 32))
    with pytest.raises(InvalidNotification, match="signature does not verify"):
        queue_message(json.loads(forged), KEY)


def test_a_tampered_envelope_is_refused() -> None:
    message = seal(Notification("x", "userId", "u", via_topic="pizza"), "n-1", KEY)
    message["envelope"] = message["envelope"].replace('"pizza"', '"opera"')
    with pytest.raises(InvalidNotification, match="signature does not verify"):
        open_envelope(message, KEY)


def test_a_signature_made_for_an_operation_result_does_not_pass_as_an_envelope() -> None:
    """Domain separation: the envelope key is derived from OperationSigningKey, never the key itself."""
    text = json.dumps({"internal": {"failures": 16}, "notification": {"id": "n", "userId": "u", "text": "x"}})
    signed_as_result = sign(json.loads(text), SIGNING_KEY)
    with pytest.raises(InvalidNotification, match="signature does not verify"):
        open_envelope({"envelope": signed_as_result["payload"], "signature": signed_as_result["signature"]}, KEY)
    assert envelope_key(SIGNING_KEY) != SIGNING_KEY.encode()


@pytest.mark.parametrize(
    ("internal", "caller", "problem"),
    [
        ({"colour": 1}, {"id": "n", "userId": "u", "text": "x"}, "unknown internal field 'colour'"),
        ({"failures": 17}, {"id": "n", "userId": "u", "text": "x"}, "'failures' must be a whole number"),
        ({"failures": True}, {"id": "n", "userId": "u", "text": "x"}, "'failures' must be a whole number"),
        ({"viaTopic": "p"}, {"id": "n", "topic": "t", "text": "x"}, "'viaTopic' goes only with 'userId'"),
        ({}, {"userId": "u", "text": "x"}, "has no 'id'"),
        ({}, {"id": "i" * (MAX_DELIVERY_ID_LENGTH + 1), "userId": "u", "text": "x"}, "'id' is"),
        ({}, {"id": "n", "userId": "u", "text": "x", "more": 1}, "unknown field 'more'"),
    ],
)
def test_even_a_signed_envelope_is_held_to_the_schema(
    internal: dict[str, Any], caller: dict[str, Any], problem: str
) -> None:
    text = json.dumps({"internal": internal, "notification": caller})
    signature = hmac.new(KEY, text.encode(), hashlib.sha256).hexdigest()
    with pytest.raises(InvalidNotification, match=problem):
        open_envelope({"envelope": text, "signature": signature}, KEY)


def test_the_largest_sealed_delivery_fits_a_queue_message() -> None:
    """Escaped twice (the envelope is JSON inside JSON): the worst characters still fit 64 KB after base64."""
    for character in ("🍕", '"', "\\", "\x01"):
        delivery = Notification(character * MAX_TEXT_LENGTH, "userId", "u" * 1024, via_topic="t" * 100, failures=16)
        message = json.dumps(seal(delivery, delivery_id("i" * 128, "u" * 1024), KEY), ensure_ascii=False)
        assert len(base64.b64encode(message.encode())) < 64 * 1024, character


# --- topics ---------------------------------------------------------------------------------------


def test_a_topic_is_stripped_and_lower_case() -> None:
    assert normalise_topic("  Pizza ") == "pizza"
    assert normalise_topic("PIZZA") == normalise_topic("pizza")
    assert normalise_topic("x" * MAX_TOPIC_LENGTH) == "x" * MAX_TOPIC_LENGTH


@pytest.mark.parametrize(
    ("topic", "why"),
    [
        ("   ", "a topic must not be empty"),
        ("x" * (MAX_TOPIC_LENGTH + 1), "a topic may be at most 100 characters long"),
        (7, "a topic must be text"),
    ],
)
def test_a_topic_that_is_empty_too_long_or_not_text_is_refused(topic: object, why: str) -> None:
    with pytest.raises(InvalidTopic) as refusal:
        normalise_topic(topic)
    assert str(refusal.value) == why  # the words the user reads in the chat


def test_a_notification_names_its_topic_normalised() -> None:
    assert caller_notification({"topic": " News ", "text": "Hi"}) == Notification("Hi", TOPIC, "news")


# --- delivery decisions ---------------------------------------------------------------------------


@dataclass
class Reach:
    topics: list[str] = field(default_factory=list)
    direct_notices_off: bool = False


def test_a_topic_delivery_goes_to_one_subscriber_while_they_follow_it() -> None:
    delivery = topic_delivery(Notification("Pizza!", TOPIC, "pizza"), "ann")
    assert delivery == Notification("Pizza!", USER, "ann", via_topic="pizza")
    assert refusal_for_user(delivery, Reach(topics=["pizza"])) is None
    assert refusal_for_user(delivery, Reach(topics=["news"])) == "no longer follows the topic"
    # Stopping direct notices does not stop a topic the user still follows (they chose it).
    assert refusal_for_user(delivery, Reach(topics=["pizza"], direct_notices_off=True)) is None


def test_a_direct_notice_goes_unless_the_user_turned_notifications_off() -> None:
    direct = Notification("Your pizza is ready.", USER, "ann")
    assert refusal_for_user(direct, Reach()) is None
    assert refusal_for_user(direct, Reach(direct_notices_off=True)) == "opted out"
    assert refusal_for_user(direct, None) == "unknown user"


def test_a_passing_failure_backs_off_doubling_up_to_fifteen_minutes() -> None:
    delays = [after_failed_send(Notification("x", USER, "u", failures=n), permanent=False).delay for n in range(10)]
    assert delays[:4] == [5.0, 10.0, 20.0, 40.0]
    assert max(delays) == MAX_FAILURE_BACKOFF_SECONDS == delays[-1]
    later = after_failed_send(Notification("x", USER, "u", failures=2), permanent=False).notification
    assert later == Notification("x", USER, "u", failures=3)


def test_a_permanent_failure_or_one_passing_failure_too_many_gives_up() -> None:
    assert after_failed_send(Notification("x", USER, "u"), permanent=True).notification is None
    hopeless = Notification("x", USER, "u", failures=MAX_TRANSIENT_FAILURES)
    assert after_failed_send(hopeless, permanent=False).notification is None
    assert after_failed_send(replace(hopeless, failures=MAX_TRANSIENT_FAILURES - 1), False).notification is not None


def test_a_429_is_waited_out_in_process_only_when_short_and_not_the_last_attempt() -> None:
    assert not waits_on_queue(retry_after=2.0, attempt=1, max_attempts=3, max_in_process_wait=10.0)
    assert waits_on_queue(retry_after=11.0, attempt=1, max_attempts=3, max_in_process_wait=10.0)
    assert waits_on_queue(retry_after=2.0, attempt=3, max_attempts=3, max_in_process_wait=10.0)
    # "Up to" the limit is waited out in process.
    assert not waits_on_queue(retry_after=10.0, attempt=1, max_attempts=3, max_in_process_wait=10.0)


def test_another_senders_claim_is_waited_out_with_a_second_to_spare() -> None:
    assert in_flight_delay(busy_until=130.0, now=100.0) == 31.0
    assert in_flight_delay(busy_until=None, now=100.0) < 0  # no lease: the defer's own minimum applies


# --- what a refusal says ---------------------------------------------------------------------------

ACCEPTED = "only 'id', 'text' and one of 'userId', 'conversationId', 'topic' are accepted"


@pytest.mark.parametrize(
    ("data", "message", "fields"),
    [
        ([1], "the body must be a JSON object", ()),
        (
            {"text": "Hi"},
            "name exactly one target: 'userId', 'conversationId' or 'topic'",
            ("userId", "conversationId", "topic"),
        ),
        (
            {"userId": "u", "topic": "t", "text": "Hi"},
            "name exactly one target, not 'userId' and 'topic'",
            ("userId", "topic"),
        ),
        ({"userId": "u"}, "'text' is required: the message to send", ("text",)),
        ({"userId": "u", "text": " \n "}, "'text' must not be empty", ("text",)),
        ({"userId": "u", "text": "a\ud800"}, "'text' holds an unpaired surrogate (\\ud800-\\udfff)", ("text",)),
        (
            {"userId": "u", "text": "Hi", "failures": 1, "viaTopic": "t"},
            "unknown fields 'failures', 'viaTopic' ('failures', 'viaTopic': kept for the app's own bookkeeping, "
            f"never set by a caller); {ACCEPTED}",
            ("failures", "viaTopic"),
        ),
        ({"userId": "u", "text": "Hi", "colour": 1}, f"unknown field 'colour'; {ACCEPTED}", ("colour",)),
    ],
)
def test_a_callers_mistake_is_named_in_the_refusal(data: Any, message: str, fields: tuple[str, ...]) -> None:
    """The message and the fields are what POST /api/notify's 400 tells the caller."""
    problem = refused(data)
    assert (str(problem), problem.fields) == (message, fields)


def test_exactly_as_many_unknown_fields_as_are_named_adds_no_and_more() -> None:
    problem = refused({"userId": "u", "text": "Hi", **{f"f{n}": n for n in range(MAX_NAMED_FIELDS)}})
    assert len(problem.fields) == MAX_NAMED_FIELDS and "more" not in str(problem)


def test_a_long_field_name_is_cut_with_an_ellipsis_and_a_lone_surrogate_is_shown_escaped() -> None:
    assert refused({"userId": "u", "text": "Hi", "x" * 41: 1}).fields == ("x" * 40 + "…",)
    assert refused({"userId": "u", "text": "Hi", "x" * 40: 1}).fields == ("x" * 40,)
    # A field name JSON can carry but UTF-8 cannot: refused with a 400 naming it, not a 500.
    assert refused({"userId": "u", "text": "Hi", "a\ud800": 1}).fields == ("a\\ud800",)


def signed(content: Any) -> dict[str, str]:
    """An envelope signed with the app's key around `content` (JSON text as given, or dumped)."""
    text = content if isinstance(content, str) else json.dumps(content)
    return {"envelope": text, "signature": hmac.new(KEY, text.encode(), hashlib.sha256).hexdigest()}


CALLER = {"id": "n", "userId": "u", "text": "x"}


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (
            {"envelope": "{}", "signature": "s", "x": 1, "y": 2},
            "an envelope holds only 'envelope' and 'signature', not 'x', 'y'",
        ),
        ({"envelope": 5, "signature": "s"}, "an envelope's 'envelope' and 'signature' must be strings"),
        ({"envelope": "{}", "signature": 5}, "an envelope's 'envelope' and 'signature' must be strings"),
        ({"envelope": "{\ud800}", "signature": "s"}, "the envelope holds an unpaired surrogate"),
        ({"envelope": "{}", "signature": "\ud800"}, "the envelope's signature does not verify: not sealed by this app"),
        (signed({"notification": CALLER}), "the envelope must hold exactly 'internal' and 'notification'"),
        (signed([]), "the envelope must hold exactly 'internal' and 'notification'"),
        (
            signed({"internal": [], "notification": CALLER}),
            "the envelope's 'internal' and 'notification' must be objects",
        ),
        (signed({"internal": {}, "notification": []}), "the envelope's 'internal' and 'notification' must be objects"),
        (
            signed({"internal": {}, "notification": {"userId": "u", "text": "x"}}),
            "the envelope's notification has no 'id'",
        ),
        (signed({"internal": {"a": 1}, "notification": CALLER}), "unknown internal field 'a'"),
        (signed({"internal": {"a": 1, "b": 2}, "notification": CALLER}), "unknown internal fields 'a', 'b'"),
        (
            signed({"internal": {"viaTopic": "p"}, "notification": {"id": "n", "topic": "t", "text": "x"}}),
            "'viaTopic' goes only with 'userId'",
        ),
        (
            signed({"internal": {"viaTopic": "p" * 101}, "notification": CALLER}),
            "'viaTopic': a topic may be at most 100 characters long",
        ),
        (
            signed({"internal": {"failures": 17}, "notification": CALLER}),
            "'failures' must be a whole number from 0 to 16",
        ),
    ],
)
def test_a_refused_envelope_says_why(data: dict[str, Any], reason: str) -> None:
    """The reason is what the poison queue's log line tells an operator; a malformed envelope is refused
    (poisoned once), never an exception the queue would retry."""
    with pytest.raises(InvalidNotification) as refusal:
        open_envelope(data, KEY)
    assert str(refusal.value) == reason


def test_an_envelope_that_is_not_json_says_so() -> None:
    with pytest.raises(InvalidNotification) as refusal:
        open_envelope(signed("not json"), KEY)
    assert str(refusal.value).startswith("the envelope is not valid JSON: Expecting value")


@pytest.mark.parametrize(
    "queued",
    [
        Notification("Pizza!", USER, "u", via_topic="pizza"),  # a topic's fresh delivery: no failures yet
        Notification("Your pizza is ready.", USER, "u", failures=1),  # a direct notice deferred after a failure
        Notification("x", USER, "u", failures=MAX_TRANSIENT_FAILURES),  # the last try before giving up
    ],
)
def test_what_the_app_queues_opens_to_what_it_sealed(queued: Notification) -> None:
    opened = open_envelope(seal(queued, "n-1", KEY), KEY)
    assert opened == replace(queued, id="n-1")


def test_a_deferred_direct_notice_is_still_sent_to_a_user_who_follows_no_topic() -> None:
    opened = open_envelope(seal(Notification("Your pizza is ready.", USER, "ann", failures=1), "n-1", KEY), KEY)
    assert refusal_for_user(opened, Reach()) is None


# Made by this version and kept literally: a delivery still on the queue across an upgrade (a deferred one
# waits up to 15 min, a queue message lives for days) must open after it, and keep its id.
QUEUED_BEFORE_AN_UPGRADE = {
    "envelope": '{"internal":{"viaTopic":"pizza","failures":2},'
    '"notification":{"id":"n-1/u-49915e0d7d4b402e3017d010","userId":"ann","text":"Pizza!"}}',
    "signature": "83f7087a0e331f3bac4305448839be60cdba84260c915fde37aa5da6c5de3ac7",
}


def test_a_delivery_queued_by_this_version_opens_after_an_upgrade_with_the_same_id() -> None:
    delivery = Notification("Pizza!", USER, "ann", via_topic="pizza", failures=2)
    assert delivery_id("n-1", "ann") == "n-1/u-49915e0d7d4b402e3017d010"
    assert seal(delivery, delivery_id("n-1", "ann"), envelope_key(SIGNING_KEY)) == QUEUED_BEFORE_AN_UPGRADE
    assert open_envelope(QUEUED_BEFORE_AN_UPGRADE, envelope_key(SIGNING_KEY)) == replace(
        delivery, id="n-1/u-49915e0d7d4b402e3017d010"
    )


def test_each_subscriber_gets_a_delivery_id_of_their_own() -> None:
    """One id for two users would make the second delivery a duplicate of the first: never sent."""
    assert delivery_id("n-1", "ann") != delivery_id("n-1", "bob")
    assert delivery_id("n-1", "ann") == delivery_id("n-1", "ann")
