"""Direct Line tokens: what the service accepts, and the forgeries and stale tokens it refuses."""

from __future__ import annotations

import base64
import json
import warnings

import jwt
import pytest

from localdev.directline.tests.support import FakeClock
from localdev.directline.tokens import CONVERSATION_SCOPE, STREAM_SCOPE, TokenError, TokenService

ISSUER = "http://127.0.0.1:7072/v3/directline"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def tokens(clock: FakeClock) -> TokenService:
    return TokenService("short-secret", ISSUER, clock)


def payload(token: str) -> dict[str, object]:
    part = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))))


def test_a_token_carries_its_conversation_and_user_and_lasts_its_ttl(tokens: TokenService, clock: FakeClock) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a short secret still makes a full-length HS256 key: no PyJWT warning
        token = tokens.issue("conv-1", "dl_alice", ttl=60)
        claims = tokens.verify(token)
    assert (claims.conversation_id, claims.user_id, claims.scope) == ("conv-1", "dl_alice", CONVERSATION_SCOPE)
    # Microsoft's client reads `user` from the token without checking the signature.
    assert payload(token)["user"] == "dl_alice"
    clock.advance(59)
    assert tokens.verify(token).expires_at == claims.expires_at
    clock.advance(1)
    with pytest.raises(TokenError) as caught:
        tokens.verify(token)
    assert caught.value.expired


def test_forged_or_foreign_tokens_are_refused(tokens: TokenService, clock: FakeClock) -> None:
    genuine = tokens.issue("conv-1", "dl_alice", ttl=60)
    header, _, signature = genuine.split(".")
    other_payload = tokens.issue("conv-2", "dl_alice", ttl=60).split(".")[1]
    elsewhere = "http://elsewhere/v3/directline"
    forgeries = {
        "unsigned (alg none)": jwt.encode(payload(genuine), None, algorithm="none"),
        "another Direct Line's secret": TokenService("other-secret", ISSUER, clock).issue("conv-1", None, 60),
        "another issuer, same secret": TokenService("short-secret", elsewhere, clock).issue("conv-1", None, 60),
        "another conversation's payload": f"{header}.{other_payload}.{signature}",
        "not a JWT": "a.b.c",
    }
    for what, token in forgeries.items():
        with pytest.raises(TokenError) as caught:
            tokens.verify(token)
        assert not caught.value.expired, what


def test_a_stream_credential_is_not_a_rest_token_and_the_reverse(tokens: TokenService) -> None:
    stream = tokens.issue("conv-1", None, 120, STREAM_SCOPE)
    assert tokens.verify(stream, STREAM_SCOPE).scope == STREAM_SCOPE
    with pytest.raises(TokenError):
        tokens.verify(stream)
    with pytest.raises(TokenError):
        tokens.verify(tokens.issue("conv-1", None, 1800), STREAM_SCOPE)


def test_a_token_issued_later_than_now_is_not_yet_valid(tokens: TokenService, clock: FakeClock) -> None:
    clock.advance(300)
    early = tokens.issue("conv-1", None, 1800)
    clock.advance(-300)
    with pytest.raises(TokenError) as caught:
        tokens.verify(early)
    assert not caught.value.expired
