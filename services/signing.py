"""HMAC signatures on operation results, so the bot trusts only what its own worker sent.

Any Direct Line client can post an event named LongOperationResponse; only the worker
knows OperationSigningKey. The signature covers the whole payload (operation id,
conversation, outcome, result text, expiry), in a canonical JSON form.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

SIGNATURE_FIELD = "signature"


def _canonical(payload: Mapping[str, Any]) -> bytes:
    unsigned = {k: v for k, v in payload.items() if k != SIGNATURE_FIELD}
    return json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sign(payload: Mapping[str, Any], key: str) -> dict[str, Any]:
    """The payload with its signature added."""
    digest = hmac.new(key.encode(), _canonical(payload), hashlib.sha256).hexdigest()
    return {**payload, SIGNATURE_FIELD: digest}


def signature_valid(payload: Mapping[str, Any], key: str) -> bool:
    given = payload.get(SIGNATURE_FIELD)
    if not isinstance(given, str):
        return False
    try:
        expected = hmac.new(key.encode(), _canonical(payload), hashlib.sha256).hexdigest()
    except (TypeError, ValueError):
        return False
    return hmac.compare_digest(given, expected)
