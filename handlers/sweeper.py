"""The timer-triggered sweeper: expire idle conversations and tell their users; tell users whose
operation passed its deadline without a result (lost by a crash, say) as soon as it has; fail back
a handoff to a person that nobody accepted in time; and deliver what a conversation's outbox still
holds (a result whose reply failed, say).

Each run asks storage for the conversations due (an indexed range query, so its cost follows the
number due, not all of them). For each one that bot logic says is due, bot logic decides the
change (bot_logic/expiry.py: `sweep`); its notices go into the conversation's outbox and all of it
is written conditionally through the same storage the turns use (a conversation touched since the
query is left alone: overlapping runs race on the etag and only one wins). Only then are the
outbox's due entries sent and their delivery recorded (services/turns/outbox.py): at least once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

from bot_logic.clock import Clock
from bot_logic.conversation_record import RECORD_PROPERTY
from bot_logic.expiry import ExpiryPolicy, sweep
from bot_logic.handoff import withdrawal_payload
from services.state.state_storage import StateConflictError, StateUnavailableError
from services.turns.outbox import (
    REPLY,
    REPLY_LIFETIME_SECONDS,
    Delivery,
    Outbox,
    SendPayload,
    add_entry,
    claim_due,
    reply_activity,
    warn_unrecorded,
)
from services.turns.unit_of_work import update_state

logger = logging.getLogger(__name__)


class SweepableStorage(Protocol):
    async def due_for_sweep(self, now: float, limit: int) -> list[tuple[str, dict[str, Any]]]: ...

    async def read(self, keys: list[str]) -> dict[str, Any]: ...

    async def write(self, changes: dict[str, Any]) -> None: ...


@dataclass
class SweeperDependencies:
    conversations: SweepableStorage
    outbox: Outbox
    send_reply: SendPayload  # a stored reply, sent outside any turn
    clock: Clock
    policy: ExpiryPolicy
    batch_size: int = 100
    max_batches: int = 20  # bounds one run; the next run continues


@dataclass
class SweepReport:
    expired: int = 0
    notified: int = 0  # notices delivered
    timed_out: int = 0  # operations past their deadline in conversations that are still active
    skipped: int = 0  # touched or cleared by someone else since the query
    redelivered: int = 0  # outbox entries of earlier turns delivered now


async def handle_sweep(deps: SweeperDependencies) -> SweepReport:
    report = SweepReport()
    for _ in range(deps.max_batches):
        now = deps.clock()
        batch = await deps.conversations.due_for_sweep(now, deps.batch_size)
        for key, state in batch:
            await sweep_conversation(key, state, deps, report)
        if len(batch) < deps.batch_size:
            break
    if report.expired or report.timed_out or report.skipped or report.redelivered:
        logger.info(
            "sweep: %d expired, %d operations timed out, %d notified, %d skipped, %d earlier effects delivered",
            report.expired,
            report.timed_out,
            report.notified,
            report.skipped,
            report.redelivered,
        )
    return report


async def sweep_conversation(key: str, state: dict[str, Any], deps: SweeperDependencies, report: SweepReport) -> None:
    """Store bot logic's change to one conversation due for a sweep, with its notices in the outbox,
    and claim its outbox entries that are due; then deliver them."""
    now = deps.clock()  # this conversation's own moment: leases start now, not when the batch began
    decision = sweep(state, now, deps.policy)
    notices: list[str] = []
    reference = (state.get(RECORD_PROPERTY) or {}).get("reference")
    if decision is not None and reference:
        payloads = [reply_activity(reference, text) for text in decision.texts]
        if decision.withdraw_handoff:
            payloads.append(withdrawal_payload(reference))
        for payload in payloads:
            notices.append(add_entry(state, REPLY, payload, now, now + REPLY_LIFETIME_SECONDS))
    claimed = claim_due(state, now)
    try:
        # Also when nothing is due after all (found under older settings): the write recomputes its
        # sweepAt, so it does not block the query's order.
        await deps.conversations.write({key: state})
    except (StateConflictError, StateUnavailableError):
        report.skipped += 1
        return
    if decision is not None:
        if decision.expired:
            report.expired += 1
        else:
            report.timed_out += 1
    delivery = Delivery()
    # Earlier effects first (a result retried since), as a turn sends them.
    await deps.outbox.deliver(state, claimed + notices, deps.send_reply, key, delivery)
    if notices and set(notices) <= delivery.delivered:
        report.notified += 1
    report.redelivered += len(delivery.delivered - set(notices))
    for failure_reply in delivery.failure_replies:
        try:
            await deps.send_reply(failure_reply)
        except Exception:
            logger.warning("conversation %s: a failure notice was not delivered", key, exc_info=True)
    if delivery.changed and not await update_state(deps.conversations, key, delivery.apply, first=state):
        warn_unrecorded(key, delivery.delivered)
