"""Run the host as a child process (tests, benchmarks, `make run`) and wait until it listens."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from localdev.functions_host.host import READY_LINE
from localdev.processes import PROJECT_ROOT, ManagedProcess, popen

_READY = re.compile(re.escape(READY_LINE) + r" (http://\S+)")


@dataclass
class _Output:
    """The child's stdout, collected line by line by a reader thread."""

    lines: list[str] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)
    closed: bool = False

    def text(self) -> str:
        with self.changed:
            return "".join(self.lines)


def _pump(stream: IO[bytes], output: _Output, log_path: Path | None) -> None:
    log = open(log_path, "a", encoding="utf-8") if log_path else None
    try:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", errors="replace")
            if log:
                log.write(line)
                log.flush()
            with output.changed:
                output.lines.append(line)
                output.changed.notify_all()
    finally:
        if log:
            log.close()
        with output.changed:
            output.closed = True
            output.changed.notify_all()


@dataclass
class HostProcess:
    process: ManagedProcess
    base_url: str
    function_key: str
    _output: _Output
    started_at: float = 0.0  # time.perf_counter() just before the spawn
    ready_at: float = 0.0  # time.perf_counter() when the listening line arrived

    @property
    def output(self) -> str:
        return self._output.text()

    @property
    def pid(self) -> int:
        return self.process.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.process.popen.poll()

    def wait_for_output(self, predicate: str | Callable[[str], bool], timeout: float = 10.0) -> str:
        """Block until the output contains `predicate` (or satisfies it); returns the output."""
        check = (lambda text: predicate in text) if isinstance(predicate, str) else predicate
        deadline = time.monotonic() + timeout
        with self._output.changed:
            while True:
                text = "".join(self._output.lines)
                if check(text):
                    return text
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._output.closed:
                    raise TimeoutError(f"host output never matched {predicate!r}; output:\n{text}")
                self._output.changed.wait(remaining)

    def signal(self, signum: int) -> None:
        self.process.popen.send_signal(signum)

    def wait(self, timeout: float = 30.0) -> int:
        return self.process.popen.wait(timeout)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (whole process group), then wait; returns the exit code."""
        self.process.stop(timeout)
        return self.process.popen.returncode


def spawn_host(
    app_dir: Path,
    *,
    port: int = 0,
    host: str = "127.0.0.1",
    settings: Mapping[str, str] | None = None,
    settings_file: Path | None = None,
    function_key: str | None = None,
    extra_env: Mapping[str, str] | None = None,
    extra_args: Sequence[str] = (),
    ready_timeout: float = 30.0,
    log_path: Path | None = None,
    name: str = "functions-host",
) -> HostProcess:
    """Start `python -m localdev.functions_host` and return once it prints its listening line.

    port=0 picks a free port (no race: the child binds it and reports it). `extra_env` is added to
    this process's environment for the child (e.g. to check settings precedence).
    """
    key = function_key or secrets.token_urlsafe(24)
    argv = [
        sys.executable,
        "-u",
        "-m",
        "localdev.functions_host",
        "--app-dir",
        str(app_dir),
        "--port",
        str(port),
        "--host",
        host,
        f"--function-key={key}",  # one token: a generated key may start with "-"
    ]
    if settings_file is not None:
        argv += ["--settings-file", str(settings_file)]
    for name, value in (settings or {}).items():
        argv += ["--setting", f"{name}={value}"]
    argv += list(extra_args)
    env = {**os.environ, **(extra_env or {}), "PYTHONUNBUFFERED": "1"}
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
    started_at = time.perf_counter()
    # Its own session, and killed if this process dies (localdev.processes.popen).
    started = popen(argv, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = _Output()
    threading.Thread(target=_pump, args=(started.stdout, output, log_path), daemon=True).start()
    process = ManagedProcess(name=name, popen=started, log_path=log_path)
    child = HostProcess(process=process, base_url="", function_key=key, _output=output, started_at=started_at)
    try:
        text = child.wait_for_output(lambda t: _READY.search(t) is not None, ready_timeout)
    except TimeoutError:
        process.stop()
        raise RuntimeError(f"the functions host did not become ready; output:\n{child.output}") from None
    child.ready_at = time.perf_counter()
    match = _READY.search(text)
    assert match is not None
    child.base_url = match.group(1)
    return child
