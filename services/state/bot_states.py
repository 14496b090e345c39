"""Conversation and user state that flatten each state once per save.

The SDK's BotState flattens a state with jsonpickle to hash it when it is loaded, again to see
whether the turn changed it, once more to write it, and again to re-hash it after the write: four
flattens of a state the storage has just restored. Here the storage hands back the flattened
document it restored the state from (services/state/cosmos_storage.py: StoredState); saving flattens the
state once and compares that with the document: unchanged, nothing is written; changed, the same
flattened document is written. Loading hashes nothing.
"""

from __future__ import annotations

from typing import Any

from botbuilder.core import BotState, ConversationState, TurnContext, UserState
from botbuilder.core.bot_state import CachedBotState

from services.state import state_codec
from services.state.cosmos_storage import CosmosStorage, flatten


class _Snapshot(CachedBotState):
    """The turn's state and the flattened document it was loaded (or last saved) as."""

    def __init__(self, state: dict[str, Any], document: dict[str, Any]) -> None:  # no super(): it would hash
        self.state = state
        self.document = document
        self.hash = ""  # not used: changes are found by comparing documents

    @property
    def is_changed(self) -> bool:
        return flatten(self.state) != self.document

    def loaded(self) -> dict[str, Any]:
        """The state as it was loaded or last saved (restored afresh from its document)."""
        return dict(state_codec.restore(self.document))


def loaded_state(scope: BotState, turn_context: TurnContext) -> dict[str, Any]:
    """What a FlattenOnce scope held when this turn loaded it ({} if it was not loaded)."""
    cached = scope.get_cached_state(turn_context)
    return cached.loaded() if isinstance(cached, _Snapshot) else {}


class FlattenOnce:
    """BotState mixin (before the BotState class) over a CosmosStorage; see the module's docstring."""

    _storage: CosmosStorage
    _context_service_key: str

    async def load(self, turn_context: TurnContext, force: bool = False) -> None:
        cached = self.get_cached_state(turn_context)  # type: ignore[attr-defined]
        if force or not cached or not cached.state:
            key = self.get_storage_key(turn_context)  # type: ignore[attr-defined]
            stored = (await self._storage.read_stored([key])).get(key)
            snapshot = _Snapshot(stored.state, stored.document) if stored else _Snapshot({}, {})
            turn_context.turn_state[self._context_service_key] = snapshot

    async def save_changes(self, turn_context: TurnContext, force: bool = False) -> None:
        cached = self.get_cached_state(turn_context)  # type: ignore[attr-defined]
        if not isinstance(cached, _Snapshot):  # cleared or never loaded: the SDK's way
            await super().save_changes(turn_context, force)  # type: ignore[misc]
            return
        document = flatten(cached.state)
        if force or document != cached.document:
            key = self.get_storage_key(turn_context)  # type: ignore[attr-defined]
            await self._storage.write_flattened(key, cached.state, document)
            cached.document = document


class DurableConversationState(FlattenOnce, ConversationState):  # type: ignore[misc]  # _storage: a CosmosStorage
    pass


class DurableUserState(FlattenOnce, UserState):  # type: ignore[misc]  # _storage: a CosmosStorage
    pass
