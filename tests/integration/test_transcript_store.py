"""Transcripts in Azurite's table service: what is recorded can be read back, in order, by a fresh
process; odd conversation ids, redeliveries and long activities survive the trip; a failing table
service never reaches the turn; cleanup deletes only what is old and reads only what it deletes."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from urllib.parse import unquote

import pytest
from botbuilder.schema import Activity, Attachment, ChannelAccount, ConversationAccount

from localdev.emulators import Azurite
from localdev.processes import free_port
from services.transcripts.recorder import TranscriptRecorder
from services.transcripts.store import TRIMMED_MARKER, TableTranscriptStore, escape_key
from tests.support.fault_proxy import UNAVAILABLE, FaultProxy, Seen

pytestmark = pytest.mark.emulators

NOW = datetime(2027, 1, 15, 12, 0, tzinfo=UTC)
WEIRD_ID = "conv/1#2?3%41\\ü日本😀"


def message(
    text: str,
    *,
    conversation: str = "conversation-1",
    role: str = "user",
    activity_id: str | None = None,
    timestamp: datetime | None = None,
    channel: str = "directline",
) -> Activity:
    user = ChannelAccount(id="user-1", role="user")
    bot = ChannelAccount(id="bot", role="bot")
    return Activity(
        type="message",
        id=activity_id,
        text=text,
        timestamp=timestamp,
        channel_id=channel,
        conversation=ConversationAccount(id=conversation),
        from_property=bot if role == "bot" else user,
        recipient=user if role == "bot" else bot,
    )


def table_name() -> str:
    return "transcripts" + uuid.uuid4().hex[:12]  # a table of its own per test


def through(azurite: Azurite, port: int) -> str:
    """Azurite's connection string with its table service at another port (a proxy, or nothing)."""
    return azurite.connection_string.replace(f"127.0.0.1:{azurite.table_port}/", f"127.0.0.1:{port}/")


@pytest.fixture
async def table(azurite: Azurite) -> AsyncIterator[str]:
    yield table_name()


@pytest.fixture
async def proxy(azurite: Azurite) -> AsyncIterator[FaultProxy]:
    proxy = await FaultProxy(f"http://127.0.0.1:{azurite.table_port}/").start()
    yield proxy
    await proxy.stop()


async def texts(store: TableTranscriptStore, conversation_id: str) -> list[str]:
    return [activity.get("text", "") for activity in await store.conversation_activities(conversation_id)]


async def test_a_conversation_reads_back_in_order_after_a_restart(azurite: Azurite, table: str) -> None:
    recorder = TranscriptRecorder(TableTranscriptStore(azurite.connection_string, table))
    # One batch per turn, as the app records them: the inbound activity (stamped by the channel),
    # then the bot's replies (stamped by the recorder, after it).
    started = datetime.now(UTC) - timedelta(seconds=10)
    recorder.record(
        "conversation-1",
        [message("hello", activity_id="in-1", timestamp=started), message("Hi! What is your name?", role="bot")],
    )
    answered = datetime.now(UTC) + timedelta(seconds=1)  # the user's answer comes later
    second_turn = [
        message("Ada", activity_id="in-2", timestamp=answered),
        message("Nice to meet you, Ada.", role="bot"),
        message("Pick one:", role="bot"),
    ]
    recorder.record("conversation-1", second_turn)
    recorder.record("conversation-2", [message("another conversation", activity_id="x")])
    await recorder.close()
    assert (recorder.written, recorder.dropped) == (6, 0)

    fresh = TableTranscriptStore(azurite.connection_string, table, page_size=2)  # as after a restart
    try:
        expected = ["hello", "Hi! What is your name?", "Ada", "Nice to meet you, Ada.", "Pick one:"]
        assert await texts(fresh, "conversation-1") == expected
        # The SDK's interface: Activity objects, page by page.
        pages: list[list[Activity]] = []
        token = None
        while True:
            page = await fresh.get_transcript_activities("directline", "conversation-1", token)
            pages.append(page.items)
            token = page.continuation_token
            if token is None:
                break
        assert [[activity.text for activity in page] for page in pages] == [expected[:2], expected[2:4], expected[4:]]
        assert all(isinstance(activity, Activity) for page in pages for activity in page)
        assert pages[0][0].from_property.role == "user" and pages[0][1].from_property.role == "bot"
        # Partitioned by conversation only: another channel's view of the id is empty.
        assert (await fresh.get_transcript_activities("msteams", "conversation-1")).items == []
        since_the_answer = await fresh.get_transcript_activities("directline", "conversation-1", None, answered)
        assert [activity.text for activity in since_the_answer.items] == expected[2:4]
    finally:
        await fresh.close()


async def test_a_conversation_id_with_reserved_and_unicode_characters(azurite: Azurite, table: str) -> None:
    store = TableTranscriptStore(azurite.connection_string, table)
    recorder = TranscriptRecorder(store)
    recorder.record(WEIRD_ID, [message("odd id", conversation=WEIRD_ID, activity_id="a/b#c")])
    recorder.record("conv", [message("a prefix of it", conversation="conv", activity_id="1")])
    assert await recorder.flush(10)
    try:
        assert recorder.dropped == 0
        assert await texts(store, WEIRD_ID) == ["odd id"]
        assert await texts(store, "conv") == ["a prefix of it"]
        listed = await store.list_transcripts("directline")
        assert {info.id for info in listed.items} == {WEIRD_ID, "conv"}
        await store.delete_transcript("directline", WEIRD_ID)
        assert await texts(store, WEIRD_ID) == []
        assert [info.id for info in (await store.list_transcripts("directline")).items] == ["conv"]
    finally:
        await recorder.close()


async def test_an_inbound_activity_delivered_twice_is_recorded_once(azurite: Azurite, table: str) -> None:
    store = TableTranscriptStore(azurite.connection_string, table)
    recorder = TranscriptRecorder(store)
    inbound = message("only once", activity_id="in-1", timestamp=datetime.now(UTC))
    recorder.record("conversation-1", [inbound, message("reply", role="bot")])
    recorder.record("conversation-1", [inbound])  # the channel retried: same id, same timestamp
    recorder.record("conversation-1", [inbound, inbound])  # even twice in one batch (one transaction)
    assert await recorder.flush(10)
    try:
        assert recorder.dropped == 0
        assert await texts(store, "conversation-1") == ["only once", "reply"]
    finally:
        await recorder.close()


async def test_redacted_user_text_never_reaches_the_table(azurite: Azurite, table: str) -> None:
    store = TableTranscriptStore(azurite.connection_string, table)
    recorder = TranscriptRecorder(store, redact_user_text=True)
    inbound = message("my password is hunter2", activity_id="in-1")
    inbound.value = {"password": "hunter2"}
    recorder.record("conversation-1", [inbound, message("Got it.", role="bot")])
    assert await recorder.flush(10)
    try:
        stored = await store.conversation_activities("conversation-1")
        assert [activity.get("text") for activity in stored] == ["[redacted]", "Got it."]
        assert "hunter2" not in str(stored)
        assert inbound.text == "my password is hunter2"  # the turn still sees what the user wrote
    finally:
        await recorder.close()


async def test_a_long_activity_is_stored_across_properties_and_read_back_whole(azurite: Azurite, table: str) -> None:
    store = TableTranscriptStore(azurite.connection_string, table)
    recorder = TranscriptRecorder(store)
    long_text = "".join(f"line {n}: ü日本😀\n" for n in range(12_000))  # about 250,000 UTF-16 units
    huge = message("the whole report", activity_id="big", role="bot")
    huge.attachments = [Attachment(content_type="text/plain", name="report.txt", content="x" * 3_000_000)]
    recorder.record("conversation-1", [message(long_text, activity_id="long"), huge])
    assert await recorder.flush(20)
    try:
        assert recorder.dropped == 0
        stored = await store.conversation_activities("conversation-1")
        assert stored[0]["text"] == long_text
        assert stored[1]["text"] == "the whole report"
        assert stored[1]["attachments"][0]["content"] == TRIMMED_MARKER
        assert stored[1]["attachments"][0]["name"] == "report.txt"
    finally:
        await recorder.close()


async def test_a_table_service_that_is_down_never_reaches_the_turn(
    azurite: Azurite, table: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="services.transcripts.recorder")
    nothing_listens = free_port()
    sleeps: list[float] = []

    async def no_wait(delay: float) -> None:
        sleeps.append(delay)

    recorder = TranscriptRecorder(TableTranscriptStore(through(azurite, nothing_listens), table), sleep=no_wait)
    recorder.record("conversation-1", [message("hello", activity_id="1"), message("hi", role="bot")])  # no raise
    assert await recorder.flush(20)
    await recorder.close()

    assert recorder.dropped == 2 and recorder.written == 0
    assert sleeps == [2.0, 8.0]  # three attempts
    assert "transcript: dropped 2 activities of conversation conversation-1; 2 dropped since start" in caplog.text


# A turn's few rows are single upserts sent at once; more rows go as a transaction. Either fails once here.
ONE_ROW_OF_CONVERSATION_1 = ("PUT", r"PartitionKey=(%27|')conversation-1")
THE_TRANSACTION = ("POST", r"/\$batch")


@pytest.mark.parametrize(("rows", "failing"), [(2, ONE_ROW_OF_CONVERSATION_1), (5, THE_TRANSACTION)])
async def test_a_transient_failure_is_retried_and_then_written(
    azurite: Azurite, table: str, proxy: FaultProxy, rows: int, failing: tuple[str, str]
) -> None:
    sleeps: list[float] = []

    async def no_wait(delay: float) -> None:
        sleeps.append(delay)

    store = TableTranscriptStore(through(azurite, proxy.port), table)
    recorder = TranscriptRecorder(store, sleep=no_wait)
    method, path = failing
    proxy.inject(UNAVAILABLE, times=1, method=method, path=path)
    said = [f"line {n}" for n in range(rows)]
    recorder.record("conversation-1", [message(text, activity_id=str(n)) for n, text in enumerate(said)])
    assert await recorder.flush(20)
    try:
        assert (recorder.written, recorder.dropped) == (rows, 0)
        assert sleeps == [2.0]
        assert proxy.count(method=method, path=path, outcome=UNAVAILABLE) == 1
        assert await texts(store, "conversation-1") == said
    finally:
        await recorder.close()


def requests_made(requests: list[Seen]) -> list[str]:
    """What the store asked the table service, in plain words: a query's filter, a transaction, a
    deleted entity (the table's creation left out)."""
    made = []
    for seen in requests:
        path = unquote(seen.path)
        if path.endswith("/Tables"):
            continue
        if seen.method == "GET":
            made.append("query " + path.split("$filter=", 1)[1])
        elif path.endswith("/$batch"):
            made.append("transaction")
        else:
            made.append(f"{seen.method.lower()} " + path.split("(", 1)[1].rstrip(")"))
    return made


async def test_cleanup_deletes_only_old_rows_and_reads_only_old_index_partitions(
    azurite: Azurite, table: str, proxy: FaultProxy
) -> None:
    old, recent = NOW - timedelta(days=40), NOW - timedelta(hours=1)
    writer = TranscriptRecorder(TableTranscriptStore(azurite.connection_string, table))
    # Conversation A: old and recent activities; B: only old ones; plus 30 recent conversations.
    writer.record("A/old-and-new", [message("a-old-1", activity_id="1", timestamp=old)])
    writer.record("A/old-and-new", [message("a-old-2", role="bot", timestamp=old + timedelta(seconds=1))])
    writer.record("A/old-and-new", [message("a-new", activity_id="2", timestamp=recent)])
    writer.record("B-old", [message(f"b-{n}", activity_id=str(n), timestamp=old) for n in range(150)])
    for n in range(30):
        writer.record(f"recent-{n}", [message("new", activity_id="1", timestamp=recent)])
    assert await writer.flush(30)
    assert writer.dropped == 0

    cleaner = TableTranscriptStore(through(azurite, proxy.port), table)
    try:
        report = await cleaner.cleanup(NOW.timestamp(), retention_days=30)
        cleanup_requests = list(proxy.seen)

        assert (report.deleted_activities, report.conversations_touched, report.index_rows_removed) == (152, 2, 2)
        assert await texts(cleaner, "A/old-and-new") == ["a-new"]
        assert await texts(cleaner, "B-old") == []
        assert await texts(cleaner, "recent-7") == ["new"]
        # What cleanup asked for: one range over the index partitions of days before the cutoff's day
        # (2026-12-16), then, per old conversation, its rows older than the cutoff, their deletion
        # (100 rows per transaction) and its index row. No recent conversation, no recent index day.
        cutoff = f"{int((NOW - timedelta(days=30)).timestamp() * 1000):015d}"
        a_key, b_key = escape_key("A/old-and-new"), "B-old"
        assert requests_made(cleanup_requests) == [
            "query PartitionKey ge '~index-' and PartitionKey lt '~index-20261216'",
            f"query PartitionKey eq '{a_key}' and RowKey lt '{cutoff}'",
            "transaction",
            f"delete PartitionKey='~index-20261206',RowKey='{a_key}'",
            f"query PartitionKey eq '{b_key}' and RowKey lt '{cutoff}'",
            "transaction",
            "transaction",
            f"delete PartitionKey='~index-20261206',RowKey='{b_key}'",
        ]

        again = await cleaner.cleanup(NOW.timestamp(), retention_days=30)
        assert (again.deleted_activities, again.index_rows_removed) == (0, 0)
    finally:
        await cleaner.close()
        await writer.close()
