"""POST /api/directline/token: a Direct Line token for a browser page (Web Chat), bound to a user id.

The page never sees the Direct Line secret: this function exchanges it (`POST /tokens/generate`)
for a token that carries a user id, which the channel makes the `from.id` of everything the page
posts (with enhanced authentication on). The user id keys the user's state (their name) and the
conversation reference that `/api/notify` reaches them by, so who may get a token for an id matters:

* A first call (no body, or `{}`) gets a new id, `dl_` + 128 random bits, and `userProof`: an
  HMAC of the id under a key derived from OperationSigningKey (domain-separated, so it signs
  nothing else and no new secret setting is needed). The page keeps both (localStorage).
* A later call with `{"userId", "userProof"}` gets a token for that same id, once the proof is
  verified (in constant time). The id alone is no credential: it shows up in transcripts and in
  outside systems' notify calls; only the proof, which only this function can make, is.

Answers: 200 `{token, expires_in, conversationId?, userId, userProof}`; 400 naming the bad or
unknown field; 403 for a proof that does not match; 413; 415 for a body that is not JSON; 503
when Direct Line cannot issue a token (after a bounded retry in the client). Nothing is stored.
Rotating OperationSigningKey invalidates every proof: pages then start over as new users.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from handlers.http_types import BadJson, HttpRequestData, HttpResponseData, error, parse_json
from services.channel.directline_client import GeneratedToken

logger = logging.getLogger(__name__)

USER_ID_PREFIX: Final = "dl_"  # Microsoft's enhanced authentication requires it
USER_ID_RANDOM_BYTES: Final = 16  # 128 bits: unguessable
PROOF_LABEL: Final = b"long-operation-bot/directline-user-proof/v1"  # what the derived key is for
MAX_BODY_BYTES: Final = 4096
MAX_FIELD_LENGTH: Final = 256
FIELDS: Final = ("userId", "userProof")
RETRY_AFTER_SECONDS: Final = 5
NO_STORE: Final = {"Cache-Control": "no-store"}


def new_user_id() -> str:
    return USER_ID_PREFIX + secrets.token_hex(USER_ID_RANDOM_BYTES)


def proof_key(signing_key: str) -> bytes:
    """The key user proofs are made with: derived from OperationSigningKey under its own label, so a
    proof is never a valid signature of anything else (nor the other way round)."""
    return hmac.new(signing_key.encode("utf-8"), PROOF_LABEL, hashlib.sha256).digest()


def user_proof(key: bytes, user_id: str) -> str:
    # surrogatepass: JSON can carry a lone surrogate, which must mismatch, not raise
    digest = hmac.new(key, user_id.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class DirectLineTokenDependencies:
    generate_token: Callable[[str], Awaitable[GeneratedToken]]  # user id -> a token bound to it
    proof_key: bytes
    new_user_id: Callable[[], str] = new_user_id


class _Refused(Exception):
    """The request is refused with a 4xx; the message names what is wrong."""

    def __init__(self, message: str, status: int = 400, code: str = "BadRequest") -> None:
        super().__init__(message)
        self.response = error(status, code, message)


def _is_json(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or (media_type.startswith("application/") and media_type.endswith("+json"))


def _returning_user(request: HttpRequestData) -> tuple[str, str] | None:
    """(userId, userProof) from the body, None for a first call; raises _Refused naming what is wrong."""
    if not request.body.strip():
        return None
    content_type = request.header("content-type")
    if not _is_json(content_type):
        shown = content_type or "none"
        raise _Refused(f"Send JSON (Content-Type: application/json), not {shown}.", 415, "unsupported_media_type")
    try:
        data: Any = parse_json(request.body)
    except BadJson as problem:
        raise _Refused(f"The body is not valid JSON: {problem}.") from None
    if not isinstance(data, dict):
        raise _Refused("The body must be a JSON object: {} or {userId, userProof}.")
    unknown = sorted(name for name in data if name not in FIELDS)
    if unknown:
        names = ", ".join(repr(name[:40]) for name in unknown[:5])
        raise _Refused(f"Unknown field(s) {names}: only 'userId' and 'userProof' go here.")
    for name in FIELDS:
        value = data.get(name, "-")
        if not isinstance(value, str) or not value or len(value) > MAX_FIELD_LENGTH:
            raise _Refused(f"'{name}' must be a non-empty string of at most {MAX_FIELD_LENGTH} characters.")
    if not data:
        return None
    missing = [name for name in FIELDS if name not in data]
    if missing:
        raise _Refused(f"'{missing[0]}' is missing: send 'userId' and 'userProof' together.")
    return data["userId"], data["userProof"]


def _proves(key: bytes, user_id: str, given_proof: str) -> bool:
    return hmac.compare_digest(user_proof(key, user_id).encode(), given_proof.encode("utf-8", "surrogatepass"))


async def handle_directline_token(request: HttpRequestData, deps: DirectLineTokenDependencies) -> HttpResponseData:
    if request.method.upper() != "POST":
        return error(405, "MethodNotAllowed", "Use POST.", {"Allow": "POST"})
    if len(request.body) > MAX_BODY_BYTES:
        return error(413, "PayloadTooLarge", f"The body is {len(request.body)} bytes; at most {MAX_BODY_BYTES}.")
    try:
        returning = _returning_user(request)
    except _Refused as refused:
        return refused.response
    if returning is None:
        user_id = deps.new_user_id()
    else:
        user_id, given_proof = returning
        if not _proves(deps.proof_key, user_id, given_proof):
            logger.warning("directline token: refused a user proof that does not match its user id")
            return error(
                403,
                "InvalidUserProof",
                "This userProof was not issued for this userId. Call again without a body for a new user.",
            )
    try:
        generated = await deps.generate_token(user_id)
    except Exception as failure:
        logger.warning("directline token: Direct Line did not issue a token: %s", failure or type(failure).__name__)
        return error(
            503,
            "DirectLineUnavailable",
            "The chat service cannot start a conversation right now. Try again in a few seconds.",
            {"Retry-After": str(RETRY_AFTER_SECONDS), **NO_STORE},
        )
    body: dict[str, Any] = {"token": generated.token, "expires_in": generated.expires_in}
    if generated.conversation_id:
        body["conversationId"] = generated.conversation_id
    body |= {"userId": user_id, "userProof": user_proof(deps.proof_key, user_id)}
    return HttpResponseData(200, body, dict(NO_STORE))
