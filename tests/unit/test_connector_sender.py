"""The bot's replies: the SDK's Connector client, sent over aiohttp (services/channel/connector_sender.py).

What a user would notice if the sender were wrong: replies that never arrive, arrive unsigned, arrive
twice, wait minutes on a dead channel, or a channel's 429 no longer honoured."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import requests
from aiohttp import web
from botbuilder.schema import Activity, ChannelAccount, ConversationAccount
from botframework.connector.aio import ConnectorClient
from botframework.connector.auth import MicrosoftAppCredentials
from msrest.exceptions import ClientRequestError, HttpOperationError
from msrest.pipeline.async_requests import AsyncRequestsCredentialsPolicy
from msrest.pipeline.universal import RawDeserializer

from services.channel.activity_json import use_plain_bodies
from services.channel.channel_errors import is_permanent, retry_after_of
from services.channel.connector_sender import CONNECT_RETRIES, ConnectorSessions, backoff_seconds, proxy_for
from tests.support.local_server import LocalServer


class Channel(LocalServer):
    """Answers the Connector's reply route with `status` (and `headers`); records what it was sent."""

    def __init__(self) -> None:
        super().__init__()
        self.status = 200
        self.headers: dict[str, str] = {}
        self.received: list[tuple[str, dict[str, str], Any]] = []  # (URL as asked, headers, JSON body)

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v3/conversations/{conversation}/activities/{reply_to}", self._reply)

    async def _reply(self, request: web.Request) -> web.Response:
        self.received.append((str(request.url), dict(request.headers), await request.json()))
        if self.status >= 400:
            return web.json_response(
                {"error": {"code": "Nope", "message": "no"}}, status=self.status, headers=self.headers
            )
        return web.json_response({"id": f"reply-{len(self.received)}"}, status=self.status)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class _TokenCredentials(MicrosoftAppCredentials):
    """The SDK's app credentials, with the token MSAL would fetch from Microsoft Entra ID given here."""

    def get_access_token(self, force_refresh: bool = False) -> str:
        return "token-from-entra"


def _reply(text: str = "hello") -> Activity:
    return Activity(
        type="message",
        text=text,
        conversation=ConversationAccount(id="conv-1"),
        from_property=ChannelAccount(id="bot"),
        recipient=ChannelAccount(id="user"),
        reply_to_id="act-1",
    )


@pytest.fixture
async def channel() -> AsyncIterator[Channel]:
    async with Channel() as server:
        yield server


@pytest.fixture
async def sessions() -> AsyncIterator[ConnectorSessions]:
    opened = ConnectorSessions()
    yield opened
    await opened.close()


@pytest.fixture
def no_proxy_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "NO_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "no_proxy",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def requests_forbidden(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The SDK's own sender would call requests (in a thread): make that fail loudly."""

    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("a reply went through requests")

    monkeypatch.setattr(requests.Session, "request", refuse)
    yield


def _client(url: str, sessions: ConnectorSessions, app_id: str = "", timeout: float | None = None) -> ConnectorClient:
    client = ConnectorClient(_TokenCredentials(app_id, "secret" if app_id else ""), base_url=url)
    use_plain_bodies(client)
    if timeout is not None:
        client.config.connection.timeout = timeout
    sessions.send_over_aiohttp(client)
    return client


@pytest.mark.usefixtures("no_proxy_variables", "requests_forbidden")
async def test_a_reply_reaches_the_channel_signed_with_the_bots_token_and_its_id_comes_back(
    channel: Channel, sessions: ConnectorSessions
) -> None:
    client = _client(channel.url, sessions, app_id="00000000-0000-0000-0000-000000000001")
    answer = await client.conversations.reply_to_activity("conv-1", "act-1", _reply("hello"))
    assert answer.id == "reply-1"
    [(url, headers, body)] = channel.received
    assert url.endswith("/v3/conversations/conv-1/activities/act-1")
    assert headers["Authorization"] == "Bearer token-from-entra"
    assert headers["Content-Type"].startswith("application/json")
    assert "BotBuilder" in headers["User-Agent"] or "msrest" in headers["User-Agent"]
    assert body["text"] == "hello" and body["type"] == "message"


@pytest.mark.usefixtures("no_proxy_variables")
async def test_without_an_app_id_a_reply_carries_no_authorization(
    channel: Channel, sessions: ConnectorSessions
) -> None:
    client = _client(channel.url, sessions)
    await client.conversations.reply_to_activity("conv-1", "act-1", _reply())
    [(_, headers, _)] = channel.received
    assert "Authorization" not in headers


def test_the_pipeline_has_the_sdks_policies_in_the_sdks_order(sessions: ConnectorSessions) -> None:
    """If msrest's default pipeline gains or reorders a policy, the rebuilt one must follow: this fails first."""
    ours = ConnectorClient(_TokenCredentials("app", "secret"), base_url="http://127.0.0.1:9")
    theirs = ConnectorClient(_TokenCredentials("app", "secret"), base_url="http://127.0.0.1:9")
    sessions.send_over_aiohttp(ours)

    def kinds(client: ConnectorClient) -> list[type]:
        return [type(getattr(p, "_policy", p)) for p in client.config.pipeline._impl_policies]

    assert kinds(ours) == kinds(theirs)
    assert AsyncRequestsCredentialsPolicy in kinds(ours) and RawDeserializer in kinds(ours)


@pytest.mark.usefixtures("no_proxy_variables")
async def test_a_channels_429_is_raised_as_the_sdk_raises_it_with_its_retry_after(
    channel: Channel, sessions: ConnectorSessions
) -> None:
    channel.status, channel.headers = 429, {"Retry-After": "7"}
    client = _client(channel.url, sessions)
    with pytest.raises(HttpOperationError) as raised:
        await client.conversations.reply_to_activity("conv-1", "act-1", _reply())
    assert retry_after_of(raised.value) == 7.0
    assert not is_permanent(raised.value)
    assert len(channel.received) == 1


@pytest.mark.usefixtures("no_proxy_variables")
async def test_an_answer_of_503_is_not_sent_again_and_a_404_is_permanent(
    channel: Channel, sessions: ConnectorSessions
) -> None:
    """A POST that reached the channel is never repeated by the sender (the user would see it twice)."""
    client = _client(channel.url, sessions)
    channel.status = 503
    with pytest.raises(HttpOperationError) as unavailable:
        await client.conversations.reply_to_activity("conv-1", "act-1", _reply())
    assert len(channel.received) == 1 and not is_permanent(unavailable.value)
    channel.status = 404
    with pytest.raises(HttpOperationError) as gone:
        await client.conversations.reply_to_activity("conv-1", "act-1", _reply())
    assert is_permanent(gone.value)


@pytest.mark.usefixtures("no_proxy_variables")
async def test_a_channel_that_cannot_be_reached_is_tried_again_with_urllib3s_backoff_then_given_up() -> None:
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    closed = ConnectorSessions(sleep=record)
    server = await asyncio.start_server(lambda _r, _w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()  # nothing listens there now: every connection is refused
    try:
        client = _client(f"http://127.0.0.1:{port}", closed)
        with pytest.raises(ClientRequestError):
            await client.conversations.reply_to_activity("conv-1", "act-1", _reply())
    finally:
        await closed.close()
    assert waits == [backoff_seconds(n) for n in range(1, CONNECT_RETRIES + 1)] == [0.0, 1.6, 3.2]


@pytest.mark.usefixtures("no_proxy_variables")
async def test_a_silent_channel_is_given_up_after_the_clients_timeout(sessions: ConnectorSessions) -> None:
    held: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    client = _client(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", sessions, timeout=0.3)
    started = time.monotonic()
    with pytest.raises(ClientRequestError):
        await asyncio.wait_for(client.conversations.reply_to_activity("conv-1", "act-1", _reply()), timeout=10)
    assert time.monotonic() - started < 5  # the SDK's default is 100 s; the client's own setting decides
    for writer in held:
        writer.close()
    server.close()


async def test_a_reply_goes_through_the_proxy_the_environment_names_unless_no_proxy_exempts_it(
    monkeypatch: pytest.MonkeyPatch, channel: Channel, sessions: ConnectorSessions
) -> None:
    for name in ("NO_PROXY", "no_proxy", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    async with Channel() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        via_proxy = "http://channel.example.com"
        assert proxy_for(via_proxy) is not None
        client = _client(via_proxy, sessions)
        await client.conversations.reply_to_activity("conv-1", "act-1", _reply())
        [(url, _, _)] = proxy.received
        assert url.startswith("http://channel.example.com/v3/conversations/conv-1/")  # asked as a proxy is

        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        assert proxy_for(channel.url) is None
        await _client(channel.url, sessions).conversations.reply_to_activity("conv-1", "act-1", _reply())
        assert len(channel.received) == 1 and len(proxy.received) == 1


@pytest.mark.usefixtures("no_proxy_variables")
async def test_replies_still_go_out_after_the_shared_session_was_closed(
    channel: Channel, sessions: ConnectorSessions
) -> None:
    client = _client(channel.url, sessions)
    await sessions.close()  # e.g. a late send during the host's shutdown
    await client.conversations.reply_to_activity("conv-1", "act-1", _reply())
    assert len(channel.received) == 1
