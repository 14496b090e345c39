"""Singleton listeners: a timer function runs on one instance at a time, as on a scaled-out app.

What the real host does (WebJobs SDK, SingletonListener and SingletonManager): a timer trigger's
listener is a singleton. At start each instance tries once to take the lock
`<hostId>/<Function>.Listener` (a blob lease of 60 s, renewed while held); the one that gets it
starts the timer, the others do not and retry every ListenerLockRecoveryPollingInterval (1 min),
so when the holder dies its lease lapses and another instance takes the timer over.

Here the instances are processes on one machine: the lock is an exclusive `flock` on the file
`<lock dir>/<Function>.Listener` in a folder the instances share (the folder plays the host id's
part). The kernel drops it the moment its holder exits, however it exits, so there is no lease to
renew or wait out: takeover follows within one recovery interval.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
from pathlib import Path
from typing import Protocol

log = logging.getLogger("localdev.functions_host")

# SingletonOptions.ListenerLockRecoveryPollingInterval's default.
DEFAULT_RECOVERY_INTERVAL = 60.0


class Listener(Protocol):
    def start(self) -> None: ...

    async def stop(self, timeout: float) -> None: ...


class ListenerLock:
    """An exclusive, non-blocking flock on one file; held until release() or the process's end."""

    def __init__(self, directory: Path, lock_id: str) -> None:
        self.path = directory / lock_id
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self) -> bool:
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        # Who holds it, for a person looking at the folder; the lock itself is the flock.
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


class SingletonListener:
    """Starts `inner` only while this instance holds the function's listener lock."""

    def __init__(self, function_name: str, inner: Listener, lock_dir: Path, recovery_interval: float) -> None:
        self.function_name = function_name
        self.inner = inner
        self.lock = ListenerLock(lock_dir, f"{function_name}.Listener")
        self.recovery_interval = recovery_interval
        self._recovery: asyncio.Task[None] | None = None
        self._listening = False

    @property
    def listening(self) -> bool:
        return self._listening

    def start(self) -> None:
        if self._take():
            return
        log.info(
            "Singleton lock '%s' is held by another instance: '%s' does not run here; trying again every %gs.",
            self.lock.path.name,
            self.function_name,
            self.recovery_interval,
        )
        self._recovery = asyncio.create_task(self._recover(), name=f"singleton-{self.function_name}")

    def _take(self) -> bool:
        if not self.lock.try_acquire():
            return False
        log.info("Singleton lock '%s' acquired: '%s' runs on this instance.", self.lock.path.name, self.function_name)
        self.inner.start()
        self._listening = True
        return True

    async def _recover(self) -> None:
        while True:
            await asyncio.sleep(self.recovery_interval)
            if self._take():
                return

    async def stop(self, timeout: float) -> None:
        """Stop the listener (its running invocation may finish), then let another instance take over."""
        if self._recovery is not None:
            self._recovery.cancel()
            await asyncio.gather(self._recovery, return_exceptions=True)
            self._recovery = None
        if self._listening:
            await self.inner.stop(timeout)
            self._listening = False
        self.lock.release()
