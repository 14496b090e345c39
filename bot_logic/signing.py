"""Signed JSON over a channel that may re-serialise it: one scheme for every signed event the bot trusts
(the worker's operation results, bot_logic/operation_protocol.py; an agent hub's handoff statuses,
bot_logic/handoff.py).

The signer signs the exact JSON text of the payload and sends that text, not an object: Direct Line
re-serialises event values on the way (and may drop empty objects or reformat numbers and dates), so
verifying the text received is the only check a faithful-but-different serialisation cannot break.

    value = {"payload": "<JSON text>", "signature": "<hex HMAC-SHA256 of that text with the key>"}
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any


def digest(text: str, key: str) -> str:
    """Hex HMAC-SHA256 of `text` (UTF-8) with `key` (UTF-8)."""
    return hmac.new(key.encode(), text.encode(), hashlib.sha256).hexdigest()


def sign(payload: Mapping[str, Any], key: str) -> dict[str, str]:
    """The event value carrying `payload` and its signature."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return {"payload": text, "signature": digest(text, key)}


def is_signed_shape(value: object) -> bool:
    """Whether `value` has the shape of a signed value at all (a text payload and a text signature)."""
    return (
        isinstance(value, Mapping) and isinstance(value.get("payload"), str) and isinstance(value.get("signature"), str)
    )


def verified_payload(value: object, key: str) -> dict[str, Any] | None:
    """The payload if `value` carries a valid signature over it, else None."""
    if not isinstance(value, Mapping) or not is_signed_shape(value):
        return None
    text, signature = value["payload"], value["signature"]
    if not hmac.compare_digest(signature.encode(), digest(text, key).encode()):
        return None
    try:
        payload = json.loads(text)
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None
