"""Start the baseline bot as a child process (the app runs in the local Functions host, a child too)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from localdev.processes import ManagedProcess, Stoppable, free_port, spawn, wait_for_port

READY_TIMEOUT = 60.0  # seconds: importing botbuilder takes about one


def serve(
    module: str,
    description: str | None,
    create_app: Callable[[], web.Application],
    argv: list[str] | None,
    banner: bool,
) -> None:
    """`python -m <module> [--host HOST] --port PORT`: serve a baseline's app until interrupted, logging
    warnings and worse; banner: print aiohttp's "Running on" lines."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    web.run_app(create_app(), host=args.host, port=args.port, **({} if banner else {"print": None}))


@dataclass
class BaselineProcess(Stoppable):
    process: ManagedProcess
    url: str  # http://127.0.0.1:PORT

    @property
    def messages_url(self) -> str:
        return f"{self.url}/api/messages"

    @property
    def pid(self) -> int:
        return self.process.popen.pid

    def log_text(self) -> str:
        path = self.process.log_path
        return path.read_text(errors="replace") if path is not None and path.exists() else ""

    def stop(self) -> None:
        self.process.stop(5.0)


def start_baseline(
    settings: Mapping[str, str], log_dir: Path, name: str = "baseline", module: str = "bench.baseline"
) -> BaselineProcess:
    """`python -m <module>` (bench.baseline, or bench.agents_baseline for the Agents SDK's) with the app's
    `settings` as its environment; returns once it listens. Its output goes to log_dir/<name>.log."""
    port = free_port()
    (log_dir / f"{name}.log").unlink(missing_ok=True)  # spawn appends; errors are counted in this run's log
    env = {**os.environ, **settings, "PYTHONUNBUFFERED": "1"}
    argv = [sys.executable, "-m", module, "--port", str(port)]
    process = spawn(name, argv, log_dir, env=env)
    try:
        wait_for_port("127.0.0.1", port, READY_TIMEOUT, process.popen)
    except BaseException:
        process.stop(2.0)
        raise
    return BaselineProcess(process, f"http://127.0.0.1:{port}")
