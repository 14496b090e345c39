"""A turn as a unit of work: load state, run the bot, commit state, then let effects out.

Replies and other effects (queue messages) are held in the turn's outbox until both
state scopes are committed. If another turn of the same conversation committed first
(HTTP 412), the turn is run again on fresh state, a bounded number of times; the held
replies of the losing attempt are discarded, so the user sees each reply once.

UnitOfWork implements bot logic's AfterCommit port (bot_logic/after_commit.py).
"""

from __future__ import annotations

import asyncio
import copy
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import uuid4

from botbuilder.core import BotState, Storage, TurnContext
from botbuilder.schema import Activity, ResourceResponse

from services.state_storage import ETAG_KEY, StateConflictError

logger = logging.getLogger(__name__)

OUTBOX_KEY = "unit_of_work.outbox"
DEFAULT_MAX_ATTEMPTS = 8

Effect = Callable[[], Awaitable[None]]


class TurnConflictError(Exception):
    """The turn lost every commit race it ran; nothing of it was committed or sent."""


@dataclass(frozen=True)
class AfterCommit:
    effect: Effect
    failure_reply: str | None  # told to the user if the effect fails, so nobody waits for nothing


@dataclass
class TurnOutbox:
    holding: bool = True
    activities: list[Activity] = field(default_factory=list)
    after_commit: list[AfterCommit] = field(default_factory=list)

    def hold(self, activities: list[Activity]) -> list[ResourceResponse]:
        self.activities.extend(activities)
        return [ResourceResponse(id=str(uuid4())) for _ in activities]

    def reset(self) -> None:
        self.activities.clear()
        self.after_commit.clear()


def outbox_of(context: TurnContext) -> TurnOutbox | None:
    return context.turn_state.get(OUTBOX_KEY)


class HoldsRepliesUntilCommit:
    """Adapter mixin (before the adapter class): while a unit of work's state is not yet committed,
    the turn's outgoing activities wait in its outbox instead of being sent."""

    async def send_activities(self, context: TurnContext, activities: list[Activity]) -> list[ResourceResponse]:
        outbox = outbox_of(context)
        if outbox is not None and outbox.holding:
            return outbox.hold(activities)
        return await super().send_activities(context, activities)  # type: ignore[misc]


@dataclass
class StateScopes:
    conversation: BotState
    user: BotState
    user_storage: Storage


class UnitOfWork:
    """Runs turns over these state scopes; see the module's docstring."""

    def __init__(self, scopes: StateScopes, max_attempts: int = DEFAULT_MAX_ATTEMPTS) -> None:
        self.scopes = scopes
        self.max_attempts = max_attempts

    def after_commit(self, context: TurnContext, effect: Effect, failure_reply: str | None = None) -> None:
        """Run `effect` only once the turn's state is committed (e.g. send a queue message)."""
        outbox = outbox_of(context)
        if outbox is None:
            raise RuntimeError("effects can only be added inside a unit-of-work turn")
        outbox.after_commit.append(AfterCommit(effect, failure_reply))

    async def run(self, context: TurnContext, logic: Callable[[TurnContext], Awaitable[None]]) -> None:
        """Run `logic` as one unit of work: every attempt on fresh state, effects only after the commit."""
        scopes, max_attempts = self.scopes, self.max_attempts
        outbox = TurnOutbox()
        context.turn_state[OUTBOX_KEY] = outbox
        for attempt in range(1, max_attempts + 1):
            outbox.reset()
            context.buffered_reply_activities.clear()  # expectReplies: the losing attempt's replies go too
            await scopes.conversation.load(context, force=True)
            await scopes.user.load(context, force=True)
            user_before = copy.deepcopy(scopes.user.get(context))
            await logic(context)
            try:
                # The conversation document is the commit point: its etag serialises the turns.
                if _worth_saving(scopes.conversation, context):
                    await scopes.conversation.save_changes(context)
            except StateConflictError:
                logger.info(
                    "turn of conversation %s lost a commit race (attempt %d of %d); running it again",
                    context.activity.conversation.id,
                    attempt,
                    max_attempts,
                )
                # Exponential backoff with full jitter, so racing turns spread out instead of colliding again.
                await asyncio.sleep(random.uniform(0, min(0.4, 0.025 * 2**attempt)))
                continue
            await _save_user_state(context, scopes, user_before)
            break
        else:
            raise TurnConflictError(f"conversation {context.activity.conversation.id}: {max_attempts} commit conflicts")

        outbox.holding = False
        for after in outbox.after_commit:
            try:
                await after.effect()
            except Exception:
                # The state is committed; the turn must not fail now. Tell the user instead.
                logger.exception("conversation %s: an effect after the commit failed", context.activity.conversation.id)
                if after.failure_reply:
                    outbox.activities.append(_reply(context, after.failure_reply))
        if outbox.activities:
            await context.adapter.send_activities(context, list(outbox.activities))


def _reply(context: TurnContext, text: str) -> Activity:
    reference = TurnContext.get_conversation_reference(context.activity)
    return TurnContext.apply_conversation_reference(Activity(type="message", text=text), reference)


def _worth_saving(state: BotState, context: TurnContext) -> bool:
    """False for a scope that was never stored and is still empty (e.g. a turn that ignored its activity):
    a stored one always holds at least its etag."""
    return bool(state.get(context))


async def _save_user_state(
    context: TurnContext, scopes: StateScopes, before: dict[str, Any], attempts: int = 5
) -> None:
    """User state is shared by all of a user's conversations; a conflict here is merged, not re-run.

    The conversation is already committed, so the turn cannot run again: re-read the
    user's document and re-apply the properties this turn changed.
    """
    if not _worth_saving(scopes.user, context):
        return
    try:
        await scopes.user.save_changes(context)
        return
    except StateConflictError:
        pass
    changes = _changes(before, scopes.user.get(context))
    key = scopes.user.get_storage_key(context)
    for _ in range(attempts):
        fresh = (await scopes.user_storage.read([key])).get(key, {})
        _apply(fresh, changes)
        try:
            await scopes.user_storage.write({key: fresh})
            return
        except StateConflictError:
            continue
    logger.error("user state of conversation %s not saved after %d merges", context.activity.conversation.id, attempts)


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
