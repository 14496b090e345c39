"""Reading a conversation's transcript (an HTTP function) and deleting old transcripts (a timer).

`handle_get_transcript` answers with a page of the Bot Framework `.transcript` file of a conversation
(a JSON array of activities, oldest first, which the Bot Framework Emulator opens), as an attachment.
Transcripts hold what users wrote: the HTTP function that calls it must not be anonymous.

Paged, so that a long conversation costs neither the app's memory nor one huge answer:
`?pageSize=N` (default 100, at most 500) activities a page, and a page stops early before the
activity that would take its JSON past 1 MB. When more remain, the answer carries the token for the
next page in the `X-Continuation-Token` header (and a `Link: <...>; rel="next"`); pass it back as
`?continuationToken=...`. The store reads one page of rows from Table storage per request.

| situation | status |
|---|---|
| conversation id empty, over 256 characters, or holding a control character | 400, naming the problem |
| `pageSize` not a whole number from 1 to 500, or a `continuationToken` this endpoint did not give | 400, naming it |
| transcripts turned off (TranscriptsEnabled=false) | 404, saying so |
| nothing stored for the conversation (never recorded, or past the retention) | 404, naming both |
| the table service cannot be reached | 503 with Retry-After, in plain words |
| otherwise | 200, the `.transcript` file |

`handle_transcript_cleanup` deletes what is older than the retention (services/transcripts/store.py:
its cost follows what it deletes) and logs what it did.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote, urlencode

from bot_logic.clock import Clock
from handlers.http_types import HttpResponseData, error
from services.transcripts.recorder import (
    CleanupReport,
    TranscriptPage,
    TranscriptStoreUnavailableError,
)

logger = logging.getLogger(__name__)

MAX_CONVERSATION_ID_LENGTH = 256
RETRY_AFTER_SECONDS = 30
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 500
MAX_PAGE_BYTES = 1_000_000  # a page stops before the activity that would take its JSON past this
CONTINUATION_HEADER = "X-Continuation-Token"
_TOKEN_PREFIX = "t1."  # a version, so the token's form can change without misreading old ones
_ROW_KEY = re.compile(r"^\d{15}-[^\x00-\x1f]{1,1100}$")  # services/transcripts/store.py row_key
MAX_TOKEN_LENGTH = 2000


class TranscriptPageReader(Protocol):
    async def read_page(
        self, conversation_id: str, page_size: int, *, after_row_key: str | None = None, max_bytes: int | None = None
    ) -> TranscriptPage: ...


class TranscriptCleaner(Protocol):
    async def cleanup(self, now: float, retention_days: int) -> CleanupReport: ...


@dataclass
class TranscriptReadDependencies:
    store: TranscriptPageReader  # TableTranscriptStore
    enabled: bool  # TranscriptsEnabled
    retention_days: int  # TranscriptRetentionDays, for the 404's explanation


@dataclass
class TranscriptCleanupDependencies:
    transcripts: TranscriptCleaner  # TableTranscriptStore
    retention_days: int  # TranscriptRetentionDays
    clock: Clock


def conversation_id_problem(conversation_id: str) -> str | None:
    """What is wrong with a conversation id given in a request, in plain words; None if nothing."""
    if not conversation_id:
        return "the conversation id is empty"
    if len(conversation_id) > MAX_CONVERSATION_ID_LENGTH:
        return (
            f"the conversation id is {len(conversation_id)} characters long; "
            f"at most {MAX_CONVERSATION_ID_LENGTH} are accepted"
        )
    for position, char in enumerate(conversation_id):
        if unicodedata.category(char) == "Cc":
            return f"the conversation id holds a control character (U+{ord(char):04X} at position {position})"
    return None


class InvalidPageRequest(ValueError):
    """A query parameter that is not acceptable; the message names it."""


@dataclass(frozen=True)
class PageRequest:
    page_size: int
    after_row_key: str | None


def continuation_token(row_key: str) -> str:
    """An opaque token for "the page after this row" (URL-safe)."""
    return _TOKEN_PREFIX + base64.urlsafe_b64encode(row_key.encode("utf-8")).decode("ascii").rstrip("=")


def page_request(query: Mapping[str, str]) -> PageRequest:
    """pageSize and continuationToken from the query string (other parameters, such as the function
    key's `code`, are not this handler's); raises InvalidPageRequest naming the bad one."""
    raw_size = query.get("pageSize")
    page_size = DEFAULT_PAGE_SIZE
    if raw_size is not None:
        if not raw_size.isascii() or not raw_size.isdigit() or not 1 <= int(raw_size) <= MAX_PAGE_SIZE:
            raise InvalidPageRequest(f"pageSize must be a whole number from 1 to {MAX_PAGE_SIZE}")
        page_size = int(raw_size)
    token = query.get("continuationToken")
    if token is None:
        return PageRequest(page_size, None)
    return PageRequest(page_size, _row_key_of(token))


def _row_key_of(token: str) -> str:
    problem = InvalidPageRequest(
        "continuationToken is not one this endpoint gave: pass back the X-Continuation-Token of the previous page"
    )
    if len(token) > MAX_TOKEN_LENGTH or not token.startswith(_TOKEN_PREFIX):
        raise problem
    encoded = token[len(_TOKEN_PREFIX) :]
    try:
        row_key = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode("utf-8")
    except (binascii.Error, ValueError):
        raise problem from None
    if not _ROW_KEY.match(row_key):
        raise problem
    return row_key


def transcript_filename(conversation_id: str) -> str:
    """A file name safe in any header and file system: the id's letters, digits, '.', '-' and '_'."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", conversation_id).strip("._")[:100]
    return f"{stem or 'conversation'}.transcript"


async def handle_get_transcript(
    conversation_id: str, deps: TranscriptReadDependencies, query: Mapping[str, str] | None = None
) -> HttpResponseData:
    problem = conversation_id_problem(conversation_id)
    if problem is not None:
        return error(400, "InvalidConversationId", problem)
    try:
        request = page_request(query or {})
    except InvalidPageRequest as invalid:
        return error(400, "InvalidPageRequest", str(invalid))
    if not deps.enabled:
        return error(404, "TranscriptsDisabled", "transcripts are turned off (TranscriptsEnabled=false)")
    try:
        page = await deps.store.read_page(
            conversation_id, request.page_size, after_row_key=request.after_row_key, max_bytes=MAX_PAGE_BYTES
        )
    except TranscriptStoreUnavailableError as unavailable:
        logger.warning(
            "transcript of conversation %s: the table service is unavailable: %s", conversation_id, unavailable
        )
        return error(
            503,
            "TranscriptStoreUnavailable",
            "the transcript storage cannot be reached right now; try again in a minute",
            {"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    except Exception:
        logger.exception("transcript of conversation %s could not be read", conversation_id)
        return error(500, "TranscriptReadFailed", "the transcript could not be read; the error is logged")
    if not page.activities and page.next_after is None and request.after_row_key is None:
        return error(
            404,
            "TranscriptNotFound",
            f"no transcript is stored for conversation {conversation_id!r}: nothing was recorded for it, "
            f"or it is older than the {deps.retention_days} days transcripts are kept (TranscriptRetentionDays)",
        )
    headers = {"Content-Disposition": f'attachment; filename="{transcript_filename(conversation_id)}"'}
    if page.next_after is not None:
        token = continuation_token(page.next_after)
        headers[CONTINUATION_HEADER] = token
        next_query = urlencode({"pageSize": request.page_size, "continuationToken": token})
        headers["Link"] = f'</api/transcripts/{quote(conversation_id, safe="")}?{next_query}>; rel="next"'
    return HttpResponseData(200, page.activities, headers)


async def handle_transcript_cleanup(deps: TranscriptCleanupDependencies) -> CleanupReport:
    """Delete transcripts older than the retention. An unreachable table service ends the run quietly
    (a WARNING): the next run carries on where this one stopped."""
    try:
        report = await deps.transcripts.cleanup(deps.clock(), deps.retention_days)
    except TranscriptStoreUnavailableError as unavailable:
        logger.warning("transcript cleanup stopped, the table service is unavailable: %s", unavailable)
        return CleanupReport()
    if report.deleted_activities or report.index_rows_removed:
        logger.info(
            "transcript cleanup: deleted %d activities of %d conversations older than %d days; removed %d index rows",
            report.deleted_activities,
            report.conversations_touched,
            deps.retention_days,
            report.index_rows_removed,
        )
    return report
