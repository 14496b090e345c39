"""The transcript endpoint and the cleanup timer, against Azurite's table service: what an operator
downloading a transcript gets (a file the Bot Framework Emulator opens, or an answer that says what is
wrong), and what the cleanup leaves."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from botbuilder.schema import Activity, ChannelAccount, ConversationAccount

from handlers.http_types import HttpResponseData
from handlers.transcripts import (
    CONTINUATION_HEADER,
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_BYTES,
    TranscriptCleanupDependencies,
    TranscriptReadDependencies,
    continuation_token,
    handle_get_transcript,
    handle_transcript_cleanup,
)
from localdev.emulators import Azurite
from localdev.processes import free_port
from services.transcripts.recorder import TranscriptEntry, TranscriptRecorder
from services.transcripts.store import TableTranscriptStore
from tests.support.clock import FakeClock
from tests.support.fault_proxy import RESET, UNAVAILABLE, FaultProxy

pytestmark = pytest.mark.emulators

RETENTION_DAYS = 30


def message(text: str, *, conversation: str, role: str = "user", timestamp: datetime | None = None) -> Activity:
    user = ChannelAccount(id="user-1", name="User", role="user")
    bot = ChannelAccount(id="bot", name="Bot", role="bot")
    return Activity(
        type="message",
        id=str(uuid.uuid4()) if role == "user" else None,
        text=text,
        timestamp=timestamp,
        channel_id="directline",
        conversation=ConversationAccount(id=conversation),
        from_property=bot if role == "bot" else user,
        recipient=user if role == "bot" else bot,
    )


@pytest.fixture
async def store(azurite: Azurite) -> AsyncIterator[TableTranscriptStore]:
    store = TableTranscriptStore(azurite.connection_string, "transcripts" + uuid.uuid4().hex[:12])
    yield store
    await store.close()


async def record(store: TableTranscriptStore, conversation_id: str, *batches: list[Activity]) -> None:
    recorder = TranscriptRecorder(store)
    for batch in batches:
        recorder.record(conversation_id, batch)
    assert await recorder.flush(10)
    assert recorder.dropped == 0


def reading(store: TableTranscriptStore, enabled: bool = True) -> TranscriptReadDependencies:
    return TranscriptReadDependencies(store=store, enabled=enabled, retention_days=RETENTION_DAYS)


async def test_a_transcript_downloads_as_a_file_the_emulator_opens(store: TableTranscriptStore) -> None:
    conversation = "8f3c2a|livechat/über"
    asked = datetime.now(UTC) - timedelta(minutes=1)
    await record(
        store,
        conversation,
        [
            message("hello", conversation=conversation, timestamp=asked),
            message("Hi! Your name?", conversation=conversation, role="bot"),
        ],
        [message("Ada", conversation=conversation, timestamp=datetime.now(UTC) + timedelta(seconds=1))],
    )

    response = await handle_get_transcript(conversation, reading(store))

    assert response.status == 200
    assert response.headers["Content-Disposition"] == 'attachment; filename="8f3c2a_livechat_ber.transcript"'
    transcript = json.loads(response.body_bytes())  # what the Emulator reads: a JSON array of activities
    assert isinstance(transcript, list)
    assert [(item["from"]["role"], item["text"]) for item in transcript] == [
        ("user", "hello"),
        ("bot", "Hi! Your name?"),
        ("user", "Ada"),
    ]
    assert all(item["type"] == "message" and item["conversation"]["id"] == conversation for item in transcript)
    assert all(item["timestamp"].endswith("Z") for item in transcript)


async def test_an_unknown_conversation_is_a_404_that_says_how_long_transcripts_are_kept(
    store: TableTranscriptStore,
) -> None:
    response = await handle_get_transcript("never-seen", reading(store))
    assert response.status == 404
    text = response.body["error"]["message"]
    assert "'never-seen'" in text and f"{RETENTION_DAYS} days" in text and "TranscriptRetentionDays" in text


async def test_transcripts_turned_off_is_a_404_that_says_so(store: TableTranscriptStore) -> None:
    response = await handle_get_transcript("conversation-1", reading(store, enabled=False))
    assert response.status == 404
    assert response.body["error"]["message"] == "transcripts are turned off (TranscriptsEnabled=false)"


@pytest.mark.parametrize(
    ("conversation_id", "problem"),
    [
        ("", "the conversation id is empty"),
        ("x" * 257, "the conversation id is 257 characters long; at most 256 are accepted"),
        ("abc\ndef", "the conversation id holds a control character (U+000A at position 3)"),
    ],
    ids=["empty", "too long", "control character"],
)
async def test_a_bad_conversation_id_is_a_400_naming_the_problem(
    store: TableTranscriptStore, conversation_id: str, problem: str
) -> None:
    response = await handle_get_transcript(conversation_id, reading(store))
    assert response.status == 400
    assert response.body["error"]["message"] == problem


@pytest.mark.parametrize("outage", ["nothing listens", UNAVAILABLE, RESET])
async def test_a_table_service_outage_is_a_503_in_plain_words(
    azurite: Azurite, outage: str, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = await FaultProxy(f"http://127.0.0.1:{azurite.table_port}/").start()
    port = free_port() if outage == "nothing listens" else proxy.port
    if outage != "nothing listens":
        proxy.inject(outage)
    connection = azurite.connection_string.replace(f"127.0.0.1:{azurite.table_port}/", f"127.0.0.1:{port}/")
    store = TableTranscriptStore(connection, "transcripts" + uuid.uuid4().hex[:12], request_timeout=2.0)
    try:
        response = await handle_get_transcript("conversation-1", reading(store))
    finally:
        await store.close()
        await proxy.stop()

    assert response.status == 503
    assert response.headers["Retry-After"] == "30"
    assert (
        response.body["error"]["message"] == "the transcript storage cannot be reached right now; try again in a minute"
    )
    assert "Traceback" not in caplog.text


async def test_the_cleanup_timer_keeps_recent_transcripts_and_logs_what_it_deleted(
    store: TableTranscriptStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="handlers.transcripts")
    clock = FakeClock()
    now = datetime.fromtimestamp(clock(), UTC)
    old = now - timedelta(days=RETENTION_DAYS + 5)
    await record(store, "old-one", [message("long ago", conversation="old-one", timestamp=old)])
    await record(store, "mixed", [message("long ago", conversation="mixed", timestamp=old)])
    await record(store, "mixed", [message("yesterday", conversation="mixed", timestamp=now - timedelta(days=1))])
    deps = TranscriptCleanupDependencies(transcripts=store, retention_days=RETENTION_DAYS, clock=clock)

    report = await handle_transcript_cleanup(deps)

    assert (report.deleted_activities, report.conversations_touched, report.index_rows_removed) == (2, 2, 2)
    assert (await handle_get_transcript("old-one", reading(store))).status == 404
    kept = await handle_get_transcript("mixed", reading(store))
    assert [item["text"] for item in kept.body] == ["yesterday"]
    assert "transcript cleanup: deleted 2 activities of 2 conversations older than 30 days" in caplog.text


async def test_the_cleanup_timer_stops_quietly_when_the_table_service_is_down(
    azurite: Azurite, caplog: pytest.LogCaptureFixture
) -> None:
    connection = azurite.connection_string.replace(f"127.0.0.1:{azurite.table_port}/", f"127.0.0.1:{free_port()}/")
    store = TableTranscriptStore(connection, "transcripts" + uuid.uuid4().hex[:12])
    deps = TranscriptCleanupDependencies(transcripts=store, retention_days=RETENTION_DAYS, clock=FakeClock())
    try:
        report = await handle_transcript_cleanup(deps)
    finally:
        await store.close()
    assert report.deleted_activities == 0
    assert "transcript cleanup stopped, the table service is unavailable" in caplog.text


# --- paging: a long conversation is read and answered a page at a time ------------------------------


async def write_activities(store: TableTranscriptStore, conversation: str, count: int, text_size: int = 10) -> None:
    """`count` activities, one millisecond apart, each with text of `text_size` characters."""
    base_ms = int(datetime.now(UTC).timestamp() * 1000) - 3_600_000
    entries = [
        TranscriptEntry(
            {
                "type": "message",
                "id": f"a-{n:05d}",
                "text": f"{n:05d}:" + "x" * text_size,
                "channelId": "directline",
                "conversation": {"id": conversation},
                "from": {"id": "user-1", "role": "user"},
            },
            base_ms + n,
        )
        for n in range(count)
    ]
    await store.write(conversation, entries)


async def every_page(
    store: TableTranscriptStore, conversation: str, query: dict[str, str] | None = None
) -> list[HttpResponseData]:
    pages = []
    token: str | None = None
    for _ in range(100):
        page_query = dict(query or {}, **({"continuationToken": token} if token else {}))
        response = await handle_get_transcript(conversation, reading(store), page_query)
        assert response.status == 200, response.body
        pages.append(response)
        token = response.headers.get(CONTINUATION_HEADER)
        if token is None:
            return pages
    raise AssertionError("the pages never ended")


def numbers(response: HttpResponseData) -> list[int]:
    return [int(activity["text"].split(":", 1)[0]) for activity in json.loads(response.body_bytes())]


async def test_a_long_transcript_comes_in_pages_of_the_default_size_with_a_token_while_more_remain(
    store: TableTranscriptStore,
) -> None:
    await write_activities(store, "long-one", 250)
    pages = await every_page(store, "long-one")
    assert [len(numbers(page)) for page in pages] == [DEFAULT_PAGE_SIZE, DEFAULT_PAGE_SIZE, 50]
    assert [n for page in pages for n in numbers(page)] == list(range(250))  # in order, none twice, none lost
    assert all(CONTINUATION_HEADER in page.headers for page in pages[:-1])
    assert 'rel="next"' in pages[0].headers["Link"] and "continuationToken=" in pages[0].headers["Link"]
    assert CONTINUATION_HEADER not in pages[-1].headers and "Link" not in pages[-1].headers

    exact = await every_page(store, "long-one", {"pageSize": "125"})
    assert [len(numbers(page)) for page in exact] == [125, 125]  # no empty last page when it ends exactly
    assert [len(numbers(page)) for page in await every_page(store, "long-one", {"pageSize": "500"})] == [250]


async def test_a_page_stops_before_one_megabyte(store: TableTranscriptStore) -> None:
    await write_activities(store, "bulky", 30, text_size=100_000)  # about 100 KB each
    pages = await every_page(store, "bulky", {"pageSize": "500"})
    assert all(len(page.body_bytes()) <= MAX_PAGE_BYTES for page in pages)
    assert len(numbers(pages[0])) == 9  # a tenth would pass 1 MB
    assert [n for page in pages for n in numbers(page)] == list(range(30))


async def test_an_activity_larger_than_the_cap_still_comes_alone(store: TableTranscriptStore) -> None:
    await write_activities(store, "huge", 3, text_size=100_000)
    after: str | None = None
    pages = []
    for _ in range(5):
        page = await store.read_page("huge", 500, after_row_key=after, max_bytes=50_000)  # smaller than each
        pages.append([int(a["text"].split(":", 1)[0]) for a in page.activities])
        after = page.next_after
        if after is None:
            break
    assert pages == [[0], [1], [2]]  # never an empty page that makes no progress


async def test_one_page_is_one_request_to_the_table_service(azurite: Azurite) -> None:
    proxy = await FaultProxy(f"http://127.0.0.1:{azurite.table_port}/").start()
    connection = azurite.connection_string.replace(f"127.0.0.1:{azurite.table_port}/", f"127.0.0.1:{proxy.port}/")
    store = TableTranscriptStore(connection, "transcripts" + uuid.uuid4().hex[:12])
    try:
        await write_activities(store, "counted", 1200)  # more than the service's own page of 1,000 rows
        queries_before = proxy.count(method="GET")
        response = await handle_get_transcript("counted", reading(store), {"pageSize": "20"})
        assert response.status == 200 and numbers(response) == list(range(20))
        assert proxy.count(method="GET") - queries_before == 1
        [query] = [s.path for s in proxy.seen if s.method == "GET"][-1:]
        assert "top=21" in query.replace("%24", "$")  # page size + 1: whether more remain
    finally:
        await store.close()
        await proxy.stop()


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ({"pageSize": "0"}, "pageSize"),
        ({"pageSize": "501"}, "pageSize"),
        ({"pageSize": "-5"}, "pageSize"),
        ({"pageSize": "ten"}, "pageSize"),
        ({"pageSize": "1e3"}, "pageSize"),
        ({"pageSize": "٣"}, "pageSize"),  # a digit, but not an ASCII one
        ({"continuationToken": "garbage"}, "continuationToken"),
        ({"continuationToken": "t1.!!!"}, "continuationToken"),
        ({"continuationToken": "t1." + "A" * 3000}, "continuationToken"),
        ({"continuationToken": continuation_token("not-a-row-key")}, "continuationToken"),
    ],
)
async def test_a_bad_page_size_or_token_is_a_400_naming_it(
    store: TableTranscriptStore, query: dict[str, str], named: str
) -> None:
    response = await handle_get_transcript("conversation-1", reading(store), query)
    assert response.status == 400 and response.body["error"]["code"] == "InvalidPageRequest"
    assert response.body["error"]["message"].startswith(named)


async def test_other_query_parameters_such_as_the_function_key_are_ignored(store: TableTranscriptStore) -> None:
    await write_activities(store, "keyed", 3)
    response = await handle_get_transcript("keyed", reading(store), {"code": "the-function-key", "x": "y"})
    assert response.status == 200 and numbers(response) == [0, 1, 2]
