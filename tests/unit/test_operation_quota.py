"""The per-user quota on long operations: at once and per hour, 0 meaning no limit."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import pytest
from botbuilder.core import MemoryStorage, TurnContext, UserState
from botbuilder.core.adapters import TestAdapter
from botbuilder.schema import Activity, ChannelAccount, ConversationAccount

from bot_logic.operation_quota import QUOTA_PROPERTY, OperationQuota, load_usage, new_usage, record_start

RUNNING_LIMIT = (
    "You already have 2 operations running, the most one person may run at once. "
    "Wait for one of them to finish (or cancel it), then ask again."
)


class Conversations:
    """Stored conversation states by key, as the quota reads them; a key in `unreadable` fails."""

    def __init__(self) -> None:
        self.states: dict[str, dict[str, Any]] = {}
        self.unreadable: set[str] = set()
        self.reads: list[str] = []

    def waiting_for(self, key: str, operation_id: str | None) -> None:
        pending = {"id": operation_id} if operation_id else None
        self.states[key] = {"ConversationRecord": {"pendingOperation": pending}}

    async def read(self, key: str) -> Mapping[str, Any] | None:
        self.reads.append(key)
        if key in self.unreadable:
            raise ConnectionError("storage unavailable")
        return self.states.get(key)


async def test_no_limits_never_refuse() -> None:
    usage = new_usage()
    for n in range(50):
        record_start(usage, f"op-{n}", deadline=1000.0, now=float(n), conversation=f"c-{n}")
    assert await OperationQuota(0, 0).refusal(usage, 60.0) is None


async def test_running_operations_count_while_their_conversations_wait_for_them() -> None:
    conversations = Conversations()
    quota = OperationQuota(max_running=2, starts_per_hour=0, read_conversation=conversations.read)
    usage = new_usage()
    record_start(usage, "a", deadline=600.0, now=0.0, conversation="c-a")
    conversations.waiting_for("c-a", "a")
    assert await quota.refusal(usage, 1.0) is None
    assert conversations.reads == []  # below the limit: nothing read
    record_start(usage, "b", deadline=900.0, now=1.0, conversation="c-b")
    conversations.waiting_for("c-b", "b")
    assert await quota.refusal(usage, 2.0) == RUNNING_LIMIT
    conversations.waiting_for("c-a", None)  # "a" told its result (or was cancelled): its conversation waits no more
    assert await quota.refusal(usage, 3.0) is None
    record_start(usage, "c", deadline=700.0, now=3.0, conversation="c-a")
    conversations.waiting_for("c-a", "c")
    assert await quota.refusal(usage, 699.0) == RUNNING_LIMIT
    del conversations.states["c-b"]  # "b"'s conversation is gone (expired, removed by its TTL)
    assert await quota.refusal(usage, 699.0) is None


async def test_an_operation_past_its_deadline_stops_counting_without_a_read() -> None:
    conversations = Conversations()
    quota = OperationQuota(max_running=1, read_conversation=conversations.read)
    usage = new_usage()
    record_start(usage, "a", deadline=700.0, now=0.0, conversation="c-a")
    conversations.waiting_for("c-a", "a")  # its end was never seen
    assert await quota.refusal(usage, 699.0) is not None
    conversations.reads.clear()
    assert await quota.refusal(usage, 700.0) is None and conversations.reads == []


async def test_a_conversation_that_cannot_be_read_keeps_its_operation_counting(
    caplog: pytest.LogCaptureFixture,
) -> None:
    conversations = Conversations()
    quota = OperationQuota(max_running=1, read_conversation=conversations.read)
    usage = new_usage()
    record_start(usage, "a", deadline=600.0, now=0.0, conversation="c-a")
    conversations.unreadable.add("c-a")
    assert await quota.refusal(usage, 1.0) is not None
    # The operator learns which operation counts on and why (no user id, no conversation key).
    logged = [record.getMessage() for record in caplog.records]
    assert logged == ["operation a counts on: its conversation cannot be read now (storage unavailable)"]
    assert "c-a" not in caplog.text


async def test_without_a_reader_or_a_conversation_an_operation_counts_until_its_deadline() -> None:
    usage = {"running": {"old": 600.0}, "starts": []}  # stored before conversations were kept
    conversations = Conversations()
    assert await OperationQuota(1, read_conversation=conversations.read).refusal(usage, 1.0) is not None
    record_start(usage, "new", deadline=600.0, now=1.0, conversation="c-new")
    assert await OperationQuota(2).refusal(usage, 2.0) == RUNNING_LIMIT
    assert await OperationQuota(2).refusal(usage, 600.0) is None


async def test_starts_count_for_an_hour_and_the_wait_is_told() -> None:
    quota = OperationQuota(max_running=0, starts_per_hour=3)
    usage = new_usage()
    for at in (0.0, 600.0, 1200.0):
        record_start(usage, f"op-{at}", deadline=at + 60, now=at, conversation="c-1")
    refusal = await quota.refusal(usage, 1800.0)
    assert refusal == (
        "You have started 3 operations in the last hour, the most allowed. You can start the next one in 30 min."
    )
    assert await quota.refusal(usage, 3599.0) is not None
    assert await quota.refusal(usage, 3600.0) is None  # the first start is an hour old


async def test_the_wait_told_is_rounded_up_so_that_waiting_it_is_enough() -> None:
    quota = OperationQuota(max_running=0, starts_per_hour=1)
    usage = new_usage()
    record_start(usage, "a", deadline=60.0, now=0.0, conversation="c-1")
    told = await quota.refusal(usage, 1799.5)
    assert told is not None and told.endswith("You can start the next one in 30 min 1 s.")
    late = await quota.refusal(usage, 3599.5)  # half a second left
    assert late is not None and late.endswith("You can start the next one in 1 s.")
    assert await quota.refusal(usage, 1799.5 + 1801) is None  # waited what they were told: let through


@pytest.mark.parametrize(
    "damaged",
    [
        {"running": ["not", "a", "map"], "starts": "nope"},
        {"running": {"a": "soon", "b": {"deadline": None}, "c": {"conversation": "c-1"}}, "starts": None},
        {"running": None, "starts": 5},
        {"starts": {"not": "a list"}},
    ],
    ids=["wrong-containers", "deadlines-not-numbers", "not-containers", "running-missing"],
)
async def test_a_damaged_usage_record_counts_as_empty(damaged: dict[str, Any]) -> None:
    usage = copy.deepcopy(damaged)  # the parameter is shared by every run of the test in this process
    assert await OperationQuota(1, 1).refusal(usage, 10.0) is None
    record_start(usage, "a", deadline=20.0, now=10.0, conversation="c-1")
    assert await OperationQuota(1, 1).refusal(usage, 11.0) is not None


def turn_of(adapter: TestAdapter, user: str, conversation: str) -> TurnContext:
    return TurnContext(
        adapter,
        Activity(
            type="message",
            text="1",
            channel_id="test",
            conversation=ConversationAccount(id=conversation),
            from_property=ChannelAccount(id=user),
            recipient=ChannelAccount(id="bot"),
        ),
    )


async def test_a_users_running_operations_count_in_all_their_conversations_and_only_theirs() -> None:
    users = UserState(MemoryStorage())
    usage_of = users.create_property(QUOTA_PROPERTY)
    adapter = TestAdapter()
    quota = OperationQuota(max_running=1)

    first = turn_of(adapter, "u-1", "c-1")
    usage = await load_usage(usage_of, first)
    assert await quota.refusal(usage, 0.0) is None  # a new user: nothing counted yet
    record_start(usage, "a", deadline=600.0, now=0.0, conversation="test/conversations/c-1")
    await users.save_changes(first)

    another_conversation = turn_of(adapter, "u-1", "c-2")
    await users.load(another_conversation)
    assert await quota.refusal(await load_usage(usage_of, another_conversation), 1.0) is not None
    another_user = turn_of(adapter, "u-2", "c-3")
    await users.load(another_user)
    assert await quota.refusal(await load_usage(usage_of, another_user), 1.0) is None
