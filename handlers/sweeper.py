"""The timer-triggered sweeper: expire idle conversations and tell their users; tell users whose
operation passed its deadline without a result (lost by a crash, say) as soon as it has.

Each run asks Cosmos DB for conversations whose `expiresAt` has passed (an indexed range
query, so its cost follows the number of expired conversations, not all of them), clears
each with a conditional replace (If-Match its etag: a conversation touched since the
query is left alone), and only then notifies the user. Overlapping runs race on the same
etag and only one wins, so each conversation is cleared once and notified at most once.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from azure.core import MatchConditions
from azure.cosmos.aio import ContainerProxy
from azure.cosmos.exceptions import CosmosAccessConditionFailedError, CosmosResourceNotFoundError

from bot_logic.clock import Clock
from bot_logic.conversation_record import RECORD_PROPERTY
from bot_logic.expiry import expires_at, is_expired
from bot_logic.pending_operation import describe_duration, timed_out_text
from services.cosmos_storage import StorageCounters

logger = logging.getLogger(__name__)

EXPIRED_QUERY = "SELECT TOP @batch * FROM c WHERE c.expiresAt <= @now ORDER BY c.expiresAt"

Notify = Callable[[dict[str, Any], list[str]], Awaitable[None]]  # (conversation reference, texts)


@dataclass
class SweeperDependencies:
    conversations: Callable[[], Awaitable[ContainerProxy]]
    notify: Notify
    clock: Clock
    expire_after_seconds: int
    notice_enabled: bool
    notice_text: str
    batch_size: int = 100
    max_batches: int = 20  # bounds one run; the next run continues
    counters: StorageCounters = field(default_factory=StorageCounters)


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
        texts.append(timed_out_text(pending["name"], pending["deadline"] - pending["startedAt"]))
    if deps.notice_enabled:
        minutes = max(1, round(deps.expire_after_seconds / 60))
        texts.append(deps.notice_text.format(minutes=minutes, duration=describe_duration(deps.expire_after_seconds)))
    return texts


def tombstone(doc: dict[str, Any], now: float) -> dict[str, Any]:
    """The cleared conversation: only its record survives, marked expired, so the next turn
    says "Welcome back!". It has no expiresAt (never swept again); the container's TTL removes it."""
    record = dict((doc.get("document") or {}).get(RECORD_PROPERTY) or {})
    record.update(expiredAt=now, pendingOperation=None)
    return {"id": doc["id"], "realId": doc.get("realId"), "document": {RECORD_PROPERTY: record}}


async def handle_sweep(deps: SweeperDependencies) -> SweepReport:
    container = await deps.conversations()
    report = SweepReport()
    for _ in range(deps.max_batches):
        now = deps.clock()
        deps.counters.queries += 1
        batch = [
            doc
            async for doc in container.query_items(
                EXPIRED_QUERY, parameters=[{"name": "@batch", "value": deps.batch_size}, {"name": "@now", "value": now}]
            )
        ]
        for doc in batch:
            await _expire(container, doc, now, deps, report)
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


def timed_out_only(doc: dict[str, Any], deps: SweeperDependencies) -> dict[str, Any]:
    """The conversation, still active, with its pending operation marked as told it timed out."""
    document = dict(doc.get("document") or {})
    record = dict(document.get(RECORD_PROPERTY) or {})
    record["pendingOperation"] = {**record["pendingOperation"], "timeoutNotified": True}
    document[RECORD_PROPERTY] = record
    body = {k: v for k, v in doc.items() if not k.startswith("_")}
    body.update(document=document, expiresAt=expires_at(record, deps.expire_after_seconds))
    return body


async def _expire(
    container: ContainerProxy, doc: dict[str, Any], now: float, deps: SweeperDependencies, report: SweepReport
) -> None:
    record = (doc.get("document") or {}).get(RECORD_PROPERTY) or {}
    pending = record.get("pendingOperation")
    only_timed_out = bool(pending) and not is_expired(record, deps.expire_after_seconds, now)
    body = timed_out_only(doc, deps) if only_timed_out else tombstone(doc, now)
    deps.counters.writes += 1
    try:
        await container.replace_item(
            item=doc["id"], body=body, etag=doc["_etag"], match_condition=MatchConditions.IfNotModified
        )
    except (CosmosAccessConditionFailedError, CosmosResourceNotFoundError):
        report.skipped += 1
        return
    if only_timed_out:
        report.timed_out += 1
        texts = [timed_out_text(pending["name"], pending["deadline"] - pending["startedAt"])]
    else:
        report.expired += 1
        texts = notice_texts(record, deps)
    reference = record.get("reference")
    if not texts or not reference:
        return
    try:
        await deps.notify(reference, texts)
        report.notified += 1
    except Exception:
        # At most once: the conversation is already cleared; a lost notice is not retried.
        logger.warning("could not notify expired conversation %s", doc.get("realId"), exc_info=True)
