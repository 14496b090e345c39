"""Invoke a user function like the Python worker: async on the loop, sync on a thread pool."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import azure.functions as func
from azure.functions import _abc as azf_abc  # TraceContext/RetryContext are not re-exported

from localdev.functions_host.indexing import FunctionSpec

log = logging.getLogger("localdev.functions_host")


class _TraceContext(azf_abc.TraceContext):
    def __init__(self) -> None:
        self._traceparent = f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-00"

    @property
    def trace_state(self) -> str:
        return ""

    @property
    def trace_parent(self) -> str:
        return self._traceparent

    @property
    def attributes(self) -> dict[str, str]:
        return {}


class _RetryContext(azf_abc.RetryContext):
    @property
    def retry_count(self) -> int:
        return 0

    @property
    def max_retry_count(self) -> int:
        return 0

    @property
    def exception(self) -> azf_abc.RpcException | None:  # type: ignore[override]
        return None


class InvocationContext(func.Context):
    """What the worker passes as a `context` parameter."""

    def __init__(self, invocation_id: str, function_name: str, function_directory: str) -> None:
        self._invocation_id = invocation_id
        self._function_name = function_name
        self._function_directory = function_directory
        self._trace_context = _TraceContext()
        self._retry_context = _RetryContext()
        self._local = threading.local()

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def thread_local_storage(self) -> Any:
        return self._local

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return self._function_directory

    @property
    def trace_context(self) -> azf_abc.TraceContext:
        return self._trace_context

    @property
    def retry_context(self) -> azf_abc.RetryContext:
        return self._retry_context


@dataclass(frozen=True)
class InvocationResult:
    invocation_id: str
    succeeded: bool
    value: Any = None
    error: BaseException | None = None


class Invoker:
    """Runs invocations, logs them like the host, and tracks those in flight for shutdown."""

    def __init__(self, app_dir: Path, executor: ThreadPoolExecutor, function_timeout: float | None = None) -> None:
        self._app_dir = str(app_dir)
        self._executor = executor
        self._timeout = function_timeout
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    async def invoke(self, spec: FunctionSpec, trigger_value: Any, reason: str) -> InvocationResult:
        invocation_id = str(uuid.uuid4())
        arguments: dict[str, Any] = {spec.trigger_param: trigger_value}
        if spec.wants_context:
            arguments["context"] = InvocationContext(invocation_id, spec.name, self._app_dir)
        self._in_flight += 1
        self._idle.clear()
        log.info("Executing 'Functions.%s' (Reason='%s', Id=%s)", spec.name, reason, invocation_id)
        started = time.perf_counter()
        try:
            value = await asyncio.wait_for(self._call(spec, arguments), self._timeout)
        except asyncio.CancelledError:
            # The host is stopping and did not wait for this one (a sync function's thread runs on).
            duration = (time.perf_counter() - started) * 1000
            log.warning(
                "Executed 'Functions.%s' (Failed, Id=%s, Duration=%.0fms): abandoned, the host is stopping",
                spec.name,
                invocation_id,
                duration,
            )
            raise
        except Exception as error:
            duration = (time.perf_counter() - started) * 1000
            if isinstance(error, TimeoutError):
                error = TimeoutError(
                    f"Timeout value of {self._timeout:g}s was exceeded by function: Functions.{spec.name}"
                )
            log.error(
                "Executed 'Functions.%s' (Failed, Id=%s, Duration=%.0fms)",
                spec.name,
                invocation_id,
                duration,
                exc_info=error,
            )
            return InvocationResult(invocation_id, False, error=error)
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()
        duration = (time.perf_counter() - started) * 1000
        log.info("Executed 'Functions.%s' (Succeeded, Id=%s, Duration=%.0fms)", spec.name, invocation_id, duration)
        return InvocationResult(invocation_id, True, value=value)

    async def _call(self, spec: FunctionSpec, arguments: dict[str, Any]) -> Any:
        if spec.is_async:
            return await spec.user_function(**arguments)
        # The worker copies the context into the thread, so contextvars survive.
        call = functools.partial(contextvars.copy_context().run, spec.user_function, **arguments)
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def drain(self, timeout: float) -> bool:
        """Wait for in-flight invocations; False if some were still running after `timeout`."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True
