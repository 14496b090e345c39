"""What the bot remembers about a user across conversations (user state, no TTL)."""

from __future__ import annotations

from typing import Any, cast

from botbuilder.core import StatePropertyAccessor, TurnContext

PROFILE_PROPERTY = "UserProfile"
MENU_SEEN = "menuSeen"  # the user has seen the full menu once; later prompts are short


async def get_profile(accessor: StatePropertyAccessor, context: TurnContext) -> dict[str, Any]:
    return cast(dict[str, Any], await accessor.get(context, dict))


def display_name(profile: dict[str, Any]) -> str | None:
    name = profile.get("name")
    return name if isinstance(name, str) and name else None
