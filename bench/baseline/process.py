"""Start the baseline bot as a child process (the app runs in the local Functions host, a child too)."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from localdev.processes import ManagedProcess, Stoppable, free_port, spawn, wait_for_port

READY_TIMEOUT = 60.0  # seconds: importing botbuilder takes about one


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
