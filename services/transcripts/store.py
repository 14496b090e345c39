"""Transcripts in Azure Table storage: the Bot Framework SDK's `TranscriptStore`, on `azure.data.tables.aio`.

Layout of the table (created on first use):

* One partition per conversation. PartitionKey: the conversation id, escaped (`escape_key`) so that
  any id is a valid key. Partitioning is by conversation id only, not by channel: conversation ids
  are unique per channel in practice, and a transcript is read by conversation; the channel id is a
  plain column, and `get_transcript_activities` / `delete_transcript` filter on it in memory.
* RowKey: `<ms since the epoch, 15 digits>-<the activity's id, escaped, or a random id>`, so a
  partition query returns the conversation in time order, and an activity delivered twice (same
  timestamp, same id) is one row: every write is an upsert.
* The activity's JSON (`activity.serialize()`) in `json`, `json1`, `json2`, ... (`parts` of them): a
  string property holds at most 64 KiB, an entity 1 MiB. An activity still too large loses its
  attachments' content (then its other payloads) to a marker and is flagged `trimmed`. Plain
  columns for people browsing the table: `type`, `fromId`, `fromRole`, `channelId`, `timestamp`.
* Retention index: partition `~index-YYYYMMDD` (an escaped conversation id never starts with `~`),
  one row per conversation with activities stamped that UTC day (RowKey: its escaped id; columns
  `conversationId`, `channelId`). Written once per (conversation, day) and process, before the
  activities. `cleanup` reads only the index partitions of days entirely before the cutoff, then
  for each conversation listed deletes its rows older than the cutoff (a RowKey range): its cost
  follows what it deletes, never the size of the table.

A `write` of up to three rows (a turn's message and replies, usually) is that many upserts sent at
once; a larger one is one transaction per 100 rows (the service's limit, and 4 MiB per transaction).
A failed write is retried whole, which upserts make harmless; a reader may see part of a write
that is still under way. Errors worth retrying (no connection, timeout, 408, 429, 5xx, the table
gone) are raised as `TranscriptStoreUnavailableError`; the table client itself does not retry, so
the caller decides (the recorder retries with backoff, a reader answers 503).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

# The SDK's interface (the app already imports botbuilder.core for its adapter); Table storage
# itself (azure.data.tables, about 0.1 s) is imported on first use.
from botbuilder.core.transcript_logger import PagedResult, TranscriptInfo, TranscriptStore
from botbuilder.schema import Activity

from services.queues.storage_clients import is_not_allowed_to_create, table_client
from services.settings import StorageConnection
from services.transcripts.recorder import (
    CleanupReport,
    TranscriptEntry,
    TranscriptPage,
    TranscriptStoreUnavailableError,
    timestamp_ms,
    transcript_entry,
)

if TYPE_CHECKING:
    from azure.data.tables.aio import TableClient

logger = logging.getLogger(__name__)

T = TypeVar("T")

INDEX_PREFIX = "~index-"  # + YYYYMMDD; sorts apart from conversations, whose keys never start with "~"
PAGE_SIZE = 20  # the SDK's stores return 20 activities or transcripts per page
TRANSACTION_ROWS = 100  # the service's limit per transaction
# Up to this many rows, one upsert each, sent at once: a transaction's multipart body costs more CPU
# (azure-core builds and parses it with the email package) than three plain requests.
SINGLE_UPSERT_ROWS = 3
TRANSACTION_BYTES = 3_000_000  # the service allows 4 MiB per transaction; JSON escaping adds some
CHUNK_UNITS = 30_000  # UTF-16 code units per string property (the limit is 64 KiB = 32,768 units)
MAX_JSON_UNITS = 450_000  # 900 KB of an entity's 1 MiB for the activity, the rest for keys and columns
MAX_KEY_UNITS = 400  # keys may hold 1 KiB (512 UTF-16 units); longer escaped ids are shortened with a hash
INDEX_DAYS_REMEMBERED = 3  # the (conversation, day) pairs this process has indexed, for its latest days
# ... and at most this many pairs in all (about 100 bytes each): past it the oldest day is forgotten first,
# then the current day's set starts again. Forgetting costs one repeated index upsert per conversation.
INDEX_PAIRS_REMEMBERED = 20_000
TRIMMED_MARKER = "[removed: the activity was too large to store]"
DEFAULT_TABLE_NAME = "transcripts"

# Characters Table keys may not hold (/ \ # ?, control characters U+0000-U+001F and U+007F-U+009F),
# and % itself so that escaping can be undone.
_ESCAPED_CHARACTERS = frozenset("/\\#?%") | {chr(code) for code in (*range(0x20), *range(0x7F, 0xA0))}


# --- keys --------------------------------------------------------------------------------------


def _escape(text: str) -> str:
    return "".join(
        "".join(f"%{byte:02X}" for byte in char.encode("utf-8")) if char in _ESCAPED_CHARACTERS else char
        for char in text
    )


def escape_key(conversation_id: str) -> str:
    """A valid Table key for any conversation id: forbidden characters and % become %XX (UTF-8 bytes),
    a leading ~ becomes %7E (so no conversation looks like the index). `unescape_key` undoes it.

    An id whose escaped form exceeds MAX_KEY_UNITS (ids are rarely over 200 characters) keeps its
    first 100 characters and ends with `%~` and a hash of the whole id: still unique and stable, but
    no longer reversible (`%~` marks it; escaping never produces it)."""
    escaped = _escape(conversation_id)
    if escaped.startswith("~"):
        escaped = "%7E" + escaped[1:]
    if _utf16_units(escaped) <= MAX_KEY_UNITS:
        return escaped
    digest = hashlib.sha256(conversation_id.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{escaped[:100]}%~{digest}"


def unescape_key(key: str) -> str:
    """The conversation id `escape_key` made `key` from (ValueError for a shortened, hashed key)."""
    from urllib.parse import unquote

    if "%~" in key:
        raise ValueError("a shortened key (an id too long for a Table key) cannot be turned back into its id")
    return unquote(key, errors="strict")


def row_key(entry: TranscriptEntry) -> str:
    """Time first (15 digits of ms: string order is time order), then what makes the row one activity."""
    discriminator = escape_key(entry.activity_id) if entry.activity_id else uuid.uuid4().hex
    return f"{entry.timestamp_ms:015d}-{discriminator}"


def _utc_day(milliseconds: int) -> str:
    return datetime.fromtimestamp(milliseconds / 1000, UTC).strftime("%Y%m%d")


def index_partition(day: str) -> str:
    return INDEX_PREFIX + day


# --- entities ----------------------------------------------------------------------------------


def _utf16_units(text: str) -> int:
    """The length the Table service counts (UTF-16): characters beyond the BMP count twice."""
    return len(text) if text.isascii() else len(text.encode("utf-16-le")) // 2


def _split_utf16(text: str, units: int) -> list[str]:
    """`text` in pieces of at most `units` UTF-16 code units, never splitting a surrogate pair."""
    if _utf16_units(text) <= units:
        return [text]
    if text.isascii():
        return [text[start : start + units] for start in range(0, len(text), units)]
    data = text.encode("utf-16-le")
    pieces = []
    start = 0
    while start < len(data):
        end = min(start + 2 * units, len(data))
        if end < len(data) and 0xD8 <= data[end - 1] <= 0xDB:  # ends on a high surrogate: keep the pair whole
            end -= 2
        pieces.append(data[start:end].decode("utf-16-le"))
        start = end
    return pieces


def _dumps(activity: Mapping[str, Any]) -> str:
    return json.dumps(activity, ensure_ascii=False, separators=(",", ":"))


def _fit(activity: dict[str, Any]) -> tuple[str, bool]:
    """The activity's JSON, made to fit in one entity: (json, trimmed). First the attachments' content
    goes, then every other payload (value, channel data, entities, suggested actions, long text)."""
    text = _dumps(activity)
    if _utf16_units(text) <= MAX_JSON_UNITS:
        return text, False
    smaller = dict(activity)
    attachments = smaller.get("attachments")
    if isinstance(attachments, list):
        smaller["attachments"] = [_without_content(attachment) for attachment in attachments]
        text = _dumps(smaller)
        if _utf16_units(text) <= MAX_JSON_UNITS:
            return text, True
    keep: tuple[str, ...] = ("type", "id", "timestamp", "localTimestamp", "channelId", "from", "recipient")
    keep += ("conversation",)
    keep += ("replyToId", "name", "attachmentLayout", "textFormat", "locale")
    minimal: dict[str, Any] = {key: smaller[key] for key in keep if key in smaller}
    minimal["text"] = str(smaller.get("text") or "")[:10_000] + (" " if smaller.get("text") else "") + TRIMMED_MARKER
    text = _dumps(minimal)
    if _utf16_units(text) <= MAX_JSON_UNITS:
        return text, True
    # Only the keys' own fields (ids, names) can be this big: keep the bare minimum.
    return _dumps({"type": activity.get("type"), "id": activity.get("id"), "text": TRIMMED_MARKER}), True


def _without_content(attachment: Any) -> Any:
    if not isinstance(attachment, Mapping):
        return attachment
    trimmed = dict(attachment)
    if "content" in trimmed:
        trimmed["content"] = TRIMMED_MARKER
    url = trimmed.get("contentUrl")
    if isinstance(url, str) and url.startswith("data:"):  # inline data is content too
        trimmed["contentUrl"] = TRIMMED_MARKER
    return trimmed


def activity_entity(partition_key: str, entry: TranscriptEntry) -> dict[str, Any]:
    text, trimmed = _fit(entry.activity)
    chunks = _split_utf16(text, CHUNK_UNITS)
    entity: dict[str, Any] = {
        "PartitionKey": partition_key,
        "RowKey": row_key(entry),
        "type": str(entry.activity.get("type") or ""),
        "fromId": str(entry.sender.get("id") or ""),
        "fromRole": str(entry.sender.get("role") or ""),
        "channelId": entry.channel_id or "",
        "timestamp": datetime.fromtimestamp(entry.timestamp_ms / 1000, UTC),
        "parts": len(chunks),
    }
    for number, chunk in enumerate(chunks):
        entity[_part_name(number)] = chunk
    if trimmed:
        entity["trimmed"] = True
    return entity


def _part_name(number: int) -> str:
    return "json" if number == 0 else f"json{number}"


def entity_activity(entity: Mapping[str, Any]) -> dict[str, Any] | None:
    """The serialised activity a row holds (None, logged, for a row that is not one)."""
    try:
        parts = int(entity.get("parts") or 1)
        activity = json.loads("".join(entity[_part_name(number)] for number in range(parts)))
    except (KeyError, TypeError, ValueError):
        logger.warning(
            "transcript: row %s/%s holds no readable activity", entity.get("PartitionKey"), entity.get("RowKey")
        )
        return None
    return activity if isinstance(activity, dict) else None


def _entity_bytes(entity: Mapping[str, Any]) -> int:
    """About what the entity weighs in a transaction (strings as UTF-16, as the service counts them)."""
    return sum(2 * _utf16_units(value) + 2 * len(name) + 8 for name, value in entity.items() if isinstance(value, str))


def _transactions(entities: Iterable[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Groups of at most 100 rows and about 3 MB; a row key appears once (the service refuses a
    transaction naming a row twice; the last version wins, as consecutive upserts would)."""
    unique: dict[str, dict[str, Any]] = {}
    for entity in entities:
        unique[entity["RowKey"]] = entity
    groups: list[list[dict[str, Any]]] = []
    size = 0
    for entity in unique.values():
        weight = _entity_bytes(entity)
        if not groups or len(groups[-1]) >= TRANSACTION_ROWS or size + weight > TRANSACTION_BYTES:
            groups.append([])
            size = 0
        groups[-1].append(entity)
        size += weight
    return groups


# --- errors ------------------------------------------------------------------------------------


def _is_table_missing(error: BaseException) -> bool:
    from azure.core.exceptions import HttpResponseError

    if not isinstance(error, HttpResponseError) or error.status_code != 404:
        return False
    return "TableNotFound" in f"{getattr(error, 'error_code', '')} {error.message}"


def _is_transient(error: BaseException) -> bool:
    """Worth retrying: no connection, a timeout, 408, 429, 5xx, or the table deleted under us (it is
    created again on the next try)."""
    from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

    if isinstance(error, ServiceRequestError | ServiceResponseError | OSError):
        return True
    if isinstance(error, HttpResponseError):
        status = error.status_code
        return status is None or status in (408, 429) or status >= 500 or _is_table_missing(error)
    return False


def _describe(error: BaseException) -> str:
    """One line for a log or a 503: the error's kind, status and first line, never a stack trace."""
    status = getattr(error, "status_code", None)
    message = str(error).strip()
    first_line = message.splitlines()[0][:200] if message else ""
    return type(error).__name__ + (f" {status}" if status else "") + (f": {first_line}" if first_line else "")


# --- the store ---------------------------------------------------------------------------------


async def _close(client: TableClient, credential: Any) -> None:
    await client.close()
    if credential is not None:
        await credential.close()


class TableTranscriptStore(TranscriptStore):
    """Transcripts in one Azure Table (see the module's docstring). Built from the app's
    StorageConnection (or a connection string) and a table name; nothing is created or connected
    until the first call, which creates the table if it is missing."""

    def __init__(
        self,
        connection: StorageConnection | str,
        table_name: str = DEFAULT_TABLE_NAME,
        *,
        request_timeout: float = 10.0,
        page_size: int = PAGE_SIZE,
    ) -> None:
        self._connection = StorageConnection.of(connection)
        self.table_name = table_name
        self._request_timeout = request_timeout
        self.page_size = page_size
        self._client: TableClient | None = None
        self._credential: Any = None
        self._client_lock = asyncio.Lock()
        # (day -> escaped conversation ids) this process has written an index row for: written once.
        self._indexed: dict[str, set[str]] = {}

    # --- the table ---------------------------------------------------------------------------

    async def _table(self) -> TableClient:
        if self._client is not None:
            return self._client
        async with self._client_lock:
            if self._client is None:
                from azure.core.exceptions import HttpResponseError, ResourceExistsError

                client, credential = table_client(
                    self._connection,
                    self.table_name,
                    # No retries inside the client: the recorder retries writes with its own backoff,
                    # and a reader would rather answer 503 at once than hang on a retry schedule.
                    retry_total=0,
                    connection_timeout=min(5.0, self._request_timeout),
                    read_timeout=self._request_timeout,
                )
                try:
                    await client.create_table()
                except ResourceExistsError:
                    pass
                except HttpResponseError as error:
                    if not is_not_allowed_to_create(error):
                        await _close(client, credential)
                        raise
                except BaseException:
                    await _close(client, credential)
                    raise
                self._client, self._credential = client, credential
        return self._client

    async def _call(self, operation: Callable[[TableClient], Awaitable[T]]) -> T:
        """Run `operation` on the table; transient failures become TranscriptStoreUnavailableError."""
        try:
            return await operation(await self._table())
        except Exception as error:
            raise await self._translated(error) from error

    async def _translated(self, error: Exception) -> Exception:
        if not _is_transient(error):
            return error
        if _is_table_missing(error):
            await self._forget_client()  # the next call creates the table again,
            self._indexed.clear()  # and its index rows
        return TranscriptStoreUnavailableError(_describe(error))

    async def _forget_client(self) -> None:
        async with self._client_lock:
            client, self._client = self._client, None
            credential, self._credential = self._credential, None
        if client is not None:
            await _close(client, credential)

    async def _query(
        self,
        query_filter: str,
        parameters: dict[str, Any],
        select: list[str] | None = None,
        results_per_page: int | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """Entities matching the filter, page by page (each page one request, of at most
        `results_per_page` rows, else the service's 1,000); errors as in `_call`."""
        try:
            table = await self._table()
        except Exception as error:
            raise await self._translated(error) from error
        pages = table.query_entities(
            query_filter, parameters=parameters, select=select, results_per_page=results_per_page
        ).by_page()
        while True:
            try:
                # The whole page before the caller sees a row: deleting what it yields cannot disturb it.
                page = await anext(pages)
                rows = [dict(row) async for row in page]
            except StopAsyncIteration:
                return
            except Exception as error:
                raise await self._translated(error) from error
            for row in rows:
                yield row

    async def close(self) -> None:
        await self._forget_client()

    # --- writing -----------------------------------------------------------------------------

    async def write(self, conversation_id: str, entries: Sequence[TranscriptEntry]) -> None:
        """Upsert the activities of one conversation: its index rows first (so cleanup can always find
        what is written), then the activities, one transaction per 100 rows."""
        if not entries:
            return
        partition_key = escape_key(conversation_id)
        await self._write_index(conversation_id, partition_key, entries)
        from azure.data.tables import UpdateMode

        for group in _transactions(activity_entity(partition_key, entry) for entry in entries):
            if len(group) <= SINGLE_UPSERT_ROWS:
                await asyncio.gather(
                    *(
                        self._call(lambda table, row=entity: table.upsert_entity(row, mode=UpdateMode.REPLACE))  # type: ignore[misc]  # mypy infers no lambda with defaults
                        for entity in group
                    )
                )
                continue
            operations = [("upsert", entity, {"mode": UpdateMode.REPLACE}) for entity in group]
            await self._call(lambda table, operations=operations: table.submit_transaction(operations))  # type: ignore[misc]  # mypy infers no lambda with defaults

    async def _write_index(self, conversation_id: str, partition_key: str, entries: Sequence[TranscriptEntry]) -> None:
        days = {_utc_day(entry.timestamp_ms) for entry in entries}
        channel_id = next((entry.channel_id for entry in entries if entry.channel_id), "")
        for day in sorted(days):
            if partition_key in self._indexed.get(day, ()):
                continue
            index_row = {
                "PartitionKey": index_partition(day),
                "RowKey": partition_key,
                "conversationId": conversation_id,
                "channelId": channel_id,
            }
            await self._call(lambda table, row=index_row: table.upsert_entity(row))  # type: ignore[misc]  # mypy infers no lambda with defaults
            self._remember_indexed(day, partition_key)

    def _remember_indexed(self, day: str, partition_key: str) -> None:
        self._indexed.setdefault(day, set()).add(partition_key)
        for old_day in sorted(self._indexed)[:-INDEX_DAYS_REMEMBERED]:  # memory stays bounded
            del self._indexed[old_day]
        while sum(map(len, self._indexed.values())) > INDEX_PAIRS_REMEMBERED:
            oldest = min(self._indexed)
            if len(self._indexed) > 1 or oldest != day:
                del self._indexed[oldest]
            else:
                self._indexed[day] = {partition_key}

    async def log_activity(self, activity: Activity) -> None:
        """The SDK's TranscriptLogger: write one activity now (the app's recorder queues instead)."""
        if activity is None:
            raise TypeError("activity cannot be None for log_activity()")
        if activity.conversation is None or not activity.conversation.id:
            raise TypeError("log_activity() needs an activity with a conversation id")
        await self.write(activity.conversation.id, [transcript_entry(activity, _now_ms)])

    # --- reading -----------------------------------------------------------------------------

    async def read_activities(
        self,
        conversation_id: str,
        *,
        channel_id: str | None = None,
        after_row_key: str | None = None,
        start_ms: int | None = None,
        limit: int | None = None,
    ) -> list[tuple[str, dict[str, Any]]]:
        """(row key, serialised activity) of a conversation, in order: those after `after_row_key`, from
        `start_ms` on, of `channel_id` only (filtered here: see the module's docstring), at most `limit`."""
        query = "PartitionKey eq @pk"
        parameters: dict[str, Any] = {"pk": escape_key(conversation_id)}
        if after_row_key is not None:
            query += " and RowKey gt @after"
            parameters["after"] = after_row_key
        if start_ms is not None:
            query += " and RowKey ge @start"
            parameters["start"] = f"{max(0, start_ms):015d}"
        found: list[tuple[str, dict[str, Any]]] = []
        async for row in self._query(query, parameters):
            if channel_id is not None and row.get("channelId") not in (channel_id, "", None):
                continue
            activity = entity_activity(row)
            if activity is not None:
                found.append((row["RowKey"], activity))
                if limit is not None and len(found) >= limit:
                    break
        return found

    async def conversation_activities(self, conversation_id: str, limit: int | None = None) -> list[dict[str, Any]]:
        """Every stored activity of the conversation (serialised), in order; [] when there are none.
        Unbounded without `limit`: readers of whole conversations page instead (`read_page`)."""
        return [activity for _, activity in await self.read_activities(conversation_id, limit=limit)]

    async def read_page(
        self,
        conversation_id: str,
        page_size: int,
        *,
        after_row_key: str | None = None,
        max_bytes: int | None = None,
    ) -> TranscriptPage:
        """One page of the conversation's activities (serialised), in order, after `after_row_key`:
        at most `page_size`, and stopping before the activity that would take the page's JSON
        (`json.dumps` of the list, as an HTTP answer sends it) past `max_bytes` (a page always holds
        at least one). One request to the table service, for page_size + 1 rows (the extra one tells
        whether more remain): never the whole partition."""
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        query = "PartitionKey eq @pk"
        parameters: dict[str, Any] = {"pk": escape_key(conversation_id)}
        if after_row_key is not None:
            query += " and RowKey gt @after"
            parameters["after"] = after_row_key
        try:
            table = await self._table()
            pages = table.query_entities(query, parameters=parameters, results_per_page=page_size + 1).by_page()
            try:
                page = await anext(pages)
                rows = [dict(row) async for row in page]
            except StopAsyncIteration:
                rows = []
            # The service may end a page early (its own limits) and say so with a continuation.
            service_has_more = getattr(pages, "continuation_token", None) is not None
        except Exception as error:
            raise await self._translated(error) from error
        activities: list[dict[str, Any]] = []
        size = 2  # "[]"
        last_row_key: str | None = None
        for row in rows[:page_size]:
            activity = entity_activity(row)
            if activity is not None:
                weight = len(json.dumps(activity).encode("utf-8")) + (2 if activities else 0)  # ", " between items
                if max_bytes is not None and activities and size + weight > max_bytes:
                    return TranscriptPage(activities, last_row_key, size)
                activities.append(activity)
                size += weight
            last_row_key = row["RowKey"]
        more = len(rows) > page_size or (service_has_more and bool(rows))
        return TranscriptPage(activities, last_row_key if more else None, size)

    async def latest_activities(self, conversation_id: str, count: int) -> list[dict[str, Any]]:
        """The conversation's last `count` activities, in order. Reads the partition in pages of 100
        rows and keeps only `count`: memory stays bounded, whatever the conversation's length."""
        latest: deque[dict[str, Any]] = deque(maxlen=count)
        async for row in self._query("PartitionKey eq @pk", {"pk": escape_key(conversation_id)}, None, 100):
            activity = entity_activity(row)
            if activity is not None:
                latest.append(activity)
        return list(latest)

    async def get_transcript_activities(
        self,
        channel_id: str,
        conversation_id: str,
        continuation_token: str | None = None,
        start_date: datetime | None = None,
    ) -> PagedResult:
        """A page of the conversation's activities (Activity objects), oldest first; the token is the
        last row key of the page (pass it back for the next page)."""
        if not channel_id:
            raise TypeError("Missing channel_id")
        if not conversation_id:
            raise TypeError("Missing conversation_id")
        start_ms = timestamp_ms(start_date) if start_date is not None else None  # datetime.min: from 0
        rows = await self.read_activities(
            conversation_id,
            channel_id=channel_id,
            after_row_key=continuation_token or None,
            start_ms=start_ms,
            limit=self.page_size + 1,  # one more tells whether there is a next page
        )
        result = PagedResult()
        page = rows[: self.page_size]
        result.items = [Activity().deserialize(activity) for _, activity in page]
        result.continuation_token = page[-1][0] if len(rows) > self.page_size else None  # type: ignore[assignment]
        return result

    async def list_transcripts(self, channel_id: str, continuation_token: str | None = None) -> PagedResult:
        """Conversations of the channel that still have an index row, oldest first (from the retention
        index: one row per conversation and day, so this reads every index row, not every activity).
        The token is the number of transcripts already returned."""
        if not channel_id:
            raise TypeError("Missing channel_id")
        first_day: dict[str, tuple[str, str]] = {}  # escaped id -> (day, conversation id)
        async for row in self._query(
            "PartitionKey ge @first and PartitionKey lt @end",
            {"first": INDEX_PREFIX, "end": INDEX_PREFIX + "~"},
            ["PartitionKey", "RowKey", "conversationId", "channelId"],
        ):
            if row.get("channelId") != channel_id:
                continue
            day = row["PartitionKey"][len(INDEX_PREFIX) :]
            known = first_day.get(row["RowKey"])
            if known is None or day < known[0]:
                first_day[row["RowKey"]] = (day, str(row.get("conversationId") or row["RowKey"]))
        ordered = sorted(first_day.values())
        offset = int(continuation_token) if continuation_token else 0
        page = ordered[offset : offset + self.page_size]
        result = PagedResult()
        result.items = [
            TranscriptInfo(channel_id, datetime.strptime(day, "%Y%m%d").replace(tzinfo=UTC), conversation)
            for day, conversation in page
        ]
        more = offset + self.page_size < len(ordered)
        result.continuation_token = str(offset + self.page_size) if more else None  # type: ignore[assignment]
        return result

    # --- deleting ----------------------------------------------------------------------------

    async def delete_transcript(self, channel_id: str, conversation_id: str) -> None:
        """Delete the conversation's activities of that channel, and its index rows."""
        if not channel_id:
            raise TypeError("channel_id should not be None")
        if not conversation_id:
            raise TypeError("conversation_id should not be None")
        partition_key = escape_key(conversation_id)
        rows = self._query("PartitionKey eq @pk", {"pk": partition_key}, ["PartitionKey", "RowKey", "channelId"])
        await self._delete_rows(row async for row in rows if row.get("channelId") in (channel_id, "", None))
        index_rows = self._query(
            "PartitionKey ge @first and PartitionKey lt @end and RowKey eq @pk",
            {"first": INDEX_PREFIX, "end": INDEX_PREFIX + "~", "pk": partition_key},
            ["PartitionKey", "RowKey"],
        )
        await self._delete_rows(row async for row in index_rows)
        for conversations in self._indexed.values():
            conversations.discard(partition_key)

    async def _delete_rows(self, rows: AsyncIterator[Mapping[str, Any]]) -> int:
        """Delete rows (of one partition per transaction) in transactions of up to 100; returns how many."""
        deleted = 0
        group: list[tuple[str, str]] = []
        async for row in rows:
            if group and (len(group) >= TRANSACTION_ROWS or group[0][0] != row["PartitionKey"]):
                deleted += await self._delete_group(group)
                group = []
            group.append((row["PartitionKey"], row["RowKey"]))
        if group:
            deleted += await self._delete_group(group)
        return deleted

    async def _delete_group(self, keys: list[tuple[str, str]]) -> int:
        from azure.core.exceptions import ResourceNotFoundError
        from azure.data.tables import TableTransactionError

        operations = [("delete", {"PartitionKey": partition, "RowKey": row}) for partition, row in keys]
        try:
            await self._call(lambda table: table.submit_transaction(operations))
        except (TableTransactionError, ResourceNotFoundError) as error:
            if getattr(error, "status_code", None) != 404:
                raise
            # A row went meanwhile (another cleanup): one missing row fails the whole transaction,
            # while delete_entity ignores a missing row.
            for partition, row in keys:
                await self._call(lambda table, p=partition, r=row: table.delete_entity(p, r))  # type: ignore[misc]  # mypy infers no lambda with defaults
        return len(keys)

    async def cleanup(self, now: float, retention_days: int) -> CleanupReport:
        """Delete the activities older than `retention_days` days before `now` (seconds since the epoch).

        Reads only the index partitions of days entirely before the cutoff (a PartitionKey range);
        for each conversation listed there, deletes its rows older than the cutoff (a RowKey range in
        its partition: newer rows stay), then the index row."""
        if retention_days < 0:
            raise ValueError("retention_days must be 0 or more")
        cutoff_ms = int((now - retention_days * 86_400) * 1000)
        report = CleanupReport()
        touched: set[str] = set()
        index_rows = self._query(
            "PartitionKey ge @first and PartitionKey lt @cutoff",
            {"first": INDEX_PREFIX, "cutoff": index_partition(_utc_day(cutoff_ms))},
            ["PartitionKey", "RowKey"],
        )
        async for index_row in index_rows:
            partition_key = index_row["RowKey"]
            old_rows = self._query(
                "PartitionKey eq @pk and RowKey lt @cutoff",
                {"pk": partition_key, "cutoff": f"{cutoff_ms:015d}"},
                ["PartitionKey", "RowKey"],
            )
            deleted = await self._delete_rows(old_rows)
            if deleted:
                report.deleted_activities += deleted
                touched.add(partition_key)
            await self._call(lambda table, row=index_row: table.delete_entity(row["PartitionKey"], row["RowKey"]))  # type: ignore[misc]  # mypy infers no lambda with defaults
            report.index_rows_removed += 1
            for conversations in self._indexed.values():
                conversations.discard(partition_key)  # a late activity of that day is indexed again
        report.conversations_touched = len(touched)
        return report


def _now_ms() -> int:
    return int(time.time() * 1000)
