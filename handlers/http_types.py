"""Plain data for HTTP handlers, so tests call them without the Functions runtime."""

from __future__ import annotations

import json
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
