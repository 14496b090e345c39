"""When a conversation expires, and the fields that let Cosmos DB find expired ones by index."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from bot_logic.clock import Clock
from bot_logic.conversation_record import RECORD_PROPERTY


def conversation_index_fields(expire_after_seconds: int, clock: Clock) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """Top-level document fields derived from a conversation's state at each write."""

    def fields(state: Mapping[str, Any]) -> dict[str, Any]:
        record = state.get(RECORD_PROPERTY) or {}
        last_access = record.get("lastAccessAt") or clock()
        return {"lastAccessAt": last_access, "expiresAt": last_access + expire_after_seconds}

    return fields
