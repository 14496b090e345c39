"""Running the local Direct Line: in the current event loop, in a background thread, or as a subprocess."""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
from collections.abc import Coroutine, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from aiohttp import web

from localdev.directline.app import create_app
from localdev.directline.channel import Channel
from localdev.directline.client_api import CHANNEL
from localdev.processes import ManagedProcess, free_port, spawn, wait_for_port

T = TypeVar("T")


def _url_host(host: str) -> str:
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"  # listening everywhere: advertise loopback
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


class DirectLineServer:
    """The server in the running event loop. Port 0 picks a free port (bound before the app is built,
    so the advertised serviceUrl is right and there is no race for the port)."""

    def __init__(
        self,
        bot_endpoint: str,
        secret: str,
        host: str = "127.0.0.1",
        port: int = 0,
        public_url: str | None = None,
        **options: Any,
    ) -> None:
        self.bot_endpoint = bot_endpoint
        self.secret = secret
        self.host = host
        self.requested_port = port
        self.public_url = public_url
        self.options = options
        self.port = 0
        self.app: web.Application | None = None
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """The public base, e.g. http://127.0.0.1:7072/ (the serviceUrl the bot sees)."""
        return self.public_url or f"http://{_url_host(self.host)}:{self.port}/"

    @property
    def domain(self) -> str:
        """What a Direct Line client takes as `domain`: <url>v3/directline."""
        return f"{self.url.rstrip('/')}/v3/directline"

    @property
    def channel(self) -> Channel:
        assert self.app is not None, "not started"
        return self.app[CHANNEL]

    async def start(self) -> Self:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.requested_port))
        self.port = int(sock.getsockname()[1])
        self.app = create_app(self.bot_endpoint, self.secret, self.url, **self.options)
        self._runner = web.AppRunner(self.app, handle_signals=False, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *_: object) -> None:
        await self.stop()


class BackgroundLoop:
    """An asyncio loop in a daemon thread, so servers keep serving while the caller blocks
    (e.g. a synchronous test waiting on a subprocess)."""

    def __init__(self, name: str = "localdev-loop") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result(timeout)

    def close(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


class DirectLineThread:
    """DirectLineServer in its own thread and loop, for synchronous code: `with DirectLineThread(...) as dl:`."""

    def __init__(self, bot_endpoint: str, secret: str, host: str = "127.0.0.1", port: int = 0, **options: Any) -> None:
        self.server = DirectLineServer(bot_endpoint, secret, host, port, **options)
        self._loop: BackgroundLoop | None = None

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def domain(self) -> str:
        return self.server.domain

    def start(self) -> Self:
        self._loop = BackgroundLoop("directline")
        self._loop.run(self.server.start())
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.run(self.server.stop())
            self._loop.close()
            self._loop = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()


@dataclass
class DirectLineProcess:
    process: ManagedProcess
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{_url_host(self.host)}:{self.port}/"

    @property
    def domain(self) -> str:
        return f"{self.url}v3/directline"

    def stop(self) -> None:
        self.process.stop()


def start_directline_process(
    bot_endpoint: str,
    secret: str,
    port: int | None = None,
    host: str = "127.0.0.1",
    log_dir: Path | None = None,
    extra_args: Sequence[str] = (),
    timeout: float = 20.0,
) -> DirectLineProcess:
    """`python -m localdev.directline` as a child process (own process group); returns once it listens."""
    port = port or free_port()
    argv = [
        sys.executable, "-m", "localdev.directline",
        "--host", host, "--port", str(port), "--bot-endpoint", bot_endpoint, f"--secret={secret}", *extra_args,
    ]  # fmt: skip
    process = spawn("directline", argv, log_dir)
    wait_for_port(host if host not in ("", "0.0.0.0") else "127.0.0.1", port, timeout, process.popen)
    return DirectLineProcess(process, host, port)
