"""Transcripts of every activity of a conversation: what the rest of the app calls.

    recorder = TranscriptRecorder(TableTranscriptStore(connection_string, table_name), redact_user_text=True)
    recorder.record(conversation_id, [inbound, *replies])   # inside a turn: never blocks, never raises
    await recorder.flush(5.0)                               # in tests, or before the process stops
    await recorder.close()

`record` only snapshots the activities (serialised, stamped, redacted: the caller's objects are never
touched) and queues them; one background task per event loop writes them through the store
(services/transcripts/store.py), with bounded retries. A transcript that cannot be written is dropped
and counted (`dropped`, a WARNING with the running total): transcripts are best effort, a turn never
waits for them nor fails because of them.

This module stays light (standard library only) so that handlers can import it on a cold start; the
Table storage code and the Bot Framework SDK are imported by services/transcripts/store.py.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence, Sized
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from services.unavailable import ServiceUnavailable

if TYPE_CHECKING:
    from botbuilder.schema import Activity

logger = logging.getLogger(__name__)

REDACTED_TEXT = "[redacted]"
BOT_ROLE = "bot"
DEFAULT_MAX_QUEUED_ACTIVITIES = 10_000
# Three attempts: at once, after 2 s, after 8 s more. With the store's own request timeouts a batch is
# written or given up within about 30 s, so an outage holds at most that much in memory per batch.
DEFAULT_RETRY_DELAYS = (2.0, 8.0)
# The writer waits this long after a turn before writing, gathering what later turns of the same
# conversation add: one table transaction for several turns (less CPU, fewer storage transactions).
DEFAULT_LINGER_SECONDS = 0.5
QUEUE_FULL_LOG_INTERVAL = 10.0  # seconds between warnings while the queue stays full (an outage floods it)

Sleep = Callable[[float], Awaitable[None]]


class TranscriptStoreUnavailableError(ServiceUnavailable):
    """The table service could not be reached or answered with a transient error (timeout, 408, 429, 5xx).

    Worth retrying; read paths answer 503. Anything else the store raises is not worth retrying."""


@dataclass(frozen=True)
class TranscriptEntry:
    """One activity as stored: its JSON form (`activity.serialize()`) and when it happened."""

    activity: dict[str, Any]
    timestamp_ms: int  # milliseconds since the epoch, UTC: orders the conversation

    @property
    def activity_id(self) -> str | None:
        return _text_or_none(self.activity.get("id"))

    @property
    def channel_id(self) -> str | None:
        return _text_or_none(self.activity.get("channelId"))

    @property
    def sender(self) -> Mapping[str, Any]:
        sender = self.activity.get("from")
        return sender if isinstance(sender, Mapping) else {}


@dataclass(frozen=True)
class TranscriptPage:
    """One page of a conversation's activities (serialised, oldest first)."""

    activities: list[dict[str, Any]]
    next_after: str | None  # the last row key read, when more remain: where the next page starts; else None
    json_bytes: int  # what `json.dumps(activities)` weighs (UTF-8)


@dataclass
class CleanupReport:
    deleted_activities: int = 0
    conversations_touched: int = 0  # conversations that lost at least one activity
    index_rows_removed: int = 0


class TranscriptWriter(Protocol):
    """What the recorder needs of a store (TableTranscriptStore implements it)."""

    async def write(self, conversation_id: str, entries: Sequence[TranscriptEntry]) -> None: ...

    async def cleanup(self, now: float, retention_days: int) -> CleanupReport: ...

    async def close(self) -> None: ...


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def timestamp_ms(moment: datetime) -> int:
    """Milliseconds since the epoch; a naive datetime is taken as UTC (as the Bot Framework sends them)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0, int(moment.timestamp() * 1000))


def iso_timestamp(milliseconds: int) -> str:
    """As the Bot Framework writes timestamps: ISO 8601, UTC, with a Z."""
    moment = datetime.fromtimestamp(milliseconds / 1000, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def redact(activity: dict[str, Any]) -> dict[str, Any]:
    """What a user wrote, removed from a serialised activity not sent by the bot (returns a new dict)."""
    sender = activity.get("from")
    if isinstance(sender, Mapping) and sender.get("role") == BOT_ROLE:
        return activity
    redacted = dict(activity)
    if redacted.get("text"):
        redacted["text"] = REDACTED_TEXT
    redacted.pop("value", None)
    redacted.pop("channelData", None)
    if "attachments" in redacted:
        redacted["attachments"] = []
    return redacted


def transcript_entry(activity: Activity | Mapping[str, Any], stamp_ms: Callable[[], int]) -> TranscriptEntry:
    """A snapshot of `activity` (its serialised form: later changes to the object do not reach it);
    one without a timestamp gets `stamp_ms()` in the snapshot, never on the caller's object. An
    already serialised activity (a dict) is taken as it is: serialising is the costly part."""
    if isinstance(activity, Mapping):
        data: dict[str, Any] = dict(activity)
        stamp = _parsed_timestamp(data.get("timestamp"))
    else:
        data = activity.serialize()
        stamp = activity.timestamp
    if stamp is not None:
        return TranscriptEntry(data, timestamp_ms(stamp))
    milliseconds = stamp_ms()
    data["timestamp"] = iso_timestamp(milliseconds)
    return TranscriptEntry(data, milliseconds)


def _parsed_timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def transcript_file(activities: Iterable[Activity | Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The `.transcript` format the Bot Framework Emulator opens (File > Open Transcript, or a
    `bfemulator://transcript.open?url=...` link): a JSON array of serialised activities, in order."""
    return [dict(item) if isinstance(item, Mapping) else item.serialize() for item in activities]


def transcript_file_json(activities: Iterable[Activity | Mapping[str, Any]]) -> str:
    return json.dumps(transcript_file(activities), ensure_ascii=False, indent=2)


@dataclass
class _Batch:
    number: int  # 1, 2, ...: batches finish in this order, so flush() waits for a number
    conversation_id: str
    entries: list[TranscriptEntry]


@dataclass
class _Waiter:
    batch_number: int
    future: asyncio.Future[None]


class TranscriptRecorder:
    """Records transcripts without ever slowing or failing a turn (see the module's docstring)."""

    def __init__(
        self,
        store: TranscriptWriter,
        *,
        redact_user_text: bool = False,
        max_queued_activities: int = DEFAULT_MAX_QUEUED_ACTIVITIES,
        retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
        linger_seconds: float = DEFAULT_LINGER_SECONDS,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.redact_user_text = redact_user_text
        self.max_queued_activities = max_queued_activities
        self.retry_delays = tuple(retry_delays)  # one attempt more than delays
        self.linger_seconds = linger_seconds
        self.writes = 0  # store writes, one per batch (the store sends it as one or more requests)
        self._sleep = sleep
        self._clock = clock
        self.dropped = 0  # activities given up since start (queue full, store failing, closed)
        self.written = 0  # activities the store accepted since start
        self._pending: deque[_Batch] = deque()
        self._queued_activities = 0
        self._batches_queued = 0
        self._unfinished: set[int] = set()  # numbers of the batches queued and not yet written or dropped
        self._waiters: list[_Waiter] = []
        self._hurry: asyncio.Event | None = None  # set by flush() and close(): stop lingering
        self._worker: asyncio.Task[None] | None = None
        self._last_stamp_ms = 0
        self._last_queue_full_warning = float("-inf")
        self._closed = False
        self._dropped_at_close: dict[str, int] = {}  # conversation id -> activities close() gave up

    @property
    def queued_activities(self) -> int:
        """Activities waiting to be written (or being written now)."""
        return self._queued_activities

    def record(self, conversation_id: str, activities: Sequence[Activity | Mapping[str, Any]]) -> None:
        """Queue a turn's activities for the conversation's transcript. Synchronous, no I/O, never raises."""
        try:
            self._record(conversation_id, activities)
        except Exception:  # a transcript problem must never reach the turn
            self.dropped += len(activities) if isinstance(activities, Sized) else 1
            logger.exception(
                "transcript: could not queue activities of conversation %s; %d dropped since start",
                conversation_id,
                self.dropped,
            )

    def _record(self, conversation_id: str, activities: Sequence[Activity | Mapping[str, Any]]) -> None:
        present = [activity for activity in activities if activity is not None]
        if not present:
            return
        if self._closed:
            self._drop(conversation_id, len(present), "the recorder is closed")
            return
        if self._queued_activities + len(present) > self.max_queued_activities:
            self._drop_queue_full(conversation_id, len(present))
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._drop(conversation_id, len(present), "record() was called outside an event loop")
            return
        entries: list[TranscriptEntry] = []
        for activity in present:
            # A reply without a timestamp is stamped after everything before it in the batch (an inbound
            # activity carries the channel's clock), so the stored order is the order of the turn.
            after = entries[-1].timestamp_ms if entries else 0
            entry = transcript_entry(activity, functools.partial(self._next_stamp_ms, after))
            entries.append(
                TranscriptEntry(redact(entry.activity), entry.timestamp_ms) if self.redact_user_text else entry
            )
        self._batches_queued += 1
        self._unfinished.add(self._batches_queued)
        self._pending.append(_Batch(self._batches_queued, conversation_id, entries))
        self._queued_activities += len(entries)
        if self._worker is None or self._worker.done() or self._worker.get_loop() is not loop:
            self._worker = loop.create_task(self._drain(), name="transcript-writer")

    def _next_stamp_ms(self, after_ms: int) -> int:
        """Now, but strictly after the previous stamp and `after_ms`: unstamped activities keep their order."""
        stamp = max(int(self._clock() * 1000), self._last_stamp_ms + 1, after_ms + 1)
        self._last_stamp_ms = stamp
        return stamp

    async def _drain(self) -> None:
        """The writer: after lingering a little, the oldest conversation's batches in one write, until the
        queue is empty (then it ends; the next record() starts another)."""
        self._hurry = asyncio.Event()  # this task's loop's
        while self._pending:
            await self._linger()
            batches = self._take_oldest_conversation()
            batch = _Batch(batches[-1].number, batches[0].conversation_id, [e for b in batches for e in b.entries])
            try:
                if not await self._write_with_retries(batch, drop_if_refused=len(batches) == 1):
                    # Refused (an entity too large, say): one turn's batch must not take the others with it.
                    for single in batches:
                        await self._write_with_retries(single)
            except asyncio.CancelledError:  # close() gave up waiting: counted there, with the rest
                self._give_up_at_close(batch)
                raise
            finally:
                self._queued_activities -= len(batch.entries)
                self._finish([b.number for b in batches])

    async def _linger(self) -> None:
        if self.linger_seconds <= 0 or self._hurry is None or self._waiters or self._closed:
            return
        self._hurry.clear()
        try:
            await asyncio.wait_for(self._hurry.wait(), self.linger_seconds)
        except TimeoutError:
            pass

    def _take_oldest_conversation(self) -> list[_Batch]:
        """The oldest pending batch and every later one of the same conversation, in order."""
        first = self._pending.popleft()
        same = [first]
        others: deque[_Batch] = deque()
        for batch in self._pending:
            (same if batch.conversation_id == first.conversation_id else others).append(batch)
        self._pending = others
        return same

    async def _write_with_retries(self, batch: _Batch, drop_if_refused: bool = True) -> bool:
        """Write, retrying a transient failure; False if refused and not dropped (`drop_if_refused`)."""
        attempts = len(self.retry_delays) + 1
        for attempt in range(1, attempts + 1):
            try:
                await self.store.write(batch.conversation_id, batch.entries)
            except TranscriptStoreUnavailableError as error:
                if attempt == attempts:
                    self._drop(
                        batch.conversation_id, len(batch.entries), f"the table service failed {attempts} times: {error}"
                    )
                    return True
                await self._sleep(self.retry_delays[attempt - 1])
            except Exception as error:  # not transient (a refused entity, say): retrying would not help
                logger.debug("transcript: write refused", exc_info=True)
                if not drop_if_refused:
                    return False
                self._drop(batch.conversation_id, len(batch.entries), f"the table service refused them: {error!r}")
                return True
            else:
                self.written += len(batch.entries)
                self.writes += 1
                return True
        return True

    def _drop(self, conversation_id: str, count: int, reason: str) -> None:
        self.dropped += count
        logger.warning(
            "transcript: dropped %d activities of conversation %s; %d dropped since start (%s)",
            count,
            conversation_id,
            self.dropped,
            reason,
        )

    def _give_up_at_close(self, batch: _Batch) -> None:
        conversation = batch.conversation_id
        self._dropped_at_close[conversation] = self._dropped_at_close.get(conversation, 0) + len(batch.entries)

    def _drop_queue_full(self, conversation_id: str, count: int) -> None:
        now = time.monotonic()
        if now - self._last_queue_full_warning >= QUEUE_FULL_LOG_INTERVAL:
            self._last_queue_full_warning = now
            self._drop(conversation_id, count, f"{self._queued_activities} activities are already waiting")
        else:  # counted, but not logged again within the interval
            self.dropped += count

    def _all_finished_up_to(self, batch_number: int) -> bool:
        return not self._unfinished or min(self._unfinished) > batch_number

    def _finish(self, batch_numbers: list[int]) -> None:
        self._unfinished.difference_update(batch_numbers)
        still_waiting = []
        for waiter in self._waiters:
            if self._all_finished_up_to(waiter.batch_number):
                if not waiter.future.done():
                    waiter.future.set_result(None)
            else:
                still_waiting.append(waiter)
        self._waiters = still_waiting

    async def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued so far is written or dropped; False if `timeout` seconds pass first."""
        target = self._batches_queued
        if self._all_finished_up_to(target):
            return True
        waiter = _Waiter(target, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        if self._hurry is not None:
            self._hurry.set()  # no lingering while someone waits
        try:
            await asyncio.wait_for(asyncio.shield(waiter.future), timeout)
            return True
        except TimeoutError:
            return False
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    async def close(self, timeout: float = 5.0) -> None:
        """Write what is queued (at most `timeout` seconds; what is left is dropped and counted), then close
        the store. record() drops from now on."""
        self._closed = True
        if not await self.flush(timeout) and self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
            while self._pending:
                batch = self._pending.popleft()
                self._queued_activities -= len(batch.entries)
                self._give_up_at_close(batch)
                self._finish([batch.number])
            if self._dropped_at_close:
                # One line for the lot: a backlog of thousands of conversations must not flood the log.
                count = sum(self._dropped_at_close.values())
                self.dropped += count
                logger.warning(
                    "transcript: dropped %d activities of %d conversations: the recorder closed before they were "
                    "written; %d dropped since start",
                    count,
                    len(self._dropped_at_close),
                    self.dropped,
                )
        await self.store.close()


class RecentActivitiesReader(Protocol):
    async def latest_activities(self, conversation_id: str, count: int) -> list[dict[str, Any]]: ...


class HandoffTranscripts:
    """The transcript a handoff hands to a person (bot logic's TranscriptSource): what the recorder has
    written (after letting it write what it still holds), plus the turn's own activity, redacted as the
    transcripts are, without earlier handoff events (each carries a transcript of its own), and bounded:
    a channel refuses an activity much over 256 KB. The turn waits for it, briefly."""

    WAIT_SECONDS = 1.5
    MAX_ACTIVITIES = 50  # the latest ones
    READ_ACTIVITIES = 2 * MAX_ACTIVITIES  # read, then other channels' and earlier handoffs' are left out
    MAX_BYTES = 100_000

    def __init__(self, recorder: TranscriptRecorder | None, store: RecentActivitiesReader) -> None:
        self._recorder = recorder
        self._store = store

    async def transcript(self, activity: Activity) -> list[dict[str, Any]]:
        current = activity.serialize()
        recorded: list[dict[str, Any]] = []
        if self._recorder is not None:
            conversation_id = current.get("conversation", {}).get("id", "")
            try:
                await self._recorder.flush(self.WAIT_SECONDS)
                recorded = await asyncio.wait_for(
                    self._store.latest_activities(conversation_id, self.READ_ACTIVITIES), self.WAIT_SECONDS
                )
            except Exception as error:  # the person gets a shorter transcript; the handoff goes on
                logger.warning("transcript of %s unavailable for a handoff: %s", conversation_id, error)
            if self._recorder.redact_user_text:
                current = redact(current)
        same_channel = [a for a in recorded if a.get("channelId") in (None, current.get("channelId"))]
        activities = [a for a in same_channel if not str(a.get("name") or "").startswith("handoff.")]
        if not current.get("id") or all(a.get("id") != current["id"] for a in activities):
            activities.append(current)
        return _latest_within(activities[-self.MAX_ACTIVITIES :], self.MAX_BYTES)


def _latest_within(activities: list[dict[str, Any]], max_bytes: int) -> list[dict[str, Any]]:
    kept: list[dict[str, Any]] = []
    size = 0
    for activity in reversed(activities):
        size += len(json.dumps(activity, default=str))
        if size > max_bytes and kept:
            break
        kept.append(activity)
    return kept[::-1]
