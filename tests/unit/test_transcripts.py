"""Transcripts without a table service: keys, entities, redaction, and the recorder's promises
(never blocks or fails a turn, retries a transient failure, counts and logs what it drops)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from botbuilder.schema import Activity, Attachment, ChannelAccount, ConversationAccount

from services.transcripts.recorder import (
    REDACTED_TEXT,
    CleanupReport,
    HandoffTranscripts,
    TranscriptEntry,
    TranscriptRecorder,
    TranscriptStoreUnavailableError,
    transcript_file,
)
from services.transcripts.store import (
    CHUNK_UNITS,
    INDEX_PREFIX,
    MAX_KEY_UNITS,
    TRIMMED_MARKER,
    _split_utf16,
    _transactions,
    _utf16_units,
    activity_entity,
    entity_activity,
    escape_key,
    row_key,
    unescape_key,
)

WEIRD_IDS = [
    "a/b\\c#d?e%f",
    "%41",  # already looks escaped: must come back as itself
    "~index-20240101",  # must not land in the index partitions
    "ü日本語😀 spaces|pipes'quotes\"",
    "tab\there\nnewline\x00nul\x7fdel\x85nel",
    "8f3c2a|livechat",
]


def message(
    text: str,
    *,
    role: str = "user",
    activity_id: str | None = None,
    timestamp: datetime | None = None,
    conversation: str = "conversation-1",
) -> Activity:
    return Activity(
        type="message",
        id=activity_id,
        text=text,
        timestamp=timestamp,
        channel_id="directline",
        conversation=ConversationAccount(id=conversation),
        from_property=ChannelAccount(id="bot" if role == "bot" else "user-1", role=role),
        recipient=ChannelAccount(id="user-1" if role == "bot" else "bot", role="user" if role == "bot" else "bot"),
    )


# --- keys --------------------------------------------------------------------------------------


@pytest.mark.parametrize("conversation_id", WEIRD_IDS)
def test_any_conversation_id_becomes_a_valid_table_key_and_back(conversation_id: str) -> None:
    key = escape_key(conversation_id)
    assert not set(key) & set("/\\#?"), key
    assert not any(ord(char) < 0x20 or 0x7F <= ord(char) < 0xA0 for char in key), key
    assert not key.startswith(INDEX_PREFIX[0])
    assert unescape_key(key) == conversation_id


def test_distinct_ids_never_share_a_key() -> None:
    ids = ["a/b", "a%2Fb", "a%252Fb", "~x", "%7Ex"]
    assert len({escape_key(conversation_id) for conversation_id in ids}) == len(ids)


def test_a_very_long_id_gets_a_short_stable_unique_key() -> None:
    long_id = "/" * 300  # escapes to 900 characters, beyond what a Table key holds
    key = escape_key(long_id)
    assert _utf16_units(key) <= MAX_KEY_UNITS
    assert key == escape_key(long_id)
    assert key != escape_key("/" * 299)
    with pytest.raises(ValueError):
        unescape_key(key)


def test_row_keys_sort_in_time_order_and_one_activity_id_is_one_row() -> None:
    early = TranscriptEntry({"id": "b"}, 999)
    late = TranscriptEntry({"id": "a"}, 1_000)
    assert row_key(early) < row_key(late)
    assert row_key(TranscriptEntry({"id": "x/y"}, 5)) == row_key(TranscriptEntry({"id": "x/y", "text": "again"}, 5))
    assert row_key(TranscriptEntry({}, 5)) != row_key(TranscriptEntry({}, 5))  # no id: never merged


# --- entities ----------------------------------------------------------------------------------


def test_text_is_split_in_utf16_pieces_without_breaking_a_character() -> None:
    text = ("a" * (CHUNK_UNITS - 1)) + "😀" + ("日本" * 20_000) + "😀" * 20_000
    pieces = _split_utf16(text, CHUNK_UNITS)
    assert "".join(pieces) == text
    assert len(pieces) > 3
    assert all(_utf16_units(piece) <= CHUNK_UNITS for piece in pieces)


def test_a_long_activity_is_split_across_properties_and_reassembled() -> None:
    activity = {"type": "message", "id": "1", "text": "long " * 40_000, "from": {"id": "u", "role": "user"}}
    entity = activity_entity("conversation", TranscriptEntry(activity, 1_700_000_000_000))
    assert entity["parts"] >= 7
    assert all(_utf16_units(value) <= 32_768 for value in entity.values() if isinstance(value, str))
    assert entity_activity(entity) == activity
    assert "trimmed" not in entity


def test_an_activity_too_large_for_an_entity_loses_its_attachments_content_first() -> None:
    activity = {
        "type": "message",
        "id": "big",
        "text": "here is the report",
        "attachments": [{"contentType": "text/plain", "name": "report.txt", "content": "x" * 2_000_000}],
    }
    entity = activity_entity("conversation", TranscriptEntry(activity, 1))
    stored = entity_activity(entity)
    assert stored is not None and entity["trimmed"] is True
    assert stored["text"] == "here is the report"
    assert stored["attachments"] == [{"contentType": "text/plain", "name": "report.txt", "content": TRIMMED_MARKER}]
    assert sum(2 * _utf16_units(value) for value in entity.values() if isinstance(value, str)) < 1_000_000


def test_a_transaction_holds_at_most_100_rows_each_row_once() -> None:
    entities = [{"PartitionKey": "p", "RowKey": f"{n:03d}", "json": "{}"} for n in range(250)]
    entities.append({"PartitionKey": "p", "RowKey": "000", "json": '{"again":1}'})  # a redelivery in the batch
    groups = _transactions(entities)
    assert [len(group) for group in groups] == [100, 100, 50]
    assert next(e for e in groups[0] if e["RowKey"] == "000")["json"] == '{"again":1}'


def test_the_transcript_file_is_the_emulators_json_array_of_activities() -> None:
    activities = [message("hi", activity_id="1"), {"type": "message", "text": "stored", "from": {"role": "bot"}}]
    content = json.loads(json.dumps(transcript_file(activities)))
    assert isinstance(content, list)
    assert [item["text"] for item in content] == ["hi", "stored"]
    assert content[0]["from"] == {"id": "user-1", "role": "user"}


# --- the recorder ------------------------------------------------------------------------------


class MemoryStore:
    """A store that keeps writes in memory, failing the first `failures` of them as the table service would."""

    def __init__(self, failures: int = 0, error: Exception | None = None) -> None:
        self.failures = failures
        self.error = error or TranscriptStoreUnavailableError("ServiceRequestError: connection refused")
        self.written: dict[str, list[TranscriptEntry]] = {}
        self.attempts = 0
        self.closed = False

    async def write(self, conversation_id: str, entries: Sequence[TranscriptEntry]) -> None:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise self.error
        self.written.setdefault(conversation_id, []).extend(entries)

    async def cleanup(self, now: float, retention_days: int) -> CleanupReport:
        return CleanupReport()

    async def close(self) -> None:
        self.closed = True


class RecordedSleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


async def test_redaction_removes_what_users_wrote_on_a_copy_and_keeps_the_bots_words() -> None:
    store = MemoryStore()
    recorder = TranscriptRecorder(store, redact_user_text=True)
    inbound = message("my card is 4111 1111 1111 1111", activity_id="in-1")
    inbound.value = {"card": "4111"}
    inbound.channel_data = {"secret": "x"}
    inbound.attachments = [Attachment(content_type="image/png", content_url="https://example.com/a.png")]
    reply = message("Thanks, noted.", role="bot")

    recorder.record("conversation-1", [inbound, reply])
    assert await recorder.flush(5)

    stored_inbound, stored_reply = (entry.activity for entry in store.written["conversation-1"])
    assert stored_inbound["text"] == REDACTED_TEXT
    assert "value" not in stored_inbound and "channelData" not in stored_inbound
    assert stored_inbound["attachments"] == []
    assert stored_reply["text"] == "Thanks, noted."
    # The caller's objects are untouched: the turn goes on with what the user wrote.
    assert inbound.text == "my card is 4111 1111 1111 1111"
    assert inbound.value == {"card": "4111"} and inbound.channel_data == {"secret": "x"}
    assert len(inbound.attachments) == 1
    assert reply.timestamp is None  # stamped in the transcript only


async def test_activities_without_a_timestamp_are_stamped_in_order() -> None:
    store = MemoryStore()
    recorder = TranscriptRecorder(store, clock=lambda: 1_700_000_000.0)  # a clock that stands still
    inbound = message("hello", activity_id="in-1", timestamp=datetime(2023, 11, 14, 22, 13, 20, 500_000, tzinfo=UTC))
    replies = [message(f"reply {n}", role="bot") for n in range(3)]

    recorder.record("conversation-1", [inbound, *replies])
    recorder.record("conversation-1", [message("later", role="bot")])
    assert await recorder.flush(5)

    stamps = [entry.timestamp_ms for entry in store.written["conversation-1"]]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    assert stamps[0] == 1_700_000_000_500  # the channel's own timestamp is kept
    assert store.written["conversation-1"][1].activity["timestamp"].endswith("Z")


async def test_a_transient_failure_is_retried_with_backoff_and_then_written() -> None:
    store = MemoryStore(failures=2)
    sleeps = RecordedSleeps()
    recorder = TranscriptRecorder(store, sleep=sleeps)

    recorder.record("conversation-1", [message("hello", activity_id="1")])
    assert await recorder.flush(5)

    assert [entry.activity["text"] for entry in store.written["conversation-1"]] == ["hello"]
    assert sleeps.delays == [2.0, 8.0]
    assert (recorder.written, recorder.dropped) == (1, 0)


async def test_a_failing_table_service_never_reaches_the_turn_and_drops_are_counted_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="services.transcripts.recorder")
    store = MemoryStore(failures=1_000)
    recorder = TranscriptRecorder(store, sleep=RecordedSleeps())

    recorder.record("conversation-1", [message("one", activity_id="1"), message("two", role="bot")])
    recorder.record("conversation-2", [message("three", activity_id="3")])
    assert await recorder.flush(5)

    assert store.attempts == 6  # three attempts per batch
    assert recorder.dropped == 3
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert any(
        text.startswith("transcript: dropped 2 activities of conversation conversation-1; 2 dropped since start")
        for text in warnings
    )
    assert any(
        text.startswith("transcript: dropped 1 activities of conversation conversation-2; 3 dropped since start")
        for text in warnings
    )


async def test_an_error_not_worth_retrying_drops_the_batch_at_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="services.transcripts.recorder")

    class RefusesOne(MemoryStore):  # as the table service refuses an entity over 1 MB, every time
        async def write(self, conversation_id: str, entries: Sequence[TranscriptEntry]) -> None:
            self.attempts += 1
            if any(entry.activity["text"] == "one" for entry in entries):
                raise ValueError("the entity is larger than 1 MB")
            self.written.setdefault(conversation_id, []).extend(entries)

    store = RefusesOne()
    sleeps = RecordedSleeps()
    recorder = TranscriptRecorder(store, sleep=sleeps)

    recorder.record("conversation-1", [message("one", activity_id="1")])
    recorder.record("conversation-1", [message("two", activity_id="2")])
    assert await recorder.flush(5)

    # Both turns went out together and were refused; written one by one, only the refused one is lost.
    assert sleeps.delays == [] and store.attempts == 3
    assert [entry.activity["text"] for entry in store.written["conversation-1"]] == ["two"]
    assert recorder.dropped == 1
    assert "the table service refused them" in caplog.text


async def test_a_full_queue_drops_the_new_batch_without_blocking() -> None:
    release = asyncio.Event()

    class SlowStore(MemoryStore):
        async def write(self, conversation_id: str, entries: Sequence[TranscriptEntry]) -> None:
            await release.wait()
            await super().write(conversation_id, entries)

    store = SlowStore()
    recorder = TranscriptRecorder(store, max_queued_activities=3)
    recorder.record("conversation-1", [message("a", activity_id="a"), message("b", activity_id="b")])
    recorder.record("conversation-1", [message("c", activity_id="c"), message("d", activity_id="d")])  # 4 > 3
    recorder.record("conversation-1", [message("e", activity_id="e")])  # fits: 3
    assert recorder.dropped == 2 and recorder.queued_activities == 3

    release.set()
    assert await recorder.flush(5)
    assert [entry.activity["text"] for entry in store.written["conversation-1"]] == ["a", "b", "e"]


def test_record_outside_an_event_loop_drops_instead_of_raising() -> None:
    recorder = TranscriptRecorder(MemoryStore())
    recorder.record("conversation-1", [message("hello")])
    assert recorder.dropped == 1


async def test_record_never_raises_even_for_something_that_is_not_an_activity() -> None:
    recorder = TranscriptRecorder(MemoryStore())
    recorder.record("conversation-1", ["not an activity"])  # type: ignore[list-item]
    assert recorder.dropped == 1
    assert await recorder.flush(1)


async def test_close_writes_what_is_queued_then_closes_the_store() -> None:
    store = MemoryStore()
    recorder = TranscriptRecorder(store)
    recorder.record("conversation-1", [message("last words", activity_id="1")])
    await recorder.close()
    assert [entry.activity["text"] for entry in store.written["conversation-1"]] == ["last words"]
    assert store.closed
    recorder.record("conversation-1", [message("too late", activity_id="2")])
    assert recorder.dropped == 1


async def test_close_gives_up_on_a_hanging_store_within_its_timeout_and_says_so_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class HangingStore(MemoryStore):
        async def write(self, conversation_id: str, entries: Sequence[TranscriptEntry]) -> None:
            await asyncio.Event().wait()

    store = HangingStore()
    recorder = TranscriptRecorder(store)
    recorder.record("conversation-1", [message("one", activity_id="1")])  # being written when close gives up
    for n in range(2, 6):
        two = [message("two", activity_id=f"{n}a"), message("more", activity_id=f"{n}b")]
        recorder.record(f"conversation-{n}", two)
    caplog.set_level(logging.WARNING, logger="services.transcripts.recorder")
    await recorder.close(timeout=0.1)
    assert recorder.dropped == 9 and recorder.queued_activities == 0
    assert store.closed
    # A backlog of many conversations is one line at shutdown, not one per conversation.
    assert [r.getMessage() for r in caplog.records] == [
        "transcript: dropped 9 activities of 5 conversations: the recorder closed before they were written; "
        "9 dropped since start"
    ]


async def test_turns_recorded_while_the_writer_lingers_go_out_in_one_write_per_conversation() -> None:
    store = MemoryStore()
    recorder = TranscriptRecorder(store, linger_seconds=60.0)  # flush() ends the lingering
    for turn in range(3):
        recorder.record("conversation-1", [message(f"turn {turn}", activity_id=f"in-{turn}")])
        recorder.record("conversation-2", [message(f"other {turn}", activity_id=f"other-{turn}")])
    assert await recorder.flush(5)  # well before the 60 s linger: a waiting flush writes at once

    assert store.attempts == recorder.writes == 2  # one per conversation, not one per turn
    assert [entry.activity["text"] for entry in store.written["conversation-1"]] == ["turn 0", "turn 1", "turn 2"]
    assert [entry.activity["text"] for entry in store.written["conversation-2"]] == ["other 0", "other 1", "other 2"]


class StoredTranscript:
    def __init__(self, activities: list[dict[str, Any]]) -> None:
        self.activities = activities

    async def latest_activities(self, conversation_id: str, count: int) -> list[dict[str, Any]]:
        return self.activities[-count:]


async def test_a_handoff_gets_a_bounded_redacted_transcript_without_earlier_handoffs() -> None:
    earlier = [
        {"type": "message", "id": f"m-{n}", "text": f"message {n}", "from": {"id": "u", "role": "user"}}
        for n in range(80)
    ]
    earlier.append({"type": "event", "name": "handoff.initiate", "id": "h-1", "attachments": ["a transcript"]})
    recorder = TranscriptRecorder(MemoryStore(), redact_user_text=True)
    source = HandoffTranscripts(recorder, StoredTranscript(earlier))
    current = message("my card is 4111", activity_id="now")
    current.conversation = ConversationAccount(id="conversation-1")

    transcript = await source.transcript(current)

    assert len(transcript) == HandoffTranscripts.MAX_ACTIVITIES
    assert transcript[-1]["id"] == "now" and transcript[-1]["text"] == "[redacted]"
    assert transcript[-2]["id"] == "m-79"  # the latest, in order; no earlier handoff event
    assert all(not str(a.get("name") or "").startswith("handoff.") for a in transcript)
    assert current.text == "my card is 4111"  # the turn's activity itself is untouched


def test_the_conversations_a_process_remembers_indexing_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each process remembers which conversations it indexed (to write each index row once); with more
    conversations a day than the bound, it forgets and writes a row again rather than grow."""
    import services.transcripts.store as transcript_store

    monkeypatch.setattr(transcript_store, "INDEX_PAIRS_REMEMBERED", 100)
    store = transcript_store.TableTranscriptStore("UseDevelopmentStorage=true")
    for n in range(1000):
        store._remember_indexed("2026-01-01" if n < 500 else "2026-01-02", f"c{n}")
        assert sum(map(len, store._indexed.values())) <= 100
    assert "c999" in store._indexed["2026-01-02"]
