"""A reverse proxy that breaks on purpose: put it in front of Cosmos DB, Azurite's queue service, Direct
Line or the Connector, point the app at it, and switch what it does while a test runs.

    proxy = FaultProxy("http://127.0.0.1:8081/", retry_after_header=COSMOS_RETRY_AFTER)
    await proxy.start()                      # proxy.url is where the app should talk to
    proxy.inject(THROTTLE, times=3, retry_after=0.05)   # the next 3 requests get 429
    proxy.inject(UNAVAILABLE, method="POST", path=r"/messages$")  # until cleared
    proxy.inject(HANG, times=1)              # held until proxy.release() or its timeout, then reset
    proxy.clear(); proxy.count(outcome=THROTTLE)

Faults apply in the order they were injected: the first one whose predicate matches a request and
that still has requests left answers it; a request no fault matches passes through. Every request is
recorded (method, path, outcome), so a test can count what the app tried.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from dataclasses import dataclass, field

from aiohttp import ClientSession, ClientTimeout, web

PASS = "pass"
THROTTLE = "throttle"  # 429 with a retry-after header
UNAVAILABLE = "unavailable"  # 503 (with a retry-after header when one is given)
RESET = "reset"  # the connection is dropped without an answer
HANG = "hang"  # held before it reaches the service: never arrives there; reset when let go
HANG_RESPONSE = "hang-response"  # reaches the service, but its answer is held, then the connection reset
KINDS = (PASS, THROTTLE, UNAVAILABLE, RESET, HANG, HANG_RESPONSE)

COSMOS_RETRY_AFTER = "x-ms-retry-after-ms"  # Cosmos DB's header: milliseconds
HTTP_RETRY_AFTER = "Retry-After"  # everyone else's: seconds

# Hop-by-hop headers: the proxy's own connections decide them. A request's Content-Length and
# Content-Type go on unchanged: Azure Storage's Shared Key signature covers both.
_SKIP_REQUEST = {"host", "transfer-encoding", "connection", "keep-alive"}
_SKIP_RESPONSE = {"content-length", "transfer-encoding", "connection", "keep-alive"}


@dataclass
class Fault:
    kind: str
    times: int | None = None  # None: every matching request until cleared
    method: str | None = None
    path: str | None = None  # a regular expression searched in the path (with its query)
    retry_after: float | None = None  # seconds; THROTTLE defaults to 1
    hang_seconds: float = 30.0  # HANG / HANG_RESPONSE: let go after this long if not released
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return self.path is None or re.search(self.path, path) is not None


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    outcome: str  # the fault kind that answered, or PASS
    at: float  # time.monotonic() when it arrived


@dataclass
class FaultProxy:
    upstream: str  # e.g. http://127.0.0.1:8081/ (only scheme, host and port are used)
    retry_after_header: str = HTTP_RETRY_AFTER
    faults: list[Fault] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None
    _session: ClientSession | None = None
    _released: asyncio.Event = field(default_factory=asyncio.Event)
    _arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def _upstream_origin(self) -> str:
        return re.sub(r"^(https?://[^/]+).*$", r"\1", self.upstream)

    async def start(self) -> FaultProxy:
        self._session = ClientSession(auto_decompress=False, timeout=ClientTimeout(total=60))
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = int(sock.getsockname()[1])
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5, handler_cancellation=True)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()
        return self

    async def stop(self) -> None:
        self.release()  # hung requests must not hold the server's shutdown
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
        if self._session is not None:
            await self._session.close()

    # --- what a test switches ----------------------------------------------------------------

    def inject(
        self,
        kind: str,
        times: int | None = None,
        *,
        method: str | None = None,
        path: str | None = None,
        retry_after: float | None = None,
        hang_seconds: float = 30.0,
    ) -> Fault:
        assert kind in KINDS, kind
        if kind in (HANG, HANG_RESPONSE):
            self._released.clear()
        fault = Fault(kind, times, method, path, retry_after, hang_seconds)
        self.faults.append(fault)
        return fault

    def clear(self) -> None:
        """Pass everything through from now on (requests already hanging stay held until released)."""
        self.faults.clear()

    def release(self) -> None:
        """Let every hanging request go (its connection is reset)."""
        self._released.set()

    def count(self, method: str | None = None, path: str | None = None, outcome: str | None = None) -> int:
        return sum(
            1
            for s in self.seen
            if (method is None or s.method == method)
            and (path is None or re.search(path, s.path))
            and (outcome is None or s.outcome == outcome)
        )

    async def wait_for(
        self,
        method: str | None = None,
        path: str | None = None,
        outcome: str | None = None,
        count: int = 1,
        timeout: float = 10.0,
    ) -> None:
        """Until `count` requests like this have arrived (e.g. one is hanging now)."""
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: self.count(method, path, outcome) >= count)

    # --- serving ---------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path_qs
        fault = next((f for f in self.faults if f.matches(request.method, path)), None)
        outcome = PASS
        if fault is not None:
            fault.hits += 1
            outcome = fault.kind
        async with self._arrived:
            self.seen.append(Seen(request.method, path, outcome, time.monotonic()))
            self._arrived.notify_all()
        if fault is None or fault.kind == PASS:
            return await self._forward(request)
        if fault.kind == THROTTLE:
            return self._refusal(429, fault.retry_after if fault.retry_after is not None else 1.0)
        if fault.kind == UNAVAILABLE:
            return self._refusal(503, fault.retry_after)
        if fault.kind == RESET:
            return self._reset(request)
        if fault.kind == HANG:
            await self._hang(fault)
            return self._reset(request)
        await self._forward(request)  # HANG_RESPONSE: the service has it; its answer never comes
        await self._hang(fault)
        return self._reset(request)

    def _refusal(self, status: int, retry_after: float | None) -> web.Response:
        headers = {"Content-Type": "application/json"}
        if retry_after is not None:
            cosmos = self.retry_after_header == COSMOS_RETRY_AFTER
            headers[self.retry_after_header] = str(int(retry_after * 1000)) if cosmos else f"{retry_after:g}"
        # Cosmos DB's error body shape; other clients read only the status.
        code = "TooManyRequests" if status == 429 else "ServiceUnavailable"
        body = f'{{"code": "{code}", "message": "injected by the fault proxy"}}'
        return web.Response(status=status, text=body, headers=headers)

    @staticmethod
    def _reset(request: web.Request) -> web.Response:
        if request.transport is not None:
            request.transport.abort()  # RST-like: the client sees the connection drop mid-request
        return web.Response(status=500)  # never written: the transport is gone

    async def _hang(self, fault: Fault) -> None:
        try:
            await asyncio.wait_for(self._released.wait(), fault.hang_seconds)
        except TimeoutError:
            pass

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _SKIP_REQUEST}
        body = await request.read()
        async with self._session.request(
            request.method,
            self._upstream_origin + request.path_qs,
            headers=headers,
            data=body,
            allow_redirects=False,
            skip_auto_headers=() if "Content-Type" in request.headers else ("Content-Type",),
        ) as answer:
            content = await answer.read()
            response_headers = {k: v for k, v in answer.headers.items() if k.lower() not in _SKIP_RESPONSE}
            if not answer.headers.get("Content-Encoding"):
                # Cosmos DB names its own address in the account document: the client must keep coming here.
                content = content.replace(self._upstream_origin.encode(), self._origin.encode())
            return web.Response(status=answer.status, body=content, headers=response_headers)

    @property
    def _origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"
