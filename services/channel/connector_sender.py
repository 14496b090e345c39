"""The Bot Connector client's HTTP sender: the SDK's ConnectorClient and its operations, sent over aiohttp.

msrest's async pipeline sends each call with `requests` in a worker thread: about 1.8 ms of CPU per
reply on this project's machine, against about 0.4 ms for the same POST over aiohttp (bench/README.md).
Only the sender at the end of the pipeline changes. The SDK's operations (URLs, request bodies, reading
answers, ErrorResponseException for anything but 2xx) and the pipeline's policies (user agent, the
credentials that set the Authorization header, request logging) stay as the SDK builds them.

What the requests sender did, and this one keeps:
* retries: a connection that cannot be made is tried again, three times, 0 s, 1.6 s and 3.2 s apart,
  as msrest's urllib3 Retry does. A request that reached the channel is never sent again (urllib3 2 does
  not repeat a POST after an answer or a broken read);
* timeouts: the client's `config.connection.timeout` (100 s) for connecting and between reads;
* TLS: certifi's certificate bundle, as requests;
* HTTPS_PROXY / HTTP_PROXY / NO_PROXY, looked up once per client, which serves one channel URL.
  requests looked them up, and ~/.netrc, on every request; ~/.netrc is no longer read.

A later SDK change could break this if msrest's default async pipeline gains a policy (a test compares
the policies), if a Connector operation starts sending files or streaming, or if the SDK moves off msrest.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
import certifi
from msrest.exceptions import ClientRequestError
from msrest.pipeline import Request, Response
from msrest.pipeline.async_abc import AsyncHTTPSender, AsyncPipeline
from msrest.pipeline.async_requests import AsyncRequestsCredentialsPolicy
from msrest.pipeline.universal import RawDeserializer
from msrest.universal_http import ClientRequest
from msrest.universal_http.async_abc import AsyncClientResponse
from multidict import CIMultiDict
from yarl import URL

# msrest's ClientRetryPolicy: urllib3 Retry(connect=3, backoff_factor=0.8, BACKOFF_MAX=90).
CONNECT_RETRIES = 3
BACKOFF_FACTOR = 0.8
MAX_BACKOFF_SECONDS = 90.0

Sleep = Callable[[float], Awaitable[None]]


def backoff_seconds(retry: int) -> float:
    """urllib3 2's wait before retry number `retry` (1-based): none before the first, then doubling."""
    if retry <= 1:
        return 0.0
    return min(MAX_BACKOFF_SECONDS, BACKOFF_FACTOR * 2.0 ** (retry - 1))


class _Headers:
    """What the SDK's credentials sign: `signed_session(session)` sets or drops `session.headers["Authorization"]`."""

    def __init__(self) -> None:
        self.headers: dict[str, str] = {}


class _Context:
    """The pipeline context the credentials policy expects (msrest's RequestsContext has only `session`)."""

    def __init__(self) -> None:
        self.session = _Headers()


class ConnectorAnswer(AsyncClientResponse):
    """A channel's answer, read whole. `internal_response` is the answer itself: msrest's HttpOperationError
    keeps it as `.response`, where services/channel/channel_errors.py reads `status_code` and `headers`."""

    def __init__(
        self, request: ClientRequest, status: int, reason: str | None, headers: Mapping[str, str], body: bytes
    ) -> None:
        super().__init__(request, None)
        self.internal_response = self
        self.status_code: int = status
        self.reason = reason
        self.headers = CIMultiDict(headers)
        self._body = body

    def body(self) -> bytes:
        return self._body

    def text(self, encoding: str | None = None) -> str:
        return self._body.decode(encoding or "utf-8-sig")  # RawDeserializer assumes UTF-8, BOM allowed

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            raise ClientRequestError(f"{self.status_code} {self.reason} for url: {self.request.url}")


ConnectorRequest = Request[ClientRequest]
ConnectorResponse = Response[ClientRequest, AsyncClientResponse]


class AiohttpConnectorSender(AsyncHTTPSender[ClientRequest, AsyncClientResponse]):
    """Sends a Connector client's requests on the process's aiohttp session (`session()`, from `ConnectorSessions`)."""

    def __init__(
        self,
        session: Callable[[], aiohttp.ClientSession],
        timeout_seconds: float,
        proxy: tuple[URL, aiohttp.BasicAuth | None] | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout_seconds, sock_read=timeout_seconds)
        self._proxy: URL | None = proxy[0] if proxy else None
        self._proxy_auth: aiohttp.BasicAuth | None = proxy[1] if proxy else None
        self._sleep = sleep

    async def __aenter__(self) -> AiohttpConnectorSender:
        return self

    async def __aexit__(self, *exc_details: object) -> None:
        """Nothing: the session is shared by every client and closed with the composition."""

    def build_context(self) -> _Context:
        return _Context()

    async def send(self, request: ConnectorRequest, **config: Any) -> ConnectorResponse:
        http = request.http_request
        context = request.context or self.build_context()
        if http.files:
            raise ClientRequestError("the Connector sender sends JSON bodies only, not files")
        headers = {**context.session.headers, **http.headers}
        data = http.data.encode("utf-8") if isinstance(http.data, str) else http.data
        retry = 0
        while True:
            try:
                async with self._session().request(
                    http.method,
                    http.url,
                    data=data,
                    headers=headers,
                    timeout=self._timeout,
                    proxy=self._proxy,
                    proxy_auth=self._proxy_auth,
                ) as answer:
                    body = await answer.read()
                    return Response(request, ConnectorAnswer(http, answer.status, answer.reason, answer.headers, body))
            except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as error:
                # Nothing reached the channel: safe to try again.
                retry += 1
                if retry > CONNECT_RETRIES:
                    raise ClientRequestError(f"Error occurred in request. {error!r}") from error
                await self._sleep(backoff_seconds(retry))
            except (aiohttp.ClientError, TimeoutError) as error:
                raise ClientRequestError(f"Error occurred in request. {error!r}") from error


class ConnectorSessions:
    """One aiohttp session for every Connector client of the process, opened on first use (inside the
    event loop) and closed with the composition."""

    def __init__(self, sleep: Sleep = asyncio.sleep) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._sleep = sleep

    def opened(self) -> aiohttp.ClientSession:
        """The session, opened again if it was closed (a send during or after shutdown still goes out)."""
        if self._session is None or self._session.closed:
            tls = ssl.create_default_context(cafile=certifi.where())
            # trust_env stays off: aiohttp would look up the proxy and ~/.netrc in a thread on every request.
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls))
        return self._session

    def send_over_aiohttp(self, client: Any) -> None:
        """Rebuild a botframework ConnectorClient's pipeline as msrest's `_create_default_pipeline` does,
        ending in this process's aiohttp sender instead of requests in a thread."""
        config = client.config
        policies: list[Any] = [config.user_agent_policy, RawDeserializer(), config.http_logger_policy]
        if config.credentials:
            policies.insert(1, AsyncRequestsCredentialsPolicy(config.credentials))
        sender = AiohttpConnectorSender(
            self.opened, config.connection.timeout, proxy_for(config.base_url), sleep=self._sleep
        )
        config.pipeline = AsyncPipeline(policies, sender)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def proxy_for(base_url: str) -> tuple[URL, aiohttp.BasicAuth | None] | None:
    """The proxy (and its credentials) HTTPS_PROXY / HTTP_PROXY name for this URL, unless NO_PROXY exempts it."""
    from aiohttp.helpers import get_env_proxy_for_url

    try:
        return get_env_proxy_for_url(URL(base_url))
    except LookupError:
        return None
