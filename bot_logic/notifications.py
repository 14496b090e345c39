"""The port through which bot logic keeps users reachable for proactive notifications."""

from __future__ import annotations

from typing import Any, Protocol


class NotificationSubscriptions(Protocol):
    async def remember(self, reference: dict[str, Any]) -> None:
        """Keep `reference` (a serialised ConversationReference) as its user's latest conversation,
        and as its conversation's reference."""

    async def subscribe(self, reference: dict[str, Any], topic: str) -> list[str]:
        """Subscribe the reference's user to `topic` (notification_rules.normalise_topic's); the user's topics now.
        Raises ValueError, saying why in words for the user, for a topic it will not take."""

    async def stop_notifications(self, reference: dict[str, Any]) -> list[str]:
        """Stop everything for the reference's user: remove all their subscriptions and turn off
        notices sent to them directly (by user id or conversation id); the topics removed."""

    async def start_notifications(self, reference: dict[str, Any]) -> bool:
        """Turn notices sent to the reference's user directly back on; True if they were off."""
