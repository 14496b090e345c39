"""Faults on the way out: Azurite down when an operation is queued, Direct Line refusing or timing out
while the worker posts the result, the Connector failing the result reply. Durable effects wait in the
conversation's outbox and go out once, with the next turn or the sweeper."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable

import pytest

from handlers.sweeper import handle_sweep
from services.channel.directline_client import DirectLineClient
from tests.faults.conftest import Survived
from tests.faults.harness import (
    CONNECTOR_PATH,
    NOT_STARTED,
    QUICK_OPERATION,
    RESULT_POST_PATH,
    RESULT_PREFIX,
    STARTED_PREFIX,
    STILL_RUNNING,
    Rig,
)
from tests.support.fault_proxy import HANG_RESPONSE, RESET, THROTTLE, UNAVAILABLE

pytestmark = [pytest.mark.faults, pytest.mark.emulators]

# Past the first retry's backoff (at most 5 s), well before the conversation would expire (300 s).
PAST_FIRST_BACKOFF = 10.0


async def resend(rig: Rig, conversation: str, by: str) -> None:
    """Let the outbox try again: the user's next turn, or a sweeper run."""
    rig.clock.now += PAST_FIRST_BACKOFF
    if by == "next turn":
        assert await rig.say(conversation, "is it done?") == 200
    else:
        await handle_sweep(rig.app.sweeper)


@pytest.mark.parametrize("by", ["next turn", "sweeper"])
async def test_queue_down_when_an_operation_is_asked_for(
    rig: Rig, survived: Survived, lost: Callable[[], list[str]], by: str
) -> None:
    conversation = rig.new_conversation()
    await rig.open(conversation)
    since = len(rig.texts(conversation))
    rig.queue_proxy.inject(UNAVAILABLE)
    assert await rig.say(conversation, QUICK_OPERATION) == 200
    assert rig.seen(conversation, STARTED_PREFIX) == 1
    assert rig.seen(conversation, NOT_STARTED) == 1  # told once that it has not started yet
    assert await rig.queued() == 0
    [entry] = await rig.outbox(conversation)
    assert entry["kind"] == "operation" and entry["attempts"] == 1

    rig.queue_proxy.clear()  # Azurite is back
    await resend(rig, conversation, by)
    assert await rig.queued() == 1
    if by == "next turn":
        assert rig.seen(conversation, STILL_RUNNING) == 1
    else:
        assert await rig.outbox(conversation) == []  # the sweeper records its delivery at once
    await resend(rig, conversation, by)  # nothing left to send: still one request
    assert await rig.queued() == 1
    assert await rig.outbox(conversation) == []  # its delivery recorded (a turn's: by the next commit)

    assert await rig.run_worker() == "succeeded"
    survived(
        f"Azurite 503 when the operation is queued; sent by the {by}",
        rig.brief(conversation, since),
        rig.seen(conversation, RESULT_PREFIX),
    )
    assert rig.seen(conversation, NOT_STARTED) == 1
    assert rig.seen(conversation, RESULT_PREFIX) == 1
    assert await rig.queued() == 0
    assert lost() == []


@pytest.mark.parametrize(
    ("fault", "times", "retry_after"),
    [(THROTTLE, 2, 1.0), (UNAVAILABLE, 2, None), (RESET, 2, None), (HANG_RESPONSE, 1, None)],
    ids=["429", "503", "reset", "timeout-after-delivery"],
)
async def test_direct_line_faults_are_retried_by_the_worker(
    rig: Rig, survived: Survived, lost: Callable[[], list[str]], fault: str, times: int, retry_after: float | None
) -> None:
    conversation = await rig.start_operation()
    since = len(rig.texts(conversation)) - 1
    settings = rig.app.settings
    # The production client with a short timeout, so that a hung answer costs the test 2 s, not 30.
    client = DirectLineClient(settings.direct_line_endpoint, settings.direct_line_secret, timeout=2.0)
    deps = dataclasses.replace(rig.app.worker, directline=client, conversation=None)  # a conversation on `client`
    rig.directline_proxy.inject(
        fault, times, method="POST", path=RESULT_POST_PATH, retry_after=retry_after, hang_seconds=5.0
    )
    assert await rig.run_worker(deps) == "succeeded"

    posts = [s for s in rig.directline_proxy.seen if s.method == "POST" and s.path.endswith("/activities")]
    assert len(posts) == times + 1
    if retry_after is not None:  # Retry-After honoured: no retry sooner than the service asked
        assert all(b.at - a.at >= retry_after * 0.9 for a, b in itertools.pairwise(posts))
    if fault == HANG_RESPONSE:  # the bot took the result, then the answer was lost: it came twice
        assert len(rig.directline.delivered) == 2
    survived(
        f"Direct Line {fault} ×{times} on the worker's result post",
        rig.brief(conversation, since),
        rig.seen(conversation, RESULT_PREFIX),
    )
    assert rig.seen(conversation, RESULT_PREFIX) == 1
    assert await rig.outbox(conversation) == []
    assert lost() == []


async def test_direct_line_down_past_the_workers_retries_leaves_it_to_the_queue(
    rig: Rig, survived: Survived, lost: Callable[[], list[str]]
) -> None:
    conversation = await rig.start_operation()
    since = len(rig.texts(conversation)) - 1
    # All five attempts of the first delivery fail (Retry-After 0 keeps the test quick).
    rig.directline_proxy.inject(UNAVAILABLE, 5, method="POST", path=RESULT_POST_PATH, retry_after=0)
    assert await rig.run_worker() == "retry (DirectLineError)"
    assert rig.seen(conversation, RESULT_PREFIX) == 0
    assert await rig.run_worker() == "succeeded"  # the queue delivers the message again
    survived(
        "Direct Line 503 on all 5 attempts; the queue redelivers",
        rig.brief(conversation, since),
        rig.seen(conversation, RESULT_PREFIX),
    )
    assert rig.seen(conversation, RESULT_PREFIX) == 1
    assert await rig.queued() == 0
    assert await rig.outbox(conversation) == []
    assert lost() == []


@pytest.mark.parametrize("by", ["next turn", "sweeper"])
async def test_connector_failing_the_result_reply(
    rig: Rig, survived: Survived, lost: Callable[[], list[str]], by: str
) -> None:
    conversation = await rig.start_operation()
    since = len(rig.texts(conversation)) - 1
    rig.connector_proxy.inject(UNAVAILABLE, method="POST", path=CONNECTOR_PATH + conversation)
    assert await rig.run_worker() == "succeeded"  # the bot took the result in
    assert rig.seen(conversation, RESULT_PREFIX) == 0
    [entry] = await rig.outbox(conversation)
    assert entry["kind"] == "reply" and entry["payload"]["text"].startswith(RESULT_PREFIX)

    rig.connector_proxy.clear()
    await resend(rig, conversation, by)
    assert rig.seen(conversation, RESULT_PREFIX) == 1
    assert await rig.outbox(conversation) == []
    await resend(rig, conversation, by)  # and never again
    survived(
        f"Connector 503 on the result reply; delivered by the {by}",
        rig.brief(conversation, since),
        rig.seen(conversation, RESULT_PREFIX),
    )
    assert rig.seen(conversation, RESULT_PREFIX) == 1
    assert lost() == []
