"""The timer-triggered sweeper: expire idle conversations and tell their users; tell users whose
operation passed its deadline without a result (lost by a crash, say) as soon as it has.

Each run asks storage for the conversations due for a sweep (an indexed range query, so its
cost follows the number due, not all of them). For each, bot logic decides the change
(bot_logic/expiry.py: `sweep`), which is written conditionally through the same storage the
turns use (a conversation touched since the query is left alone), and only then is the user
told. Overlapping runs race on the same etag and only one wins, so each conversation is
cleared once and its user told at most once.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from bot_logic.clock import Clock
from bot_logic.conversation_record import RECORD_PROPERTY
from bot_logic.expiry import ExpiryPolicy, sweep
from services.state_storage import StateConflictError

logger = logging.getLogger(__name__)

Tell = Callable[[dict[str, Any], list[str]], Awaitable[None]]  # (conversation reference, texts)


class SweepableStorage(Protocol):
    async def due_for_sweep(self, now: float, limit: int) -> list[tuple[str, dict[str, Any]]]: ...

    async def write(self, changes: dict[str, Any]) -> None: ...


@dataclass
class SweeperDependencies:
    conversations: SweepableStorage
    tell: Tell
    clock: Clock
    policy: ExpiryPolicy
    batch_size: int = 100
    max_batches: int = 20  # bounds one run; the next run continues


@dataclass
class SweepReport:
    expired: int = 0
    notified: int = 0
    timed_out: int = 0  # operations past their deadline in conversations that are still active
    skipped: int = 0  # touched or cleared by someone else since the query


async def handle_sweep(deps: SweeperDependencies) -> SweepReport:
    report = SweepReport()
    for _ in range(deps.max_batches):
        now = deps.clock()
        batch = await deps.conversations.due_for_sweep(now, deps.batch_size)
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
    """Store bot logic's change to one conversation due for a sweep, then tell its user."""
    reference = (state.get(RECORD_PROPERTY) or {}).get("reference")
    decision = sweep(state, now, deps.policy)
    try:
        await deps.conversations.write({key: state})
    except StateConflictError:
        report.skipped += 1
        return
    if decision.expired:
        report.expired += 1
    else:
        report.timed_out += 1
    if not decision.texts or not reference:
        return
    try:
        await deps.tell(reference, decision.texts)
        report.notified += 1
    except Exception:
        # At most once: the conversation is already cleared; a lost notice is not retried.
        logger.warning("could not notify expired conversation %s", key, exc_info=True)
