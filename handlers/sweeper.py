"""The timer-triggered sweeper: expire idle conversations and tell their users; tell users whose
operation passed its deadline without a result (lost by a crash, say) as soon as it has.

Each run asks Cosmos DB for conversations whose `expiresAt` has passed (an indexed range
query, so its cost follows the number of expired conversations, not all of them), clears
each with a conditional write through the same storage the turns use (If-Match its etag:
a conversation touched since the query is left alone), and only then notifies the user.
Overlapping runs race on the same etag and only one wins, so each conversation is cleared
once and notified at most once.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bot_logic.clock import Clock
from bot_logic.conversation_record import RECORD_PROPERTY
from bot_logic.expiry import is_expired
from bot_logic.pending_operation import describe_duration, timed_out_text
from services.cosmos_storage import ETAG_KEY, CosmosStorage, StateConflictError

logger = logging.getLogger(__name__)

EXPIRED_QUERY = "SELECT TOP @batch * FROM c WHERE c.expiresAt <= @now ORDER BY c.expiresAt"

Notify = Callable[[dict[str, Any], list[str]], Awaitable[None]]  # (conversation reference, texts)


@dataclass
class SweeperDependencies:
    conversations: CosmosStorage
    notify: Notify
    clock: Clock
    expire_after_seconds: int
    notice_enabled: bool
    notice_text: str
    batch_size: int = 100
    max_batches: int = 20  # bounds one run; the next run continues


@dataclass
class SweepReport:
    expired: int = 0
    notified: int = 0
    timed_out: int = 0  # operations past their deadline in conversations that are still active
    skipped: int = 0  # touched or cleared by someone else since the query


def notice_texts(record: dict[str, Any], deps: SweeperDependencies) -> list[str]:
    texts = []
    pending = record.get("pendingOperation")
    if pending and not pending.get("timeoutNotified"):
        texts.append(timed_out_text(pending))
    if deps.notice_enabled:
        minutes = max(1, round(deps.expire_after_seconds / 60))
        texts.append(deps.notice_text.format(minutes=minutes, duration=describe_duration(deps.expire_after_seconds)))
    return texts


async def handle_sweep(deps: SweeperDependencies) -> SweepReport:
    report = SweepReport()
    for _ in range(deps.max_batches):
        now = deps.clock()
        parameters = [{"name": "@batch", "value": deps.batch_size}, {"name": "@now", "value": now}]
        batch = await deps.conversations.query(EXPIRED_QUERY, parameters)
        for key, state in batch:
            await sweep_conversation(key, state, now, deps, report)
        if len(batch) < deps.batch_size:
            break
    if report.expired or report.timed_out or report.skipped:
        logger.info(
            "sweep: %d expired, %d operations timed out, %d notified, %d skipped",
            report.expired,
            report.timed_out,
            report.notified,
            report.skipped,
        )
    return report


async def sweep_conversation(
    key: str, state: dict[str, Any], now: float, deps: SweeperDependencies, report: SweepReport
) -> None:
    """Clear an expired conversation, or only mark its overdue operation as told; then tell the user."""
    record = dict(state.get(RECORD_PROPERTY) or {})
    pending = record.get("pendingOperation")
    overdue_only = bool(pending) and not is_expired(record, deps.expire_after_seconds, now)
    if overdue_only:
        # Still active: the conversation stays, its overdue operation is told once.
        state[RECORD_PROPERTY] = {**record, "pendingOperation": {**pending, "timeoutNotified": True}}
        cleared = state
        texts = [timed_out_text(pending)]
    else:
        # Only a marker survives, so the next turn says "Welcome back!"; the index fields derive no
        # expiresAt from it (never swept again) and the container's TTL removes it.
        cleared = {ETAG_KEY: state[ETAG_KEY], RECORD_PROPERTY: {**record, "expiredAt": now, "pendingOperation": None}}
        texts = notice_texts(record, deps)
    try:
        await deps.conversations.write({key: cleared})
    except StateConflictError:
        report.skipped += 1
        return
    if overdue_only:
        report.timed_out += 1
    else:
        report.expired += 1
    reference = record.get("reference")
    if not texts or not reference:
        return
    try:
        await deps.notify(reference, texts)
        report.notified += 1
    except Exception:
        # At most once: the conversation is already cleared; a lost notice is not retried.
        logger.warning("could not notify expired conversation %s", key, exc_info=True)
