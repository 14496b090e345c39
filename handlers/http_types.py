"""Plain data for HTTP handlers, so tests call them without the Functions runtime."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class HttpRequestData:
    method: str
    headers: Mapping[str, str]  # keys lower-cased
    body: bytes

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")


@dataclass(frozen=True)
class HttpResponseData:
    status: int
    body: Any = None  # JSON-serialisable, or None for an empty body
    headers: dict[str, str] = field(default_factory=dict)

    def body_bytes(self) -> bytes:
        return b"" if self.body is None else json.dumps(self.body).encode()


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> HttpResponseData:
    return HttpResponseData(status, {"error": {"code": code, "message": message}}, headers or {})


# Channels send shallow activities (an Adaptive Card's submitted data is a few levels deep). json.loads
# fails with RecursionError near Python's limit of ~1000 frames, and whatever walks the activity later
# (the SDK's deserializer, deepcopy, state serializers) recurses too, within the turn's own stack: so
# deep JSON is refused here, not wherever it would happen to break.
MAX_JSON_DEPTH = 64


class BadJson(ValueError):
    """The body is not JSON the app can carry on (to a turn, a queue, a store); the message says why."""


def _reject_constant(name: str) -> Any:
    # json.loads accepts NaN and Infinity, which are not JSON (RFC 8259): a strict parser (Cosmos DB,
    # a channel) would refuse them wherever the value is sent on.
    raise BadJson(f"{name} is not a JSON value")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 parses as infinity
        raise BadJson(f"the number {text[:20]} is out of range")
    return value


def _depth(document: Any) -> int:
    """How deeply arrays and objects nest in a parsed document, found without recursing."""
    deepest = 0
    pending = [(document, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, dict | list):
            deepest = max(deepest, depth)
            children = value.values() if isinstance(value, dict) else value
            pending.extend((child, depth + 1) for child in children)
    return deepest


def parse_json(raw: bytes) -> Any:
    """A request body parsed strictly: UTF-8, no NaN or Infinity, no out-of-range numbers, no deep
    nesting; raises BadJson saying why."""
    try:
        # Decoded as UTF-8 first: json.loads would guess UTF-16 or UTF-32 from a byte-order mark.
        document = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:
        raise BadJson(f"it nests deeper than {MAX_JSON_DEPTH} levels") from None
    except BadJson:
        raise
    except UnicodeDecodeError:
        raise BadJson("it is not UTF-8 text") from None
    except ValueError as failure:  # JSONDecodeError names the position; int() its digit limit
        raise BadJson(str(failure)) from None
    if _depth(document) > MAX_JSON_DEPTH:
        raise BadJson(f"it nests deeper than {MAX_JSON_DEPTH} levels")
    return document
