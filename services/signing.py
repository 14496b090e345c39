"""HMAC signatures on operation results, so the bot trusts only what its own worker sent.

Any Direct Line client can post an event named LongOperationResponse; only the worker
knows OperationSigningKey. The worker signs the exact JSON text of the payload and sends
that text, not an object: Direct Line re-serialises event values on the way (and may drop
empty objects or reformat numbers and dates), so verifying the bytes received is the only
check that cannot be broken by a faithful-but-different serialisation.

    value = {"payload": "<JSON text>", "signature": "<hex HMAC-SHA256 of that text>"}
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any


def _digest(text: str, key: str) -> str:
    return hmac.new(key.encode(), text.encode(), hashlib.sha256).hexdigest()


def sign(payload: Mapping[str, Any], key: str) -> dict[str, str]:
    """The event value carrying `payload` and its signature."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return {"payload": text, "signature": _digest(text, key)}


def verified_payload(value: object, key: str) -> dict[str, Any] | None:
    """The payload if `value` carries a valid signature over it, else None."""
    if not isinstance(value, Mapping):
        return None
    text, signature = value.get("payload"), value.get("signature")
    if not isinstance(text, str) or not isinstance(signature, str):
        return None
    if not hmac.compare_digest(signature, _digest(text, key)):
        return None
    try:
        payload = json.loads(text)
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None
