"""Helpers shared by the operation modules: CPU work off the event loop, progress, formatting."""

from __future__ import annotations

import asyncio
import contextvars
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from .registry import ProgressCallback

T = TypeVar("T")


_workers: ThreadPoolExecutor | None = None


def _operation_threads() -> ThreadPoolExecutor:
    """The operations' own threads, made on first use: never the event loop's default executor, where
    the SDK sends the bot's replies (a batch of long chunks there would hold those replies up)."""
    global _workers
    if _workers is None:
        _workers = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="operation")
    return _workers


def _forget_workers_in_child() -> None:
    """A forked child has none of its parent's threads, yet the pool it inherits counts them as idle:
    work handed to it would wait for ever. The child makes a pool of its own on first use."""
    global _workers
    _workers = None


if hasattr(os, "register_at_fork"):  # POSIX only; there is no fork elsewhere
    os.register_at_fork(after_in_child=_forget_workers_in_child)


async def in_thread(work: Callable[..., T], *args: Any) -> T:
    """Run a chunk of CPU work off the event loop, on the operations' threads.

    If the operation is cancelled (the worker's deadline), the chunk already running finishes
    before the cancellation goes on: a thread cannot be stopped, and no work may outlive its operation.
    """
    context = contextvars.copy_context()  # as asyncio.to_thread does
    chunk = asyncio.get_running_loop().run_in_executor(_operation_threads(), context.run, work, *args)
    try:
        return await asyncio.shield(chunk)
    except asyncio.CancelledError:
        await asyncio.wait({chunk})
        raise


class Progress:
    """Reports the fraction done, never going back; 1.0 only from finish(), once.

    It does not throttle: the worker decides how often the user hears of it. As a context manager
    it reports 0.0 on entry and 1.0 when the block completes:

        async with Progress(progress) as reporter:
            summary = await work(..., reporter)
    """

    def __init__(self, callback: ProgressCallback) -> None:
        self._callback = callback
        self._last: float | None = None

    async def start(self) -> None:
        await self._send(0.0)

    async def __aenter__(self) -> Progress:
        await self.start()
        return self

    async def __aexit__(self, error_type: type[BaseException] | None, *_: object) -> None:
        if error_type is None:
            await self.finish()

    async def update(self, done: float, total: float) -> None:
        fraction = min(1.0, max(0.0, done / total)) if total > 0 else 1.0
        fraction = min(fraction, 0.999)  # 1.0 is reserved for finish(): the result is not ready yet
        if self._last is None or fraction > self._last:
            await self._send(fraction)

    async def finish(self) -> None:
        if self._last != 1.0:
            await self._send(1.0)

    async def _send(self, fraction: float) -> None:
        self._last = fraction
        await self._callback(fraction)


def money(cents: int) -> str:
    """Whole-cent amount as "$1,234.56" (exact: no float rounding)."""
    sign = "-" if cents < 0 else ""
    whole, part = divmod(abs(cents), 100)
    return f"{sign}${whole:,}.{part:02d}"


def plural(count: int, word: str, words: str | None = None) -> str:
    """ "1 prime", "2 primes" (with thousands separators)."""
    return f"{count:,} {word if count == 1 else (words or word + 's')}"


def as_list(heading: str, *items: str) -> str:
    """A result as a heading and one "- " line per figure: a Markdown list in Web Chat, Teams and the
    like, and still plain, readable text on channels that show text as it is."""
    return "\n".join((heading, *(f"- {item}" for item in items)))
