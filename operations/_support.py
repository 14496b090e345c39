"""Helpers shared by the operation modules: parameter checking and progress relaying."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from .registry import InvalidParameters, Operation, OperationFailed, ProgressCallback, resolve_parameters

T = TypeVar("T")


async def in_thread(work: Callable[..., T], *args: Any) -> T:
    """Run a chunk of CPU work off the event loop.

    If the operation is cancelled (the worker's deadline), the chunk already running finishes
    before the cancellation goes on: a thread cannot be stopped, and no work may outlive its operation.
    """
    chunk = asyncio.ensure_future(asyncio.to_thread(work, *args))
    try:
        return await asyncio.shield(chunk)
    except asyncio.CancelledError:
        await asyncio.wait({chunk})
        raise


def checked_parameters(operation: Operation, given: Mapping[str, object] | None) -> dict[str, int]:
    """Parameters as the operation needs them; bad input becomes OperationFailed for the user."""
    try:
        return resolve_parameters(operation, given)
    except InvalidParameters as error:
        raise OperationFailed(str(error)) from None


class Progress:
    """Relays progress monotonically, without flooding the worker.

    A report is sent when the fraction grew by at least ``min_step`` or ``max_interval``
    seconds passed since the last one; ``finish`` always sends 1.0 exactly once.
    """

    def __init__(self, callback: ProgressCallback, min_step: float = 0.01, max_interval: float = 1.0) -> None:
        self._callback = callback
        self._min_step = min_step
        self._max_interval = max_interval
        self._last: float | None = None
        self._last_time = time.monotonic()

    async def start(self) -> None:
        await self._send(0.0)

    async def update(self, done: float, total: float) -> None:
        fraction = min(1.0, max(0.0, done / total)) if total > 0 else 1.0
        fraction = min(fraction, 0.999)  # 1.0 is reserved for finish(): the result is not ready yet
        if self._last is not None and fraction <= self._last:
            return
        due = time.monotonic() - self._last_time >= self._max_interval
        if self._last is None or due or fraction - self._last >= self._min_step:
            await self._send(fraction)

    async def finish(self) -> None:
        if self._last != 1.0:
            await self._send(1.0)

    async def _send(self, fraction: float) -> None:
        self._last = fraction
        self._last_time = time.monotonic()
        await self._callback(fraction)


def money(cents: int) -> str:
    """Whole-cent amount as "$1,234.56" (exact: no float rounding)."""
    sign = "-" if cents < 0 else ""
    whole, part = divmod(abs(cents), 100)
    return f"{sign}${whole:,}.{part:02d}"


def plural(count: int, word: str, words: str | None = None) -> str:
    """ "1 prime", "2 primes" (with thousands separators)."""
    return f"{count:,} {word if count == 1 else (words or word + 's')}"
