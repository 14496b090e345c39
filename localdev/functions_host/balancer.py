"""A round-robin HTTP reverse proxy in front of several instances of the app, as Azure's front end
spreads requests over a scaled-out Functions app.

    python -m localdev.functions_host.balancer --port 7071 --backend http://127.0.0.1:41001 \\
        --backend http://127.0.0.1:41002

Each request goes, whole, to the next instance in turn: method, path and query exactly as sent,
headers (the Host header included, so the app sees the URL the client used) and body; the
instance's status, headers and body come back. An instance that refuses the connection has not
seen the request, so the next one gets it (as the front end routes around a dead instance); an
instance that fails after taking the request is answered 502, since the request may have had
effects. Prints `Balancer listening on <url>` once it listens; SIGINT or SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from localdev.processes import ManagedProcess, spawn, wait_for_port

log = logging.getLogger("localdev.balancer")

READY_LINE = "Balancer listening on"
# Hop-by-hop headers (RFC 9110 7.6.1) belong to one connection; the lengths are recomputed.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "expect",
        "content-length",
    }
)
MAX_REQUEST_BODY = 104_857_600  # as the host (http_trigger.py): the balancer must not refuse what it takes
CONNECT_TIMEOUT = 5.0  # seconds; a request itself may take as long as the function does (up to 230 s on Azure)


def _end_to_end(headers: CIMultiDictProxy[str]) -> CIMultiDict[str]:
    """The headers meant for the other end: hop-by-hop ones, and those Connection names, stay here."""
    listed = {name.strip().lower() for name in headers.get("Connection", "").split(",") if name.strip()}
    return CIMultiDict((name, value) for name, value in headers.items() if name.lower() not in _HOP_BY_HOP | listed)


class RoundRobinProxy:
    def __init__(self, backends: Sequence[str]) -> None:
        if not backends:
            raise ValueError("at least one backend is needed")
        self.backends = [backend.rstrip("/") for backend in backends]
        self._turn = itertools.count()
        self._session: aiohttp.ClientSession | None = None

    def application(self) -> web.Application:
        app = web.Application(client_max_size=MAX_REQUEST_BODY)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        app.on_startup.append(self._open)
        app.on_cleanup.append(self._close)
        return app

    async def _open(self, _app: web.Application) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),  # no pool limit: the instances' own limits apply
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT),
            auto_decompress=False,  # the body goes back as the instance encoded it, with its Content-Encoding
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def _close(self, _app: web.Application) -> None:
        if self._session is not None:
            await self._session.close()

    async def handle(self, request: web.Request) -> web.Response:
        assert self._session is not None
        body = await request.read()
        headers = _end_to_end(request.headers)
        if request.remote:
            forwarded = request.headers.get("X-Forwarded-For")
            headers["X-Forwarded-For"] = f"{forwarded}, {request.remote}" if forwarded else request.remote
        first = next(self._turn)
        for offset in range(len(self.backends)):
            backend = self.backends[(first + offset) % len(self.backends)]
            try:
                async with self._session.request(
                    request.method,
                    URL(backend + request.raw_path, encoded=True),  # path and query byte for byte
                    headers=headers,
                    data=body,
                    allow_redirects=False,
                    # Only the client's own headers go on; aiohttp would add these.
                    skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
                ) as response:
                    payload = await response.read()
                    return web.Response(status=response.status, headers=_end_to_end(response.headers), body=payload)
            except aiohttp.ClientConnectorError as error:
                log.warning("Instance %s refused the connection (%s); trying the next one", backend, error)
            except aiohttp.ClientError as error:
                log.warning("Instance %s failed during %s %s: %s", backend, request.method, request.path, error)
                return web.Response(status=502, text="the app's instance failed while answering")
        return web.Response(status=502, text="no instance of the app is listening")


async def serve(host: str, port: int, backends: Sequence[str], shutdown_timeout: float) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    proxy = RoundRobinProxy(backends)
    runner = web.AppRunner(proxy.application(), access_log=None, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    url = f"http://{host}:{runner.addresses[0][1]}"
    print(f"{READY_LINE} {url} (round robin over {', '.join(proxy.backends)})", flush=True)
    await stop.wait()
    await runner.cleanup()


def spawn_balancer(
    port: int, backends: Sequence[str], log_dir: Path | None = None, name: str = "balancer", timeout: float = 30.0
) -> ManagedProcess:
    """The balancer as a child process (own session, dies with this process); returns once it listens."""
    argv = [sys.executable, "-u", "-m", "localdev.functions_host.balancer", "--port", str(port)]
    for backend in backends:
        argv += ["--backend", backend]
    process = spawn(name, argv, log_dir)
    wait_for_port("127.0.0.1", port, timeout, process.popen)
    return process


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m localdev.functions_host.balancer", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--backend", action="append", required=True, help="an instance's base URL (repeat)")
    parser.add_argument("--shutdown-timeout", type=float, default=2.0, help="seconds in-flight requests may finish")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="[%(asctime)s] %(message)s")
    asyncio.run(serve(args.host, args.port, args.backend, args.shutdown_timeout))


if __name__ == "__main__":
    main()
