"""A turn as a unit of work: load state, run the bot, commit state, then let effects out.

  * Turns of one conversation run one at a time in this process (ConversationLocks, bounded
    waiting), so commit races happen only between instances.
  * Replies are held until both state scopes are committed. If another turn of the same
    conversation committed first (HTTP 412), the turn runs again on fresh state, a bounded
    number of times; the held replies of the losing attempt are discarded, so the user sees
    each reply once.
  * Effects that must not be lost (bot logic asks through its DurableEffects port,
    bot_logic/effects.py) go into the conversation's transactional outbox (services/turns/outbox.py),
    committed with the state, then sent, then removed. A sent reply is removed by a write at once;
    a sent operation request is removed by the conversation's next write in this process (its
    result turn, usually) or, if none comes within RECORD_OPERATIONS_AFTER_SECONDS, by a write of
    its own: one write per start instead of two. Should the process die first, the request is
    sent again after its lease (at least once; a duplicate has effect once: the worker skips an
    operation its conversation no longer waits for, and the bot accepts one result).
  * A message the turn could not take in (the conversation stayed busy, or every commit race was
    lost) is answered with a plain apology asking the user to send it again, never dropped silently.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol
from uuid import uuid4

from botbuilder.core import BotState, Storage, TurnContext
from botbuilder.schema import Activity, ActivityTypes, ResourceResponse

from services.channel.activity_json import from_json, to_json
from services.state.bot_states import FlattenOnce, loaded_state
from services.state.state_storage import ETAG_KEY, StateConflictError, StateUnavailableError
from services.turns.outbox import (
    LEASE_SECONDS,
    OPERATION,
    REPLY,
    REPLY_LIFETIME_SECONDS,
    Delivery,
    Outbox,
    add_entry,
    addressed,
    claim_due,
    entries,
    warn_unrecorded,
)

logger = logging.getLogger(__name__)

TURN_SENDS_KEY = "unit_of_work.sends"
DEFAULT_MAX_ATTEMPTS = 8
DEFAULT_BUSY_WAIT_SECONDS = 10.0  # a channel gives the bot about 15 s per activity
STATE_UPDATE_ATTEMPTS = 5
UNAVAILABLE_BACKOFF_SECONDS = (0.1, 0.3, 0.6, 1.0)  # bounded: these updates run inside a turn
# A sent operation request waits this long for the conversation's next write to record its delivery;
# well inside its lease, so that it is recorded before anyone would send it again.
RECORD_OPERATIONS_AFTER_SECONDS = LEASE_SECONDS / 2

Logic = Callable[[TurnContext], Awaitable[None]]


class TurnConflictError(Exception):
    """The turn could not be committed; nothing of it was committed or sent."""


class ConversationBusyError(TurnConflictError):
    """Another turn of the conversation held it longer than the bound allows."""


@dataclass
class _Held:
    activity: Activity | None = None  # a reply, sent best effort
    entry_id: str | None = None  # or a durable effect in the conversation's outbox


@dataclass
class TurnSends:
    """What one turn sends, in order, held until its state is committed."""

    holding: bool = True
    items: list[_Held] = field(default_factory=list)
    claimed: list[str] = field(default_factory=list)  # earlier durable effects now due, claimed in the commit

    def hold(self, activities: list[Activity]) -> list[ResourceResponse]:
        self.items.extend(_Held(activity=activity) for activity in activities)
        return [ResourceResponse(id=str(uuid4())) for _ in activities]

    def reset(self) -> None:
        self.items.clear()
        self.claimed.clear()


def sends_of(context: TurnContext) -> TurnSends | None:
    return context.turn_state.get(TURN_SENDS_KEY)  # type: ignore[return-value]  # the turn's own, or None


class HoldsRepliesUntilCommit:
    """Adapter mixin (before the adapter class): while a unit of work's state is not yet committed,
    the turn's outgoing activities are held (TurnSends) instead of being sent."""

    async def send_activities(self, context: TurnContext, activities: list[Activity]) -> list[ResourceResponse]:
        sends = sends_of(context)
        if sends is not None and sends.holding:
            return sends.hold(activities)
        return await super().send_activities(context, activities)  # type: ignore[misc,no-any-return]


class ConversationLocks:
    """One asyncio lock per conversation key, alive only while someone holds or waits for it."""

    def __init__(self, wait_seconds: float = DEFAULT_BUSY_WAIT_SECONDS) -> None:
        self.wait_seconds = wait_seconds
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}  # key -> (lock, holders and waiters)

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key) or (asyncio.Lock(), 0)
        self._locks[key] = (lock, users + 1)
        try:
            try:
                await asyncio.wait_for(lock.acquire(), self.wait_seconds)
            except TimeoutError:
                raise ConversationBusyError(f"{key}: still busy after {self.wait_seconds:.0f} s") from None
            try:
                yield
            finally:
                lock.release()
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


@dataclass
class StateScopes:
    conversation: BotState
    user: BotState
    conversation_storage: Storage
    user_storage: Storage


@dataclass
class _Unrecorded:
    """Operation requests of one conversation sent but not yet recorded as delivered."""

    conversation: str  # its id, for the log
    delivered: set[str]
    state: dict[str, Any]  # as committed (with its etag): written without reading first if nothing changed since
    task: asyncio.Task[None] | None = None  # the write of its own, should no turn fold it in first


class UnitOfWork:
    """Runs turns over these state scopes; see the module's docstring. Implements DurableEffects."""

    def __init__(
        self,
        scopes: StateScopes,
        outbox: Outbox,
        clock: Callable[[], float],
        busy_text: str,
        locks: ConversationLocks | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        record_operations_after: float = RECORD_OPERATIONS_AFTER_SECONDS,
    ) -> None:
        self.scopes = scopes
        self.record_operations_after = record_operations_after
        self._unrecorded: dict[str, _Unrecorded] = {}  # by conversation storage key
        self.outbox = outbox
        self.clock = clock
        self.busy_text = busy_text  # "{text}" is the user's message
        self.locks = locks or ConversationLocks()
        self.max_attempts = max_attempts

    # --- DurableEffects, for bot logic ------------------------------------------------------

    def reply_durably(self, context: TurnContext, text: str) -> None:
        now = self.clock()
        reply = to_json(_reply(context, text))
        self._hold_durable(context, lambda state: add_entry(state, REPLY, reply, now, now + REPLY_LIFETIME_SECONDS))

    def request_operation(
        self, context: TurnContext, request: Mapping[str, Any], deadline: float, failure_reply: str
    ) -> None:
        now, failure = self.clock(), to_json(_reply(context, failure_reply))
        self._hold_durable(context, lambda state: add_entry(state, OPERATION, request, now, deadline, failure))

    def _hold_durable(self, context: TurnContext, add: Callable[[dict[str, Any]], str]) -> None:
        """Add an entry to the conversation's outbox (committed with the turn) and hold its place in
        the turn's sending order."""
        sends = sends_of(context)
        if sends is None or not sends.holding:
            raise RuntimeError("durable effects can only be asked for inside a unit-of-work turn")
        entry_id = add(self.scopes.conversation.get(context))
        sends.items.append(_Held(entry_id=entry_id))

    # --- running a turn ---------------------------------------------------------------------

    async def run(self, context: TurnContext, logic: Logic) -> None:
        """Run `logic` as one unit of work: one turn of the conversation at a time in this process,
        every attempt on fresh state, effects only after the commit."""
        try:
            async with self.locks.hold(self.scopes.conversation.get_storage_key(context)):
                await self._commit(context, logic)
                await self._release(context)
        except TurnConflictError as error:
            if not await self._apologise(context):
                raise
            logger.warning("conversation %s: message not taken in (%s); asked to resend", _id(context), error)

    async def _commit(self, context: TurnContext, logic: Logic) -> None:
        scopes = self.scopes
        sends = TurnSends()
        context.turn_state[TURN_SENDS_KEY] = sends
        for attempt in range(1, self.max_attempts + 1):
            sends.reset()
            context.buffered_reply_activities.clear()  # expectReplies: the losing attempt's replies go too
            # The losing attempt's replies are gone, so the re-run must not think it has answered: a prompt
            # re-asks only while `responded` is false (the SDK's public setter refuses False).
            context._responded = False
            await scopes.conversation.load(context, force=True)
            user_before = await self._prepare_user_state(context)
            await logic(context)
            key = scopes.conversation.get_storage_key(context)
            saving, folded = _worth_saving(scopes.conversation, context), False
            if saving:
                state = scopes.conversation.get(context)
                sends.claimed = claim_due(state, self.clock())
                unrecorded = self._unrecorded.get(key)
                # Sent operation requests are recorded by this commit; a turn that writes nothing (a
                # refused event, say) is not made to write for them.
                if unrecorded is not None and _changed(scopes.conversation, context):
                    Delivery(delivered=unrecorded.delivered).apply(state)
                    folded = True
            try:
                # The conversation document is the commit point: its etag serialises the turns.
                if saving:
                    await scopes.conversation.save_changes(context)
                if folded:
                    self._forget_unrecorded(key)
            except StateConflictError:
                logger.info(
                    "turn of conversation %s lost a commit race (attempt %d of %d); running it again",
                    _id(context),
                    attempt,
                    self.max_attempts,
                )
                # Exponential backoff with full jitter, so racing turns spread out instead of colliding again.
                await asyncio.sleep(random.uniform(0, min(0.4, 0.025 * 2**attempt)))
                continue
            await self._save_user_state(context, user_before)
            return
        raise TurnConflictError(f"conversation {_id(context)}: {self.max_attempts} commit conflicts")

    async def _release(self, context: TurnContext) -> None:
        """Send what the committed turn holds, in order, then any earlier durable effect now due; then
        record what was delivered."""
        sends = sends_of(context)
        assert sends is not None
        sends.holding = False
        state = self.scopes.conversation.get(context)
        delivery = Delivery()

        async def send_reply(payload: dict[str, Any]) -> None:
            await context.adapter.send_activities(context, [from_json(Activity, payload)])

        # Earlier effects first (a result whose reply failed before reads best before the answer to
        # the message that brought it), then this turn's, in the order the turn made them.
        await self.outbox.deliver(state, sends.claimed, send_reply, _id(context), delivery)
        for item in sends.items:
            if item.entry_id is not None:
                await self.outbox.deliver(state, [item.entry_id], send_reply, _id(context), delivery)
            elif item.activity is not None:
                await _send_best_effort(context, [item.activity])
        for failure_reply in delivery.failure_replies:
            await _send_best_effort(context, [from_json(Activity, failure_reply)])
        key = self.scopes.conversation.get_storage_key(context)
        if delivery.changed and _only_operations_delivered(state, delivery):
            self._record_later(key, _id(context), delivery.delivered, state)
        elif delivery.changed:
            if not await update_state(self.scopes.conversation_storage, key, delivery.apply, first=state):
                # The turn is committed and answered: logged, not failed.
                warn_unrecorded(_id(context), delivery.delivered)

    def _record_later(self, key: str, conversation: str, delivered: set[str], state: dict[str, Any]) -> None:
        """Leave the record of these sent operation requests to the conversation's next commit in this
        process, or to a write of its own after record_operations_after."""
        unrecorded = self._unrecorded.get(key)
        if unrecorded is not None:  # not folded in yet (the turn saved nothing): one record for both
            unrecorded.delivered |= delivered
            return
        unrecorded = self._unrecorded[key] = _Unrecorded(conversation, set(delivered), state)
        unrecorded.task = asyncio.create_task(self._record_after_wait(key, unrecorded))

    async def _record_after_wait(self, key: str, unrecorded: _Unrecorded) -> None:
        await asyncio.sleep(self.record_operations_after)
        await self._record(key, unrecorded)

    async def _record(self, key: str, unrecorded: _Unrecorded) -> None:
        recorded = False
        try:
            # Under the conversation's lock: a turn starting meanwhile waits instead of racing this write.
            async with self.locks.hold(key):
                if self._unrecorded.get(key) is not unrecorded:
                    return  # a turn folded it into its commit meanwhile, or another call wrote it
                delivery = Delivery(delivered=unrecorded.delivered)
                recorded = await update_state(
                    self.scopes.conversation_storage, key, delivery.apply, first=unrecorded.state
                )
                del self._unrecorded[key]  # written or given up (logged); not if cancelled meanwhile
        except ConversationBusyError:
            pass  # logged below
        if not recorded:
            warn_unrecorded(unrecorded.conversation, unrecorded.delivered)

    def _forget_unrecorded(self, key: str) -> None:
        """A commit of the conversation recorded them: no write of their own."""
        unrecorded = self._unrecorded.pop(key, None)
        if unrecorded is not None and unrecorded.task is not None:
            unrecorded.task.cancel()

    async def record_deliveries_now(self) -> None:
        """Record every sent operation request still waiting for a write (when the host stops, say)."""
        waiting = list(self._unrecorded.items())
        for _, unrecorded in waiting:
            if unrecorded.task is not None:
                unrecorded.task.cancel()
        await asyncio.gather(*(u.task for _, u in waiting if u.task is not None), return_exceptions=True)
        await asyncio.gather(*(self._record(key, unrecorded) for key, unrecorded in waiting))  # distinct keys

    async def _apologise(self, context: TurnContext) -> bool:
        """Ask the user to send a message again that the turn could not take in; False if it cannot."""
        activity = context.activity
        if activity.type != ActivityTypes.message:
            return False  # a channel's or the worker's activity: the caller's retry is the remedy
        text = " ".join((activity.text or "").split())
        quoted = text if len(text) <= 60 else text[:57] + "..."
        sends = sends_of(context)
        if sends is not None:
            sends.holding = False
        try:
            await context.adapter.send_activities(context, [_reply(context, self.busy_text.format(text=quoted))])
        except Exception:
            logger.warning("conversation %s: could not ask the user to resend", _id(context), exc_info=True)
            return False
        return True

    async def _prepare_user_state(self, context: TurnContext) -> dict[str, Any] | None:
        """Fresh user state for this attempt. A scope that keeps what it loaded (services/state/bot_states.py)
        is loaded on first use only, so a turn that never reads the user's profile costs no read; the
        SDK's own scopes are loaded now, and a copy kept to merge from after a conflict."""
        user = self.scopes.user
        if isinstance(user, FlattenOnce):
            await user.clear_state(context)  # forget an earlier attempt's; the accessors load it fresh
            return None
        await user.load(context, force=True)
        return copy.deepcopy(user.get(context))

    async def _save_user_state(self, context: TurnContext, before: dict[str, Any] | None) -> None:
        """User state is shared by all of a user's conversations; a conflict here is merged, not re-run.

        The conversation is already committed, so the turn cannot run again: re-read the
        user's document and re-apply the properties this turn changed.
        """
        user = self.scopes.user
        if not _worth_saving(user, context):
            return
        try:
            await user.save_changes(context)
            return
        except (StateConflictError, StateUnavailableError):
            pass  # merged below: re-read, re-apply, waiting briefly while the store is unavailable
        if before is None:
            before = loaded_state(user, context)
        changes = _changes(before, user.get(context))
        key = user.get_storage_key(context)
        if not await update_state(self.scopes.user_storage, key, lambda s: _apply(s, changes), create=True):
            # The conversation is committed and must be answered; the user-state change is lost.
            # Property names only: their values are the user's own (their name, say).
            changed = [".".join(path) for path, _ in changes]
            logger.error("conversation %s: user state not saved: %s changed", _id(context), changed)


class _StateStorage(Protocol):
    async def read(self, keys: list[str]) -> dict[str, Any]: ...

    async def write(self, changes: dict[str, Any]) -> None: ...


async def update_state(
    storage: _StateStorage,
    key: str,
    change: Callable[[dict[str, Any]], None],
    first: dict[str, Any] | None = None,
    attempts: int = STATE_UPDATE_ATTEMPTS,
    create: bool = False,
) -> bool:
    """Apply `change` to the stored state under `key` with a conditional write, re-reading and
    re-applying after a conflict, and waiting briefly (bounded) while the store is unavailable.
    `first`: the state as last read (with its etag), to try first without reading. `change` must
    be safe to apply twice. `create`: a missing state is created, else it counts as gone.
    False, logged, if the state is gone or the update could not be written."""
    state = first
    conflicts, waits = 0, iter(UNAVAILABLE_BACKOFF_SECONDS)
    while conflicts < attempts:
        try:
            if state is None:
                state = (await storage.read([key])).get(key, {} if create else None)
                if state is None:
                    logger.warning("state %s not updated: it is gone", key)
                    return False
            change(state)
            await storage.write({key: state})
            return True
        except StateConflictError:
            conflicts, state = conflicts + 1, None
        except StateUnavailableError as error:
            wait = next(waits, None)
            if wait is None:
                logger.warning("state %s not updated: the store stayed unavailable (%s)", key, error)
                return False
            await asyncio.sleep(wait)
            # Its outcome is unknown: the etag tells on the next attempt (a conflict re-reads).
    logger.error("state %s not updated after %d conflicting writes", key, attempts)
    return False


async def _send_best_effort(context: TurnContext, activities: list[Activity]) -> None:
    try:
        await context.adapter.send_activities(context, activities)
    except Exception:
        # Best effort: the state is committed and the turn must not fail now.
        logger.warning("conversation %s: a reply was not delivered", _id(context), exc_info=True)


def _changed(state: BotState, context: TurnContext) -> bool:
    cached = state.get_cached_state(context)
    return cached is None or bool(cached.is_changed)


def _only_operations_delivered(state: Mapping[str, Any], delivery: Delivery) -> bool:
    """Whether this delivery only sent operation requests: nothing failed or was lost, no reply went."""
    if delivery.lost or delivery.retries:
        return False
    kinds = {entry["id"]: entry["kind"] for entry in entries(state)}
    return all(kinds.get(entry_id) == OPERATION for entry_id in delivery.delivered)


def _id(context: TurnContext) -> str:
    return str(context.activity.conversation.id)


def _reply(context: TurnContext, text: str) -> Activity:
    return addressed(TurnContext.get_conversation_reference(context.activity), text)


def _worth_saving(state: BotState, context: TurnContext) -> bool:
    """False for a scope that was never stored and is still empty (e.g. a turn that ignored its activity):
    a stored one always holds at least its etag."""
    return bool(state.get(context))


_MISSING = object()
Change = tuple[tuple[str, ...], Any]


def _changes(before: dict[str, Any], after: dict[str, Any]) -> list[Change]:
    """What this turn changed, down to properties of top-level objects (e.g. UserProfile.name).

    An object the turn merely created empty (an accessor's default) is no change.
    """
    changes: list[Change] = []
    for key in (set(before) | set(after)) - {ETAG_KEY}:
        old, new = before.get(key, _MISSING), after.get(key, _MISSING)
        if old == new:
            continue
        if isinstance(new, dict) and (old is _MISSING or isinstance(old, dict)):
            old_dict = old if isinstance(old, dict) else {}
            for name in set(old_dict) | set(new):
                if old_dict.get(name, _MISSING) != new.get(name, _MISSING):
                    changes.append(((key, name), new.get(name, _MISSING)))
        else:
            changes.append(((key,), new))
    return changes


def _apply(state: dict[str, Any], changes: list[Change]) -> None:
    for path, value in changes:
        target = state
        for part in path[:-1]:
            if not isinstance(target.get(part), dict):
                target[part] = {}
            target = target[part]
        if value is _MISSING:
            target.pop(path[-1], None)
        else:
            target[path[-1]] = value
