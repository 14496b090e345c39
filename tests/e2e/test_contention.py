"""Two instances of the app, as Azure scales out: many messages posted at once to one conversation
through the round-robin balancer are each answered exactly once, and the sweeper runs on one
instance at a time.

The channel id is `emulator`: botbuilder leaves replyToId out on directline and webchat, and the
Connector's reply route (POST .../activities/{replyToId}) is what ties each reply to its message.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import signal
import time
import uuid
from collections import Counter
from typing import Any

import aiohttp
import pytest

from bot_logic.handoff import OFFER_TEXT
from localdev.emulators import Azurite, CosmosStandIn
from localdev.processes import wait_until
from localdev.stack import LocalStack
from tests.support.activities import activity
from tests.support.connector import RecordingConnector
from tests.support.local_bot import running_bot

pytestmark = pytest.mark.emulators

MENU = "Which long operation shall I run, Ada?"
APOLOGY = "Sorry, I couldn't take in"
NOT_UNDERSTOOD = "Sorry, I didn't understand"
REPLY_KINDS = (MENU, NOT_UNDERSTOOD, OFFER_TEXT)


def emulator_activity(conversation: str, service_url: str, **fields: Any) -> dict[str, Any]:
    return activity(conversation, service_url, channelId="emulator", **fields)


def wordless_text() -> str:
    """A message the menu prompt cannot read as a choice (no digits, no number words, no operation
    names), so the bot stays at the menu and answers each one with it again."""
    return "hello " + "".join(random.choices("bcdfghjklmnpqrstvwxz", k=8))


async def post(session: aiohttp.ClientSession, bot: LocalStack, body: dict[str, Any]) -> int:
    async with session.post(bot.messages_url, json=body) as response:
        await response.read()
        return response.status


def count_in_outputs(bot: LocalStack, pattern: str) -> list[int]:
    return [len(re.findall(pattern, host.output)) for host in bot.hosts]


@pytest.fixture
async def two_instances(azurite: Azurite, cosmos: CosmosStandIn) -> Any:
    # start_stack blocks until both instances listen; keep the event loop (and the recorder) serving.
    bot = await asyncio.to_thread(running_bot, azurite, cosmos, instances=2)
    try:
        yield bot
    finally:
        await asyncio.to_thread(bot.stop)


@pytest.mark.parametrize("count", [16, 64])
async def test_messages_posted_at_once_are_each_answered_exactly_once(
    two_instances: LocalStack, connector: RecordingConnector, count: int
) -> None:
    bot = two_instances
    assert len(bot.hosts) == 2 and bot.balancer is not None
    conversation, url = f"c-{uuid.uuid4()}", connector.service_url
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        update = emulator_activity(
            conversation,
            url,
            type="conversationUpdate",
            membersAdded=[{"id": "bot"}, {"id": f"user-of-{conversation}"}],
        )
        assert await post(session, bot, update) == 200
        assert await post(session, bot, emulator_activity(conversation, url, text="Ada")) == 200
        assert connector.messages(conversation)[-1].startswith(MENU)  # the bot waits at its menu
        before = len(connector.activities)
        reruns_before = count_in_outputs(bot, r"lost a commit race")

        sent = [emulator_activity(conversation, url, text=wordless_text()) for _ in range(count)]
        started = time.perf_counter()
        statuses = await asyncio.gather(*(post(session, bot, message) for message in sent))
        elapsed = time.perf_counter() - started

    ids = {message["id"] for message in sent}

    def replies_now() -> list[dict[str, Any]]:
        return [
            reply
            for reply in connector.activities[before:]
            if reply.get("type") == "message" and reply["_conversation"] == conversation
        ]

    # Each turn sends its reply before its HTTP answer; wait anyway, so that a late one is named.
    with contextlib.suppress(TimeoutError):
        await connector.wait_for(lambda _: ids <= {reply["_reply_to"] for reply in replies_now()}, timeout=10)
    replies = replies_now()
    answered = Counter(reply["_reply_to"] for reply in replies)
    reruns = [now - then for now, then in zip(count_in_outputs(bot, r"lost a commit race"), reruns_before, strict=True)]
    apologies = [reply for reply in replies if reply.get("text", "").startswith(APOLOGY)]
    turns = count_in_outputs(bot, r"Executing 'Functions\.messages'")
    print(
        f"\n{count} messages at once through 2 instances: all answered in {elapsed:.2f} s; "
        f"HTTP statuses {dict(Counter(statuses))}; turns per instance (with the set-up) {turns}; "
        f"commit races lost and re-run per instance {reruns}; apologies {len(apologies)}"
    )
    assert not [status for status in statuses if status >= 500], Counter(statuses)
    assert {message_id: answered[message_id] for message_id in ids} == dict.fromkeys(ids, 1)
    assert set(answered) == ids  # no reply to anything else
    assert all(reply.get("replyToId") == reply["_reply_to"] for reply in replies)
    # Taken in, not just answered: not "please send it again", but each in turn, once: "didn't understand"
    # twice, then (three misunderstood in a row) the offer of a person, again for each later one.
    assert not apologies, [reply["text"] for reply in apologies]
    kinds = Counter(next((kind for kind in REPLY_KINDS if reply["text"].startswith(kind)), "?") for reply in replies)
    assert kinds == {NOT_UNDERSTOOD: 2, OFFER_TEXT: count - 2}, kinds
    assert all(turn > 0 for turn in turns), turns  # both instances took messages


SWEEPER_RUN = r"Executing 'Functions\.sweeper'"


async def test_the_sweeper_runs_on_one_instance_at_a_time_and_another_takes_over(
    azurite: Azurite, cosmos: CosmosStandIn
) -> None:
    bot = await asyncio.to_thread(
        running_bot,
        azurite,
        cosmos,
        instances=2,
        host_args=["--singleton-recovery-interval", "0.2"],
        SweepSchedule="*/1 * * * * *",
    )
    try:
        await asyncio.to_thread(wait_until, lambda: sum(count_in_outputs(bot, SWEEPER_RUN)) >= 3, 15, "three sweeps")
        # Meanwhile the other instance tried to take the sweeper about ten times a second.
        runs = count_in_outputs(bot, SWEEPER_RUN)
        assert sorted(runs)[0] == 0, runs
        holder, other = (bot.hosts[0], bot.hosts[1]) if runs[0] else (bot.hosts[1], bot.hosts[0])

        holder.signal(signal.SIGKILL)  # the instance dies; its lock goes with it
        await asyncio.to_thread(holder.wait)
        took_over = lambda: len(re.findall(SWEEPER_RUN, other.output)) >= 2  # noqa: E731
        await asyncio.to_thread(wait_until, took_over, 15, "the other instance's sweeps")
        assert "Singleton lock 'sweeper.Listener' acquired" in other.output
    finally:
        await asyncio.to_thread(bot.stop)
