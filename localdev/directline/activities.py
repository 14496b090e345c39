"""Helpers for activity JSON: ids, timestamps and the accounts the channel fills in."""

from __future__ import annotations

import secrets
import string
from datetime import UTC, datetime
from typing import Any

Activity = dict[str, Any]

_ALPHABET = string.ascii_letters + string.digits


def random_id(length: int = 22) -> str:
    """Letters and digits only: safe in paths and never containing the `|` of activity ids."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def activity_id(conversation_id: str, seq: int) -> str:
    # Same shape as the real service: "<conversationId>|0000012".
    return f"{conversation_id}|{seq:07d}"


def utc_timestamp() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def account(value: Any) -> dict[str, Any] | None:
    """A ChannelAccount dict with a non-empty id, or None."""
    if isinstance(value, dict) and isinstance(value.get("id"), str) and value["id"]:
        return dict(value)
    return None


def is_visible_to_client(activity: Activity, websocket: bool) -> bool:
    """The real service never delivers conversationUpdate, and typing only on the WebSocket."""
    kind = activity.get("type")
    if kind == "conversationUpdate":
        return False
    return kind != "typing" or websocket
