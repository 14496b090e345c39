"""The bot's replies: the SDK's Connector client, sent over aiohttp (services/channel/connector_sender.py).

What a user would notice if the sender were wrong: replies that never arrive, arrive unsigned, arrive
twice, wait minutes on a dead channel, or a channel's 429 no longer honoured."""

from __future__ import annotations

import asyncio
import datetime
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from botbuilder.schema import Activity, ChannelAccount, ConversationAccount
from botframework.connector.aio import ConnectorClient
from botframework.connector.auth import MicrosoftAppCredentials
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from msrest.exceptions import ClientRequestError, HttpOperationError
from msrest.pipeline.async_requests import AsyncRequestsCredentialsPolicy
from msrest.pipeline.universal import RawDeserializer
from msrest.universal_http.async_requests import AsyncRequestsHTTPSender

from services.channel.activity_json import use_plain_bodies
from services.channel.channel_errors import is_permanent, retry_after_of
from services.channel.connector_sender import (
    CONNECT_RETRIES,
    AiohttpConnectorSender,
    ConnectorSessions,
    backoff_seconds,
)
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
        app.router.add_get("/v3/conversations/{conversation}/members", self._members)
        app.router.add_route("*", "/moved/{tail:.*}", self._moved)

    async def _members(self, request: web.Request) -> web.Response:
        self.received.append((str(request.url), dict(request.headers), None))
        return web.json_response([{"id": "user", "name": "Ada"}])

    async def _moved(self, request: web.Request) -> web.Response:
        self.received.append((str(request.url), dict(request.headers), None))
        return web.json_response({"id": "after-redirect"})

    async def _reply(self, request: web.Request) -> web.Response:
        self.received.append((str(request.url), dict(request.headers), await request.json()))
        if self.status in (303, 307, 308):
            moved = {"error": {"code": "Moved", "message": "elsewhere"}}
            return web.json_response(moved, status=self.status, headers={"Location": f"/moved{request.path}"})
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


@pytest.fixture(autouse=True)
def sdk_sends(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The methods of the calls that went through the SDK's own sender (requests, in a thread)."""
    calls: list[str] = []
    original = AsyncRequestsHTTPSender.send

    async def recorded(self: Any, request: Any, **kwargs: Any) -> Any:
        calls.append(request.method)
        return await original(self, request, **kwargs)

    monkeypatch.setattr(AsyncRequestsHTTPSender, "send", recorded)
    yield calls


def _client(url: str, sessions: ConnectorSessions, app_id: str = "", timeout: float | None = None) -> ConnectorClient:
    client = ConnectorClient(_TokenCredentials(app_id, "secret" if app_id else ""), base_url=url)
    use_plain_bodies(client)
    if timeout is not None:
        client.config.connection.timeout = timeout
    sessions.send_over_aiohttp(client)
    return client


@pytest.mark.usefixtures("no_proxy_variables")
async def test_a_reply_reaches_the_channel_signed_with_the_bots_token_and_its_id_comes_back(
    channel: Channel, sessions: ConnectorSessions, sdk_sends: list[str]
) -> None:
    client = _client(channel.url, sessions, app_id="00000000-0000-0000-0000-000000000001")
    answer = await client.conversations.reply_to_activity("conv-1", "act-1", _reply("hello"))
    assert answer.id == "reply-1"
    [(url, headers, body)] = channel.received
    assert url.endswith("/v3/conversations/conv-1/activities/act-1")
    assert headers["Authorization"] == "Bearer token-from-entra"
    assert headers["Content-Type"].startswith("application/json")
    assert headers["User-Agent"] == client.config.user_agent
    assert body["text"] == "hello" and body["type"] == "message"
    assert sdk_sends == []  # not requests in a thread


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
    # The client's own user agent policy (which add_user_agent changes), not a new one.
    assert ours.config.pipeline._impl_policies[0]._policy is ours.config.user_agent_policy


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
async def test_a_silent_channel_is_given_up_after_the_clients_timeout_and_not_asked_again(
    sessions: ConnectorSessions,
) -> None:
    held: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    client = _client(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", sessions, timeout=0.3)
    started = time.monotonic()
    with pytest.raises(ClientRequestError):
        await asyncio.wait_for(client.conversations.reply_to_activity("conv-1", "act-1", _reply()), timeout=10)
    assert time.monotonic() - started < 5  # the SDK's default is 100 s; the client's own setting decides
    assert len(held) == 1  # the channel may have taken it: not sent again
    for writer in held:
        writer.close()
    server.close()


@pytest.mark.parametrize("status", [303, 307])
@pytest.mark.usefixtures("no_proxy_variables")
async def test_a_redirect_answering_a_reply_fails_the_send_and_is_not_followed(
    channel: Channel, sessions: ConnectorSessions, status: int
) -> None:
    """Following it would post the reply somewhere else, or (303) turn it into a GET that "succeeds"."""
    channel.status = status
    with pytest.raises(HttpOperationError) as raised:
        await _client(channel.url, sessions).conversations.reply_to_activity("conv-1", "act-1", _reply())
    assert [url.split("/v3/")[0].endswith("/moved") for url, _, _ in channel.received] == [False]
    assert not is_permanent(raised.value)


@pytest.mark.usefixtures("no_proxy_variables")
async def test_calls_other_than_posts_go_through_the_sdks_own_sender(
    channel: Channel, sessions: ConnectorSessions, sdk_sends: list[str]
) -> None:
    """GET, PUT, DELETE keep everything requests did for them (urllib3's status retries, redirects, streaming)."""
    client = _client(channel.url, sessions, app_id="00000000-0000-0000-0000-000000000001")
    members = await client.conversations.get_conversation_members("conv-1")
    assert [m.name for m in members] == ["Ada"] and sdk_sends == ["GET"]
    [(_, headers, _)] = channel.received
    assert headers["Authorization"] == "Bearer token-from-entra"
    await client.conversations.reply_to_activity("conv-1", "act-1", _reply())
    assert sdk_sends == ["GET"]


def _proxy_variables_only(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    for name, value in values.items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "ALL_PROXY"])
async def test_a_reply_goes_through_the_proxy_the_environment_names_unless_no_proxy_exempts_it(
    monkeypatch: pytest.MonkeyPatch, channel: Channel, sessions: ConnectorSessions, variable: str
) -> None:
    async with Channel() as proxy:
        _proxy_variables_only(monkeypatch, **{variable: proxy.url})
        client = _client("http://channel.example.com", sessions)
        await client.conversations.reply_to_activity("conv-1", "act-1", _reply())
        [(url, _, _)] = proxy.received
        assert url.startswith("http://channel.example.com/v3/conversations/conv-1/")  # asked as a proxy is

        _proxy_variables_only(monkeypatch, **{variable: proxy.url, "NO_PROXY": "127.0.0.0/8"})  # a range, as requests
        await _client(channel.url, sessions).conversations.reply_to_activity("conv-1", "act-1", _reply())
        assert len(channel.received) == 1 and len(proxy.received) == 1


def test_a_channel_behind_an_https_proxy_keeps_the_sdks_sender(
    monkeypatch: pytest.MonkeyPatch, sessions: ConnectorSessions
) -> None:
    _proxy_variables_only(monkeypatch, HTTPS_PROXY="https://proxy.example.com:8443")
    behind = _client("https://channel.example.com", sessions)
    _proxy_variables_only(monkeypatch)
    direct = _client("https://channel.example.com", sessions)
    assert not isinstance(behind.config.pipeline._sender, AiohttpConnectorSender)
    assert isinstance(direct.config.pipeline._sender, AiohttpConnectorSender)


def _certificate_authority(directory: Path) -> tuple[Path, ssl.SSLContext]:
    """A CA of the test's own (its certificate in a PEM bundle) and a server context for 127.0.0.1 signed by it."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    import ipaddress

    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    bundle = directory / "ca.pem"
    bundle.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (directory / "server.pem").write_bytes(server.public_bytes(serialization.Encoding.PEM))
    (directory / "server.key").write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(directory / "server.pem", directory / "server.key")
    return bundle, context


async def test_an_https_channel_is_trusted_through_requests_ca_bundle_and_refused_without_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bundle, server_tls = _certificate_authority(tmp_path)
    _proxy_variables_only(monkeypatch)
    received: list[str] = []

    async def reply(request: web.Request) -> web.Response:
        received.append(request.path)
        return web.json_response({"id": "over-tls"})

    app = web.Application()
    app.router.add_post("/v3/conversations/{conversation}/activities/{reply_to}", reply)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_tls)
    await site.start()
    url = f"https://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    waits: list[float] = []

    async def no_wait(seconds: float) -> None:
        waits.append(seconds)

    sessions = ConnectorSessions(sleep=no_wait)
    try:
        monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
        monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
        with pytest.raises(ClientRequestError):  # certifi's bundle does not know the test's CA
            await _client(url, sessions).conversations.reply_to_activity("conv-1", "act-1", _reply())
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
        answer = await _client(url, sessions).conversations.reply_to_activity("conv-1", "act-1", _reply())
        assert answer.id == "over-tls" and len(received) == 1
    finally:
        await sessions.close()
        await runner.cleanup()


@pytest.mark.usefixtures("no_proxy_variables")
async def test_after_close_a_send_fails_as_a_transient_error_and_leaves_no_session_open(
    channel: Channel, sessions: ConnectorSessions
) -> None:
    client = _client(channel.url, sessions)
    await client.conversations.reply_to_activity("conv-1", "act-1", _reply())
    await sessions.close()  # the host is shutting down: the outbox sends it again later
    with pytest.raises(ClientRequestError) as refused:
        await client.conversations.reply_to_activity("conv-1", "act-1", _reply())
    assert not is_permanent(refused.value) and retry_after_of(refused.value) is None
    assert len(channel.received) == 1 and sessions._session is None


async def test_a_client_told_not_to_use_the_environment_ignores_its_proxy(
    monkeypatch: pytest.MonkeyPatch, channel: Channel, sessions: ConnectorSessions
) -> None:
    """msrest's `config.proxies.use_env_settings = False` (requests' trust_env) holds for the aiohttp sender too."""
    async with Channel() as proxy:
        _proxy_variables_only(monkeypatch, HTTP_PROXY=proxy.url)
        client = ConnectorClient(_TokenCredentials("", ""), base_url=channel.url)
        client.config.proxies.use_env_settings = False
        sessions.send_over_aiohttp(client)
        await client.conversations.reply_to_activity("conv-1", "act-1", _reply())
        assert len(channel.received) == 1 and proxy.received == []
