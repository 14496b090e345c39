"""State storage in memory that keeps the promise of services/state/state_storage.py (etags, conflicts),
and lets a test make another writer commit first: a lost race on demand, without Cosmos DB."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from typing import Any

from botbuilder.core import Storage

from services.state.state_storage import ETAG_KEY, StateConflictError, StateUnavailableError

Change = Callable[[dict[str, Any]], None]


class ConflictingMemoryStorage(Storage):
    def __init__(self) -> None:
        self.documents: dict[str, dict[str, Any]] = {}  # key -> state, with its etag
        self.writes = 0
        self._versions = itertools.count(1)
        self._rivals: dict[str, list[Change]] = {}
        self.unavailable: dict[str, int] = {}  # key -> how many more writes of it the store refuses

    def commit_first(self, key: str, *changes: Change) -> None:
        """Before each of the next len(changes) writes of `key`, another writer commits its change."""
        self._rivals.setdefault(key, []).extend(changes)

    async def read(self, keys: list[str]) -> dict[str, Any]:
        return {key: copy.deepcopy(self.documents[key]) for key in keys if key in self.documents}

    async def write(self, changes: dict[str, Any]) -> None:
        for key, value in changes.items():
            if self.unavailable.get(key, 0) > 0:
                self.unavailable[key] -= 1
                raise StateUnavailableError(f"state {key!r}: HTTP 503")
            rivals = self._rivals.get(key)
            if rivals:
                rival = rivals.pop(0)
                current = copy.deepcopy(self.documents.get(key, {}))
                rival(current)
                self._store(key, current)
            state = dict(value)
            etag = state.pop(ETAG_KEY, None)
            stored = self.documents.get(key)
            if (etag is None and stored is not None) or (
                etag not in (None, "*") and (stored is None or stored[ETAG_KEY] != etag)
            ):
                raise StateConflictError(f"state {key!r} changed since it was read")
            value[ETAG_KEY] = self._store(key, state)

    def _store(self, key: str, state: dict[str, Any]) -> str:
        self.writes += 1
        etag = str(next(self._versions))
        self.documents[key] = {**copy.deepcopy({k: v for k, v in state.items() if k != ETAG_KEY}), ETAG_KEY: etag}
        return etag

    async def delete(self, keys: list[str]) -> None:
        for key in keys:
            self.documents.pop(key, None)
