"""When a conversation expires, and what the sweeper does with one.

One rule (idle for ExpireAfterSeconds, unless an operation is still in flight), three ways:
  * on the next turn (bot.py), the bot starts over with "Welcome back!";
  * the sweeper (handlers/sweeper.py) asks storage for conversations due for a sweep
    (`sweep_times`), and `sweep` decides what to store and tell;
  * storage's time-to-live deletes what nobody touched for a long time (`keep_until`
    keeps a conversation at least until its operation's deadline).
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from bot_logic.conversation_record import (
    DIALOG_STATE_PROPERTY,
    RECORD_PROPERTY,
    ConversationRecord,
    PendingOperation,
    close,
    new_record,
    stored_record,
)
from bot_logic.handoff import active_handoff, fail_back_timed_out, timed_out, waiting_deadline
from bot_logic.pending_operation import describe_duration, timeout_notice_once

WELCOME_BACK_TEXT = "Welcome back! Let's start over from the beginning."


def expires_at(record: ConversationRecord, expire_after_seconds: int) -> float | None:
    """When the conversation may be expired: idle time elapsed and any operation's deadline passed."""
    last_access = record.get("lastAccessAt")
    if last_access is None or active_handoff(record):
        # A person's messages never pass through the bot: a quiet user talking to one is not idle.
        # (A waiting handoff is failed back at its own deadline; then the idle time counts again.)
        return None
    moment = last_access + expire_after_seconds
    pending = record.get("pendingOperation")
    if pending:
        moment = max(moment, pending["deadline"])
    return moment


def is_expired(record: ConversationRecord, expire_after_seconds: int, now: float) -> bool:
    if record.get("expiredAt") is not None:  # closed by the sweeper
        return True
    moment = expires_at(record, expire_after_seconds)
    return moment is not None and now >= moment


class SweepTimes(NamedTuple):
    sweep_at: float | None  # when the sweeper must look at the conversation; None: never
    keep_until: float | None  # storage must keep it at least until then (an operation's deadline)


def sweep_times(state: Mapping[str, Any], expire_after_seconds: int) -> SweepTimes:
    """At an operation's deadline, to tell its user it timed out (once); else when the conversation expires."""
    record = stored_record(state)
    if record is None or record.get("expiredAt") is not None or record.get("lastAccessAt") is None:
        return SweepTimes(None, None)  # already closed, or never used: nothing to sweep
    pending = record.get("pendingOperation")
    keep_until = pending["deadline"] if pending else None
    sweep_at: float | None
    if pending and not pending.get("timeoutNotified"):
        sweep_at = pending["deadline"]
    else:
        sweep_at = expires_at(record, expire_after_seconds)
    handoff_deadline = waiting_deadline(record)  # a handoff nobody accepted is failed back
    if handoff_deadline is not None and (sweep_at is None or handoff_deadline < sweep_at):
        sweep_at = handoff_deadline
    return SweepTimes(sweep_at, keep_until)


@dataclass(frozen=True)
class ExpiryPolicy:
    expire_after_seconds: int
    notice_enabled: bool
    notice_text: str  # placeholders {minutes} and {duration}
    handoff_timeout_seconds: int = 300

    def notice(self) -> str | None:
        if not self.notice_enabled:
            return None
        minutes = max(1, round(self.expire_after_seconds / 60))
        return self.notice_text.format(minutes=minutes, duration=describe_duration(self.expire_after_seconds))


@dataclass
class SweepDecision:
    expired: bool  # closed; else only its overdue operation was marked as told
    texts: list[str] = field(default_factory=list)  # to tell the user once the change is stored
    withdraw_handoff: bool = False  # tell the channel the bot no longer waits for a person


def sweep(state: MutableMapping[str, Any], now: float, policy: ExpiryPolicy) -> SweepDecision | None:
    """Change a conversation the sweeper found, in place, if bot logic says it is due: close it if it
    expired, else (still active, but its operation passed the deadline) only mark the timeout as
    told. None if it is not due (storage may have found it for its outbox, or under older settings)."""
    due = sweep_times(state, policy.expire_after_seconds).sweep_at
    if due is None or due > now:
        return None
    record = ConversationRecord(**(stored_record(state) or new_record()))
    handoff_texts = []
    if timed_out(record, now):
        text, restart_dialog = fail_back_timed_out(record, policy.handoff_timeout_seconds)
        handoff_texts.append(text)
        if restart_dialog:
            state.pop(DIALOG_STATE_PROPERTY, None)  # the next message starts the dialog afresh
    withdraw = bool(handoff_texts)
    stored_pending = record.get("pendingOperation")
    pending = PendingOperation(**stored_pending) if stored_pending else None
    overdue = pending is not None and not pending.get("timeoutNotified") and pending["deadline"] <= now
    timeout_notice = timeout_notice_once(pending) if pending and overdue else None
    if not is_expired(record, policy.expire_after_seconds, now):
        record["pendingOperation"] = pending
        state[RECORD_PROPERTY] = record
        texts = [text for text in (*handoff_texts, timeout_notice) if text]
        return SweepDecision(expired=False, texts=texts, withdraw_handoff=withdraw)
    state[RECORD_PROPERTY] = record
    close(state, now)
    texts = [text for text in (*handoff_texts, timeout_notice, policy.notice()) if text]
    return SweepDecision(expired=True, texts=texts, withdraw_handoff=withdraw)
