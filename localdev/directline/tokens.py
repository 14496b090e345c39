"""Direct Line tokens: HS256 JWTs (PyJWT) signed with a key derived from the Direct Line secret.

Real Direct Line tokens are JWTs too, and Microsoft's client decodes them (without
checking the signature) to read the `user` claim, so a JWT keeps that behaviour.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt

# A token for the REST API, and a short-lived one that only opens a conversation's stream.
CONVERSATION_SCOPE = "conversation"
STREAM_SCOPE = "stream"

_ALGORITHM = "HS256"
_REQUIRED_CLAIMS = ["conv", "scope", "iss", "aud", "iat", "nbf", "exp"]


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


class TokenService:
    """Issues and verifies conversation-bound tokens; `clock` is injectable so tests never sleep.

    PyJWT checks the signature (HS256 only), issuer, audience and that every claim is there. It reads
    the wall clock, so `nbf` and `exp` are checked here against `clock` instead, with no leeway: the
    same process issues and verifies, so there is no clock skew to allow for.
    """

    def __init__(self, secret: str, issuer: str, clock: Callable[[], float]) -> None:
        # 256 bits derived from the secret: HS256 keys should be that long (PyJWT warns about shorter ones),
        # and the secret, itself a bearer credential, never signs anything directly.
        self._key = hashlib.sha256(b"local Direct Line token key\0" + secret.encode("utf-8")).digest()
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
        return jwt.encode(claims, self._key, algorithm=_ALGORITHM)

    def verify(self, token: str, scope: str = CONVERSATION_SCOPE) -> TokenClaims:
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[_ALGORITHM],
                issuer=self._issuer,
                audience=self._issuer,
                options={"require": _REQUIRED_CLAIMS, "verify_exp": False, "verify_nbf": False, "verify_iat": False},
            )
            not_before, expires_at = float(claims["nbf"]), int(claims["exp"])
        except (jwt.InvalidTokenError, TypeError, ValueError) as exc:
            raise TokenError(f"invalid token: {exc}") from exc
        if claims["scope"] != scope:
            raise TokenError(f"a {claims['scope']} token cannot be used here")
        now = self._clock()
        if now < not_before:
            raise TokenError("token not yet valid")
        if now >= expires_at:
            raise TokenError("token expired", expired=True)
        user = claims.get("user")
        return TokenClaims(str(claims["conv"]), str(user) if user else None, scope, expires_at)
