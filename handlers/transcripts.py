"""Reading a conversation's transcript (an HTTP function) and deleting old transcripts (a timer).

`handle_get_transcript` answers with the Bot Framework `.transcript` file of a conversation (a JSON
array of activities, oldest first, which the Bot Framework Emulator opens), as an attachment.
Transcripts hold what users wrote: the HTTP function that calls it must not be anonymous.

| situation | status |
|---|---|
| conversation id empty, over 256 characters, or holding a control character | 400, naming the problem |
| transcripts turned off (TranscriptsEnabled=false) | 404, saying so |
| nothing stored for the conversation (never recorded, or past the retention) | 404, naming both |
| the table service cannot be reached | 503 with Retry-After, in plain words |
| otherwise | 200, the `.transcript` file |

`handle_transcript_cleanup` deletes what is older than the retention (services/transcript_store.py:
its cost follows what it deletes) and logs what it did.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Protocol

from handlers.http_types import HttpResponseData, error
from services.transcripts import CleanupReport, Clock, TranscriptStoreUnavailableError, transcript_file

logger = logging.getLogger(__name__)

MAX_CONVERSATION_ID_LENGTH = 256
RETRY_AFTER_SECONDS = 30


class TranscriptReader(Protocol):
    async def conversation_activities(self, conversation_id: str) -> list[dict[str, Any]]: ...


class TranscriptCleaner(Protocol):
    async def cleanup(self, now: float, retention_days: int) -> CleanupReport: ...


@dataclass
class TranscriptReadDependencies:
    store: TranscriptReader  # TableTranscriptStore
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


def transcript_filename(conversation_id: str) -> str:
    """A file name safe in any header and file system: the id's letters, digits, '.', '-' and '_'."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", conversation_id).strip("._")[:100]
    return f"{stem or 'conversation'}.transcript"


async def handle_get_transcript(conversation_id: str, deps: TranscriptReadDependencies) -> HttpResponseData:
    problem = conversation_id_problem(conversation_id)
    if problem is not None:
        return error(400, "InvalidConversationId", problem)
    if not deps.enabled:
        return error(404, "TranscriptsDisabled", "transcripts are turned off (TranscriptsEnabled=false)")
    try:
        activities = await deps.store.conversation_activities(conversation_id)
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
    if not activities:
        return error(
            404,
            "TranscriptNotFound",
            f"no transcript is stored for conversation {conversation_id!r}: nothing was recorded for it, "
            f"or it is older than the {deps.retention_days} days transcripts are kept (TranscriptRetentionDays)",
        )
    return HttpResponseData(
        200,
        transcript_file(activities),
        {"Content-Disposition": f'attachment; filename="{transcript_filename(conversation_id)}"'},
    )


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
