"""Direct Line tokens: compact HS256 JWTs signed with the Direct Line secret.

Real Direct Line tokens are JWTs too, and Microsoft's client decodes them (without
checking the signature) to read the `user` claim, so a JWT keeps that behaviour.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# A token for the REST API, and a short-lived one that only opens a conversation's stream.
CONVERSATION_SCOPE = "conversation"
STREAM_SCOPE = "stream"


class TokenError(Exception):
    """The token is malformed, forged, expired or meant for something else."""

    def __init__(self, message: str, *, expired: bool = False) -> None:
        super().__init__(message)
        self.expired = expired


@dataclass(frozen=True)
class TokenClaims:
    conversation_id: str
    user_id: str | None
    scope: str
    expires_at: int


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenService:
    """Issues and verifies conversation-bound tokens; `clock` is injectable so tests never sleep."""

    _HEADER = _b64encode(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())

    def __init__(self, secret: str, issuer: str, clock: Callable[[], float]) -> None:
        self._key = secret.encode("utf-8")
        self._issuer = issuer
        self._clock = clock

    def issue(self, conversation_id: str, user_id: str | None, ttl: int, scope: str = CONVERSATION_SCOPE) -> str:
        now = int(self._clock())
        claims: dict[str, Any] = {
            "conv": conversation_id,
            "scope": scope,
            "iss": self._issuer,
            "aud": self._issuer,
            "iat": now,
            "nbf": now,
            "exp": now + ttl,
        }
        if user_id:
            claims["user"] = user_id
        payload = _b64encode(json.dumps(claims, separators=(",", ":")).encode())
        signing_input = f"{self._HEADER}.{payload}"
        return f"{signing_input}.{self._sign(signing_input)}"

    def verify(self, token: str, scope: str = CONVERSATION_SCOPE) -> TokenClaims:
        parts = token.split(".")
        if len(parts) != 3:
            raise TokenError("malformed token")
        header, payload, signature = parts
        if not hmac.compare_digest(self._sign(f"{header}.{payload}"), signature):
            raise TokenError("invalid token signature")
        try:
            claims = json.loads(_b64decode(payload))
            conversation_id = str(claims["conv"])
            expires_at = int(claims["exp"])
            token_scope = str(claims["scope"])
        except (ValueError, KeyError, TypeError) as exc:
            raise TokenError("malformed token") from exc
        if token_scope != scope:
            raise TokenError(f"a {token_scope} token cannot be used here")
        if self._clock() >= expires_at:
            raise TokenError("token expired", expired=True)
        user = claims.get("user")
        return TokenClaims(conversation_id, str(user) if user else None, token_scope, expires_at)

    def _sign(self, signing_input: str) -> str:
        return _b64encode(hmac.new(self._key, signing_input.encode("ascii"), hashlib.sha256).digest())
