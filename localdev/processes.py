"""Start and stop the local stack's child processes, and find free ports.

Every child dies with the process that started it, even when that process is killed (SIGKILL, a
closed terminal): each child runs in its own session (so a terminal's Ctrl-C reaches only the
launcher, which stops the children in order), and a session leader does not die with its parent
by itself, so each child asks Linux for SIGKILL when its parent goes (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import ctypes
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self, TypeVar

PROJECT_ROOT = Path(__file__).resolve().parent.parent
NODE_MODULES = PROJECT_ROOT / "node_modules"


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports (all held at once while picking, so none is returned twice)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


T = TypeVar("T")


def wait_until(
    condition: Callable[[], T], timeout: float = 10.0, message: str = "condition", interval: float = 0.05
) -> T:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds.

    From async code: `await asyncio.to_thread(wait_until, ...)`, so the event loop keeps serving.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {message}")
        time.sleep(interval)


def wait_for_port(host: str, port: int, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    """Block until something accepts TCP connections on host:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process {process.args!r} exited with {process.returncode} before listening")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listened on {host}:{port} within {timeout:.0f}s")


_PR_SET_PDEATHSIG = 1
# Resolved once here: the hook below runs in the forked child, which should call as little as possible.
_prctl: Callable[..., int] | None = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None


def _die_with_parent(parent: int) -> Callable[[], None] | None:
    """A preexec_fn (runs in the child between fork and exec; the setting survives exec)."""
    prctl = _prctl
    if prctl is None:
        return None  # not Linux: children outlive a killed launcher, as before

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before prctl took effect: no signal will come
            os._exit(1)

    return hook


class _Spawner:
    """Forks every child from one thread that lives as long as the process.

    PR_SET_PDEATHSIG fires when the *thread* that forked the child ends, not the process: a child
    started from a short-lived thread (asyncio.to_thread, a thread pool) would be killed with that
    thread. A daemon thread ends only with the process.
    """

    def __init__(self) -> None:
        self._requests: queue.SimpleQueue[tuple[Callable[[], subprocess.Popen[bytes]], Future[Any]]] = (
            queue.SimpleQueue()
        )
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def run(self, start: Callable[[], subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="localdev-spawner", daemon=True)
                self._thread.start()
        result: Future[subprocess.Popen[bytes]] = Future()
        self._requests.put((start, result))
        return result.result()

    def _serve(self) -> None:
        while True:
            start, result = self._requests.get()
            try:
                result.set_result(start())
            except BaseException as error:  # handed to the caller, who raises it
                result.set_exception(error)


_SPAWNER = _Spawner()


def popen(argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """subprocess.Popen in a new session, killed (SIGKILL) when this process dies, however it dies."""
    hook = _die_with_parent(os.getpid())
    return _SPAWNER.run(lambda: subprocess.Popen(list(argv), start_new_session=True, preexec_fn=hook, **kwargs))


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True if a server could not listen on host:port now (bound as servers bind, with SO_REUSEADDR,
    so a closed connection's TIME_WAIT does not count)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


class Stoppable:
    """Something started that `stop()` ends; `with` stops it on the way out."""

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


@dataclass
class ManagedProcess:
    """A child process in its own process group, stopped with everything it started."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def stop(self, timeout: float = 10.0) -> None:
        stop_all([self], timeout)

    def signal_group(self, signum: int) -> None:
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signum)
            except ProcessLookupError:
                pass


def stop_all(processes: Sequence[ManagedProcess], timeout: float) -> None:
    """SIGTERM to all of them at once, up to `timeout` seconds for all to exit, then SIGKILL.

    At once, not one after the other: each may use its whole grace period (a host finishing
    in-flight work), and stopping in turn would add them up.
    """
    running = [process for process in processes if process.popen.poll() is None]
    for process in running:
        process.signal_group(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for process in running:
        try:
            process.popen.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for process in running:
        if process.popen.poll() is None:
            process.signal_group(signal.SIGKILL)
            process.popen.wait()


def spawn(
    name: str,
    argv: Sequence[str],
    log_dir: Path | None = None,
    env: dict[str, str] | None = None,
    cwd: Path = PROJECT_ROOT,
) -> ManagedProcess:
    """Start argv in a new session (see `popen`); output goes to log_dir/<name>.log (or is discarded)."""
    log_path = None
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / f"{name}.log"
        output = open(log_path, "ab")
    else:
        output = open(os.devnull, "wb")
    try:
        process = popen(argv, cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT)
    finally:
        output.close()
    return ManagedProcess(name=name, popen=process, log_path=log_path)
