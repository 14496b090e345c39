"""The Bot Connector client's HTTP sender: the SDK's ConnectorClient and its operations, with the bot's
sends (POST: every reply and proactive message) going out over aiohttp.

msrest's async pipeline sends each call with `requests` in a worker thread: about 1.8 ms of CPU per
reply on this project's machine, against about 0.5 ms for the same POST over aiohttp (bench/README.md).
Only the sender at the end of the pipeline changes. The SDK's operations (URLs, request bodies, reading
answers, ErrorResponseException for anything but 2xx) and the pipeline's policies (user agent, the
credentials that set the Authorization header, request logging) stay as the SDK builds them, and every
call that is not a plain POST (GET, PUT, DELETE; a streamed answer; per-call requests options) still
goes through the SDK's own requests sender, unchanged.

For a POST, what the requests sender did and this one keeps:
* the same headers: the requests session's (where the credentials put Authorization), then the call's;
* retries: a connection that cannot be made is tried three more times, 0 s, 1.6 s and 3.2 s apart, as
  msrest's urllib3 Retry does; a POST that reached the channel is never sent again (urllib3 2 does not
  repeat a POST after an answer or a broken read);
* timeouts: the client's `config.connection.timeout` (100 s) for connecting and between reads;
* TLS: `config.connection.verify` / `cert`, REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE, else certifi's bundle;
* proxies: requests' own choice from HTTP(S)_PROXY / ALL_PROXY / NO_PROXY, made once per client (a
  client serves one channel URL) rather than per request. A client whose channel is reached through an
  https:// proxy keeps the SDK's sender altogether.
What differs: a redirect answering a POST is not followed (the requests sender followed 303, 307, 308);
it fails the send like any answer that is not 2xx.

A later SDK change could break this if msrest's default async pipeline gains or reorders a policy
(tests/unit/test_connector_sender.py compares them), or if botframework-connector moves off msrest.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from msrest.exceptions import ClientRequestError
from msrest.pipeline import Request, Response
from msrest.pipeline.async_abc import AsyncHTTPSender, AsyncPipeline
from msrest.pipeline.async_requests import AsyncPipelineRequestsHTTPSender, AsyncRequestsCredentialsPolicy
from msrest.pipeline.requests import RequestsContext
from msrest.pipeline.universal import RawDeserializer
from msrest.universal_http import ClientRequest
from msrest.universal_http.async_abc import AsyncClientResponse
from msrest.universal_http.async_requests import AsyncRequestsHTTPSender
from multidict import CIMultiDict
from requests import Session
from requests.utils import DEFAULT_CA_BUNDLE_PATH, select_proxy
from yarl import URL

# msrest's ClientRetryPolicy: urllib3 Retry(connect=3, backoff_factor=0.8, BACKOFF_MAX=90).
CONNECT_RETRIES = 3
BACKOFF_FACTOR = 0.8
MAX_BACKOFF_SECONDS = 90.0
# Per-call options msrest hands to requests (its _REQUESTS_KWARGS): a call given any goes to the SDK's sender.
_REQUESTS_OPTIONS = frozenset({"cookies", "verify", "timeout", "allow_redirects", "proxies", "cert"})

Sleep = Callable[[float], Awaitable[None]]


def backoff_seconds(retry: int) -> float:
    """urllib3 2's wait before retry number `retry` (1-based): none before the first, then doubling."""
    if retry <= 1:
        return 0.0
    return min(MAX_BACKOFF_SECONDS, BACKOFF_FACTOR * 2.0 ** (retry - 1))


@dataclass(frozen=True)
class Route:
    """How one client's POSTs reach its channel: the proxy (and its credentials) and the TLS context."""

    proxy: URL | None
    proxy_auth: aiohttp.BasicAuth | None
    tls: ssl.SSLContext | bool  # False: no certificate check (verify=False), as requests would


class ConnectorAnswer(AsyncClientResponse):
    """A channel's answer to a POST, read whole. `internal_response` is the answer itself: msrest's
    HttpOperationError keeps it as `.response`, where services/channel/channel_errors.py reads
    `status_code` and `headers`."""

    def __init__(
        self,
        request: ClientRequest,
        status: int,
        reason: str | None,
        headers: Mapping[str, str],
        body: bytes,
        charset: str | None,
    ) -> None:
        super().__init__(request, None)
        self.internal_response = self
        self.status_code: int = status
        self.reason = reason
        self.headers = CIMultiDict(headers)
        self._body = body
        self._charset = charset

    def body(self) -> bytes:
        return self._body

    def text(self, encoding: str | None = None) -> str:
        # The declared charset, else UTF-8 with an optional BOM (what msrest's RawDeserializer assumes).
        return self._body.decode(encoding or self._charset or "utf-8-sig", errors="replace")

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            raise ClientRequestError(f"{self.status_code} {self.reason} for url: {self.request.url}")


ConnectorRequest = Request[ClientRequest]
ConnectorResponse = Response[ClientRequest, AsyncClientResponse]


class AiohttpConnectorSender(AsyncHTTPSender[ClientRequest, AsyncClientResponse]):
    """Sends a Connector client's POSTs on the process's aiohttp session, anything else with the SDK's sender."""

    def __init__(
        self,
        config: Any,
        sdk_sender: AsyncPipelineRequestsHTTPSender,
        route: Route,
        session: Callable[[], aiohttp.ClientSession],
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._config = config
        self._sdk_sender = sdk_sender  # what msrest's own pipeline ends in, for every call but a plain POST
        self._route = route
        self._session = session
        self._sleep = sleep

    async def __aenter__(self) -> AiohttpConnectorSender:
        await self._sdk_sender.__aenter__()
        return self

    async def __aexit__(self, *exc_details: object) -> None:
        """The aiohttp session is shared by every client and closed with the composition."""
        await self._sdk_sender.__aexit__(*exc_details)

    def build_context(self) -> RequestsContext:
        # The requests session the credentials policy signs: its headers go on every call, as requests sends them.
        return self._sdk_sender.build_context()

    async def send(self, request: ConnectorRequest, **config: Any) -> ConnectorResponse:
        http = request.http_request
        if http.method != "POST" or http.files or config.get("stream", True) or _REQUESTS_OPTIONS & config.keys():
            return await self._sdk_sender.send(request, **config)
        context = request.context or self.build_context()
        headers = {**context.session.headers, **self._config.headers, **http.headers}
        data = http.data.encode("utf-8") if isinstance(http.data, str) else http.data
        timeout = self._config.connection.timeout
        retry = 0
        while True:
            try:
                async with self._session().request(
                    "POST",
                    http.url,
                    data=data,
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout),
                    proxy=self._route.proxy,
                    proxy_auth=self._route.proxy_auth,
                    ssl=self._route.tls,
                    allow_redirects=False,
                ) as answer:
                    body = await answer.read()
                    return Response(
                        request,
                        ConnectorAnswer(http, answer.status, answer.reason, answer.headers, body, answer.charset),
                    )
            except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as error:
                # Nothing reached the channel: safe to try again.
                retry += 1
                if retry > CONNECT_RETRIES:
                    raise ClientRequestError(f"Error occurred in request. {error!r}", error) from error
                await self._sleep(backoff_seconds(retry))
            except (aiohttp.ClientError, TimeoutError) as error:
                raise ClientRequestError(f"Error occurred in request. {error!r}", error) from error


class ConnectorSessions:
    """One aiohttp session for every Connector client of the process, opened on first use (inside the
    event loop) and closed with the composition; after that, sends are refused (a transient failure: the
    outbox sends again later)."""

    def __init__(self, sleep: Sleep = asyncio.sleep) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._tls: dict[tuple[str, Any], ssl.SSLContext] = {}
        self._sleep = sleep

    def opened(self) -> aiohttp.ClientSession:
        if self._closed:
            raise ClientRequestError("the Connector sender is closed: the app is shutting down")
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            # trust_env stays off: aiohttp would look up the proxy and ~/.netrc in a thread on every request.
            self._session, self._loop = aiohttp.ClientSession(), loop
        return self._session

    def send_over_aiohttp(self, client: Any) -> None:
        """Rebuild a botframework ConnectorClient's pipeline as msrest's `_create_default_pipeline` does,
        ending in this process's aiohttp sender (unless its channel is reached through an https:// proxy)."""
        config = client.config
        sdk_sender = AsyncPipelineRequestsHTTPSender(AsyncRequestsHTTPSender(config))
        route = self._route(config, sdk_sender.driver.session)
        if route is None:
            return
        policies: list[Any] = [config.user_agent_policy, RawDeserializer(), config.http_logger_policy]
        if config.credentials:
            policies.insert(1, AsyncRequestsCredentialsPolicy(config.credentials))
        sender = AiohttpConnectorSender(config, sdk_sender, route, self.opened, self._sleep)
        config.pipeline = AsyncPipeline(policies, sender)

    def _route(self, config: Any, session: Session) -> Route | None:
        """requests' own decision for this channel URL (proxy, certificate bundle), taken once, on the
        session the SDK's sender would use, as msrest sets it up."""
        session.trust_env = bool(config.proxies.use_env_settings)
        connection = config.connection
        settings = session.merge_environment_settings(
            config.base_url, dict(config.proxies.proxies), None, connection.verify, connection.cert
        )
        proxy, proxy_auth = None, None
        chosen = select_proxy(config.base_url, settings["proxies"])
        if chosen:
            proxy = URL(chosen if "://" in chosen else f"http://{chosen}")
            if proxy.scheme == "https":
                return None  # TLS to the proxy itself: left to requests
            if proxy.user is not None:
                proxy_auth = aiohttp.BasicAuth(proxy.user, proxy.password or "")
                proxy = proxy.with_user(None)
        if URL(config.base_url).scheme != "https":
            return Route(proxy, proxy_auth, True)
        verify, cert = settings["verify"], settings["cert"]
        if verify is False:
            return Route(proxy, proxy_auth, False)
        return Route(proxy, proxy_auth, self._tls_context(DEFAULT_CA_BUNDLE_PATH if verify is True else verify, cert))

    def _tls_context(self, bundle: str, cert: Any) -> ssl.SSLContext:
        key = (bundle, cert if not isinstance(cert, list) else tuple(cert))
        context = self._tls.get(key)
        if context is None:  # loading a bundle costs ~20 ms: once per bundle and client certificate
            if os.path.isdir(bundle):
                context = ssl.create_default_context(capath=bundle)
            else:
                context = ssl.create_default_context(cafile=bundle)
            if cert:
                certfile, keyfile = (cert, None) if isinstance(cert, str) else cert
                context.load_cert_chain(certfile, keyfile)
            self._tls[key] = context
        return context

    async def close(self) -> None:
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()
