"""Activities as a channel posts them to /api/messages, and the request that carries them."""

from __future__ import annotations

import json
import uuid
from typing import Any

from handlers.http_types import HttpRequestData


def activity(conversation: str, service_url: str, **fields: Any) -> dict[str, Any]:
    base = {
        "type": "message",
        "id": str(uuid.uuid4()),
        "channelId": "directline",
        "serviceUrl": service_url,
        "conversation": {"id": conversation},
        "from": {"id": f"user-of-{conversation}", "name": "User", "role": "user"},
        "recipient": {"id": "bot", "name": "Bot", "role": "bot"},
    }
    base.update(fields)
    return base


def joined(conversation: str, service_url: str) -> dict[str, Any]:
    """The conversationUpdate a channel sends when a user opens a conversation with the bot."""
    return activity(
        conversation,
        service_url,
        type="conversationUpdate",
        membersAdded=[{"id": "bot"}, {"id": f"user-of-{conversation}"}],
    )


def post(body: Any, content_type: str = "application/json", auth: str = "") -> HttpRequestData:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"content-type": content_type}
    if auth:
        headers["authorization"] = auth
    return HttpRequestData("POST", headers, raw)
