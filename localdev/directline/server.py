"""Running the local Direct Line: in the current event loop, or as a child process."""

from __future__ import annotations

import secrets
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self
from urllib.parse import quote

from aiohttp import web

from localdev.directline.agent_console import CONSOLE
from localdev.directline.app import create_app
from localdev.directline.channel import Channel
from localdev.directline.client_api import CHANNEL
from localdev.processes import ManagedProcess, free_port, spawn, wait_for_port


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
    def agent_console_url(self) -> str:
        """The agent console page (human handoff), with this run's console key: <url>agent?key=<key>."""
        return f"{self.url.rstrip('/')}/agent?key={quote(self.console_key, safe='')}"

    @property
    def console_key(self) -> str:
        assert self.app is not None, "not started"
        return self.app[CONSOLE].key

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


@dataclass
class DirectLineProcess:
    process: ManagedProcess
    host: str
    port: int
    console_key: str  # the agent console's key for this run (agent_console.py)

    @property
    def url(self) -> str:
        return f"http://{_url_host(self.host)}:{self.port}/"

    @property
    def domain(self) -> str:
        return f"{self.url}v3/directline"

    @property
    def agent_console_url(self) -> str:
        return f"{self.url}agent?key={quote(self.console_key, safe='')}"

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
    name: str = "directline",
    handoff_signing_key: str | None = None,
) -> DirectLineProcess:
    """`python -m localdev.directline` as a child process (own process group); returns once it listens.

    `handoff_signing_key`: the app's HandoffSigningKey, which the agent console signs with; the
    console's key is made here, fresh for each run. Its output goes to log_dir/<name>.log
    (discarded without a log_dir)."""
    port = port or free_port()
    console_key = secrets.token_urlsafe(24)
    argv = [
        sys.executable, "-u", "-m", "localdev.directline",
        "--host", host, "--port", str(port), "--bot-endpoint", bot_endpoint,
        f"--secret={secret}",  # one token: a secret may start with "-"
        f"--console-key={console_key}",
        *([f"--handoff-signing-key={handoff_signing_key}"] if handoff_signing_key else []),
        *extra_args,
    ]  # fmt: skip
    process = spawn(name, argv, log_dir)
    wait_for_port(host if host not in ("", "0.0.0.0") else "127.0.0.1", port, timeout, process.popen)
    return DirectLineProcess(process, host, port, console_key)
