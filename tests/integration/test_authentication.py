"""Bot Framework authentication, offline: tokens from a local stand-in for the Bot Framework token
service (tests/support/entra.py), checked by the SDK's own validation through the real messages handler.

  * a valid token: the turn runs (200) and the reply is sent;
  * a bad token, whatever is wrong with it: 401, and nothing is sent;
  * keys that cannot be fetched (the source refuses, hangs, or answers garbage): 503 with Retry-After,
    without stalling the event loop, and without asking the source again on every request.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import jwt
import pytest
from botframework.connector.auth import AuthenticationConstants, JwtTokenExtractor
from msrest.universal_http.async_requests import AsyncRequestsHTTPSender

from bootstrap import Composition
from handlers.http_types import HttpResponseData
from localdev.emulators import Azurite, CosmosStandIn
from services.turns.authentication import OpenIdKeySource, create_authentication
from services.turns.bot_adapter import FunctionsBotAdapter
from tests.support.activities import activity
from tests.support.app import composed_app, send
from tests.support.clock import FakeClock
from tests.support.connector import RecordingConnector
from tests.support.entra import OUTAGES, FakeEntra, rsa_key

pytestmark = pytest.mark.emulators

APP_ID = "5f0c3a52-1b7e-4c1e-9d0b-6f1c2a3b4c5d"
UNAVAILABLE = "The bot cannot check Bot Framework tokens right now; try again later."


@pytest.fixture
async def entra() -> AsyncIterator[FakeEntra]:
    fake = FakeEntra()
    await fake.start()
    yield fake
    await fake.stop()


@asynccontextmanager
async def secured_app(
    azurite: Azurite, cosmos: CosmosStandIn, entra: FakeEntra, **key_options: Any
) -> AsyncIterator[Composition]:
    """The app with an app id (authentication on), finding its signing keys at the fake."""
    async with composed_app(azurite, cosmos, MicrosoftAppId=APP_ID, MicrosoftAppPassword="secret") as app:
        authentication = create_authentication(
            app.settings, entra.key_sources(**key_options), credentials=entra.bot_credentials(app.settings)
        )
        app.adapter = FunctionsBotAdapter(authentication, APP_ID)  # as bootstrap builds it, with the fake's keys
        try:
            yield app
        finally:
            await authentication.close()


@pytest.fixture
async def bot(azurite: Azurite, cosmos: CosmosStandIn, entra: FakeEntra) -> AsyncIterator[Composition]:
    async with secured_app(azurite, cosmos, entra) as app:
        yield app


def bearer(token: str) -> str:
    return f"Bearer {token}"


async def post_message(app: Composition, connector: RecordingConnector, auth: str) -> tuple[str, HttpResponseData]:
    """A user's "hi" in a new conversation; returns the conversation and the bot's answer."""
    conversation = f"c-{uuid.uuid4()}"
    return conversation, await send(app, activity(conversation, connector.service_url, text="hi"), auth=auth)


def assert_unavailable(response: HttpResponseData) -> None:
    assert response.status == 503
    assert int(response.headers["Retry-After"]) >= 1
    assert response.body["error"]["message"] == UNAVAILABLE


# --- a valid token -----------------------------------------------------------------------------


async def test_a_valid_channel_token_runs_the_turn(
    bot: Composition, entra: FakeEntra, connector: RecordingConnector, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("a reply went through the SDK's requests sender, in a thread")

    monkeypatch.setattr(AsyncRequestsHTTPSender, "send", refuse)
    token = entra.channel_token(APP_ID, connector.service_url)
    conversation, response = await post_message(bot, connector, bearer(token))
    assert response.status == 200
    assert connector.messages(conversation) == ["What's your name?"]
    # The reply is signed with the bot's own token for the channel, not the channel's token.
    [signed] = {a["_authorization"] for a in connector.activities if a["_conversation"] == conversation}
    assert (
        signed.startswith("Bearer ") and jwt.decode(signed[7:], options={"verify_signature": False})["appid"] == APP_ID
    )


# --- bad tokens: 401 ---------------------------------------------------------------------------

Header = Callable[[FakeEntra, str], str]  # (the fake, the activity's serviceUrl) -> Authorization header
HOUR = 3600


def _now() -> int:
    return int(time.time())


BAD_HEADERS: dict[str, Header] = {
    # Past the SDK's five minutes of clock skew.
    "expired": lambda e, url: bearer(
        e.channel_token(APP_ID, url, exp=_now() - 600, nbf=_now() - HOUR, iat=_now() - HOUR)
    ),
    "not yet valid": lambda e, url: bearer(e.channel_token(APP_ID, url, nbf=_now() + HOUR, iat=_now() + HOUR)),
    "without expiry": lambda e, url: bearer(e.channel_token(APP_ID, url, exp=None)),
    "for another bot": lambda e, url: bearer(e.channel_token(str(uuid.uuid4()), url)),
    "without audience": lambda e, url: bearer(e.channel_token(APP_ID, url, aud=None)),
    "from another issuer": lambda e, url: bearer(e.channel_token(APP_ID, url, iss="https://issuer.example.com")),
    "for another serviceUrl": lambda e, url: bearer(e.channel_token(APP_ID, "https://elsewhere.example.com/")),
    "without serviceurl": lambda e, url: bearer(e.channel_token(APP_ID, url, serviceurl=None)),
    "signed with another key under the published key's id": lambda e, url: bearer(
        e.channel_token(APP_ID, url, key=rsa_key("attacker"))
    ),
    "signed with an unpublished key": lambda e, url: bearer(
        e.channel_token(APP_ID, url, key=rsa_key("attacker"), key_id="attacker-key")
    ),
    "naming no key": lambda e, url: bearer(e.channel_token(APP_ID, url, key_id=None)),
    "signed with a key endorsed for another channel": lambda e, url: bearer(
        e.channel_token(APP_ID, url, key=e.teams_key, key_id=FakeEntra.TEAMS_ONLY_KEY_ID)
    ),
    "unsigned (alg none)": lambda e, url: bearer(e.channel_token(APP_ID, url, algorithm="none")),
    "HMAC-signed with the public key": lambda e, url: bearer(
        e.hs256_with_public_key(
            {
                "iss": AuthenticationConstants.TO_BOT_FROM_CHANNEL_TOKEN_ISSUER,
                "aud": APP_ID,
                "serviceurl": url,
                "exp": _now() + HOUR,
            }
        )
    ),
    "with a tampered payload": lambda e, url: bearer(_tampered(e, url)),
    "malformed": lambda e, url: "Bearer not.a.jwt",
    "not base64": lambda e, url: "Bearer eyJhbGciOi%%%.e30.sig",
    "without the Bearer scheme": lambda e, url: e.channel_token(APP_ID, url),
    "in another scheme": lambda e, url: "Basic dXNlcjpwYXNzd29yZA==",
    "only the scheme": lambda e, url: "Bearer",
    "with extra parts": lambda e, url: f"Bearer {e.channel_token(APP_ID, url)} extra",
    "absent": lambda e, url: "",
}


def _tampered(entra: FakeEntra, service_url: str) -> str:
    """A signed token's signature under another token's claims (here: one that lives a day longer)."""
    header, _, signature = entra.channel_token(APP_ID, service_url).split(".")
    _, longer_lived, _ = entra.channel_token(APP_ID, service_url, exp=_now() + 24 * HOUR).split(".")
    return f"{header}.{longer_lived}.{signature}"


@pytest.mark.parametrize("header", BAD_HEADERS.values(), ids=BAD_HEADERS.keys())
async def test_a_bad_token_is_401_and_nothing_is_sent(
    bot: Composition, entra: FakeEntra, connector: RecordingConnector, header: Header
) -> None:
    conversation, response = await post_message(bot, connector, header(entra, connector.service_url))
    assert response.status == 401
    assert response.body["error"]["message"] == "The request does not carry a valid Bot Framework token."
    assert "Retry-After" not in response.headers
    assert connector.messages(conversation) == []


async def test_junk_is_refused_without_asking_the_key_source(
    bot: Composition, entra: FakeEntra, connector: RecordingConnector
) -> None:
    """A token that cannot be one is a 401 even while the key source is down: the outage is not blamed."""
    await entra.fail_with("refused")
    for name in ("malformed", "in another scheme", "absent", "from another issuer", "naming no key"):
        _, response = await post_message(bot, connector, BAD_HEADERS[name](entra, connector.service_url))
        assert response.status == 401, name
    assert entra.metadata_requests == 0
    assert connector.activities == []


# --- keys that cannot be had: 503 --------------------------------------------------------------


@pytest.mark.parametrize("outage", OUTAGES)
async def test_a_key_source_that_cannot_be_used_is_503_with_retry_after(
    azurite: Azurite, cosmos: CosmosStandIn, entra: FakeEntra, connector: RecordingConnector, outage: str
) -> None:
    async with secured_app(azurite, cosmos, entra, timeout_seconds=0.5) as bot:
        await entra.fail_with(outage)
        conversation, response = await post_message(
            bot, connector, bearer(entra.channel_token(APP_ID, connector.service_url))
        )
    assert_unavailable(response)
    assert connector.messages(conversation) == []


async def test_a_hanging_key_source_is_given_up_on_in_time_while_the_event_loop_keeps_running(
    azurite: Azurite, cosmos: CosmosStandIn, entra: FakeEntra, connector: RecordingConnector
) -> None:
    loop = asyncio.get_running_loop()
    ticks: list[float] = []

    async def tick() -> None:  # measures the loop's latency: every other coroutine waits as long
        while True:
            ticks.append(loop.time())
            await asyncio.sleep(0.01)

    async with secured_app(azurite, cosmos, entra, timeout_seconds=1.0) as bot:
        await entra.fail_with("hang")
        token = entra.channel_token(APP_ID, connector.service_url)
        ticker = asyncio.create_task(tick())
        started = loop.time()
        _, response = await post_message(bot, connector, bearer(token))
        elapsed = loop.time() - started
        ticker.cancel()
    assert_unavailable(response)
    assert 1.0 <= elapsed < 3.0  # the whole fetch is bounded by its timeout
    gaps = [later - earlier for earlier, later in itertools.pairwise(ticks)]
    assert len(ticks) > 20 and max(gaps) < 0.25, f"the event loop stalled for {max(gaps):.2f} s"


async def test_during_an_outage_one_attempt_is_shared_and_then_requests_fail_fast_until_retry_after(
    azurite: Azurite, cosmos: CosmosStandIn, entra: FakeEntra, connector: RecordingConnector
) -> None:
    clock = FakeClock(1000.0)
    async with secured_app(azurite, cosmos, entra, timeout_seconds=1.0, retry_after_seconds=10, clock=clock) as bot:
        await entra.fail_with("hang")
        token = bearer(entra.channel_token(APP_ID, connector.service_url))
        together = await asyncio.gather(*(post_message(bot, connector, token) for _ in range(5)))
        assert [response.status for _, response in together] == [503] * 5
        assert entra.metadata_requests == 1  # five requests, one fetch

        clock.now += 4
        loop = asyncio.get_running_loop()
        started = loop.time()
        _, response = await post_message(bot, connector, token)
        assert loop.time() - started < 1.0  # not another wait for the timeout
        assert_unavailable(response)
        assert response.headers["Retry-After"] == "6"
        assert entra.metadata_requests == 1

        entra.restore()
        clock.now += 6
        conversation, response = await post_message(bot, connector, token)
    assert response.status == 200
    assert entra.metadata_requests == 2
    assert connector.messages(conversation) == ["What's your name?"]


@asynccontextmanager
async def keys_due_while_source_fails(
    azurite: Azurite,
    cosmos: CosmosStandIn,
    entra: FakeEntra,
    connector: RecordingConnector,
    outage: str,
    timeout_seconds: float,
) -> AsyncIterator[tuple[Composition, str]]:
    """A secured app that has fetched the keys once, now due for a refresh while the key source has
    the outage; the app and a valid channel token's header."""
    clock = FakeClock(1000.0)
    async with secured_app(azurite, cosmos, entra, timeout_seconds=timeout_seconds, clock=clock) as bot:
        token = bearer(entra.channel_token(APP_ID, connector.service_url))
        assert (await post_message(bot, connector, token))[1].status == 200
        await entra.fail_with(outage)
        clock.now += 2 * 24 * 3600  # the keys are due for a refresh
        yield bot, token


async def test_keys_already_fetched_keep_serving_while_the_source_is_down(
    azurite: Azurite, cosmos: CosmosStandIn, entra: FakeEntra, connector: RecordingConnector
) -> None:
    async with keys_due_while_source_fails(azurite, cosmos, entra, connector, "status 500", 1.0) as (bot, token):
        conversation, response = await post_message(bot, connector, token)
        assert response.status == 200
        assert connector.messages(conversation) == ["What's your name?"]
        assert entra.metadata_requests == 2

        # A key the bot has never seen may be a new one: it cannot be judged until the source is back.
        unknown = BAD_HEADERS["signed with an unpublished key"](entra, connector.service_url)
        _, response = await post_message(bot, connector, unknown)
    assert_unavailable(response)


async def test_while_old_keys_are_refreshed_only_one_request_waits_for_the_source(
    azurite: Azurite, cosmos: CosmosStandIn, entra: FakeEntra, connector: RecordingConnector
) -> None:
    async with keys_due_while_source_fails(azurite, cosmos, entra, connector, "hang", 2.0) as (bot, token):
        waiting = asyncio.create_task(post_message(bot, connector, token))  # refreshes, and waits
        await entra.wait_for_metadata_requests(2)
        _, meanwhile = await post_message(bot, connector, token)
        assert meanwhile.status == 200  # answered with the keys it has, not held behind the refresh
        assert not waiting.done()
        _, waited = await waiting
    assert waited.status == 200  # the refresh gave up in time; the old keys still serve
    assert entra.metadata_requests == 2


async def test_the_app_fetches_microsofts_keys_only_through_the_bounded_key_source(
    azurite: Azurite, cosmos: CosmosStandIn
) -> None:
    """Production wiring: the adapter bootstrap builds puts the key source in the SDK's key cache for
    the Bot Framework's and Entra's metadata URLs, so the SDK's own blocking fetch never runs."""
    urls = (
        AuthenticationConstants.TO_BOT_FROM_CHANNEL_OPENID_METADATA_URL,
        AuthenticationConstants.TO_BOT_FROM_EMULATOR_OPENID_METADATA_URL,
    )
    for url in urls:
        JwtTokenExtractor.metadataCache.pop(url, None)
    async with composed_app(azurite, cosmos, MicrosoftAppId=APP_ID, MicrosoftAppPassword="secret") as app:
        assert app.adapter is not None
    for url in urls:
        source = JwtTokenExtractor.get_open_id_metadata(url)
        assert isinstance(source, OpenIdKeySource)
        assert source.metadata_url == url
