"""OpenTelemetry spans along a user's request: the turn, the queue hop, the worker, the event back.

Where spans go is decided once, at the first span (never at import: OpenTelemetry costs about 25 ms
to import and Azure Monitor about 250 ms, which a cold start should not pay before it must):

  * A tracer provider is installed already: the Python worker's, which configures Azure Monitor
    itself before it imports the app when the app setting PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY
    is true (the set-up this app recommends in Azure), or the local Functions host's span lines.
    The app's spans go there.
  * Otherwise, with APPLICATIONINSIGHTS_CONNECTION_STRING set, the app configures Azure Monitor
    itself (azure-monitor-opentelemetry, imported then and only then), for traces only: the
    Functions host already forwards the app's logs to Application Insights.
  * Otherwise tracing is off: no OpenTelemetry module is imported and a span costs a function call.

Across each hop the context travels as a W3C traceparent (the queue message, the worker's event).
A traceparent only groups telemetry and decides nothing, so one that is missing or malformed
starts a new trace and never fails the work. Spans carry ids, names and outcomes; never what a
user wrote.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported on the first span, and only when tracing is on
    from opentelemetry.context import Context
    from opentelemetry.trace import Span, Tracer, TracerProvider

logger = logging.getLogger(__name__)

TRACER_NAME = "long-operation-bot"
# Attribute names the app's spans use (Application Insights shows them as custom dimensions).
CONVERSATION_ID = "bot.conversation.id"
OPERATION_NAME = "bot.operation.name"
OPERATION_ID = "bot.operation.id"
OUTCOME = "bot.outcome"

AttributeValue = str | bool | int | float
Attributes = Mapping[str, AttributeValue]


class SpanHandle:
    """What the code inside a span may do with it. This base does nothing: tracing is off."""

    def set(self, key: str, value: AttributeValue) -> None:
        pass

    def fail(self, description: str) -> None:
        """Mark the span as failed without an exception (e.g. an error answered as HTTP 500)."""


_NO_SPAN = SpanHandle()


class _RecordingSpan(SpanHandle):
    def __init__(self, span: Span) -> None:
        self._span = span

    def set(self, key: str, value: AttributeValue) -> None:
        self._span.set_attribute(key, value)

    def fail(self, description: str) -> None:
        from opentelemetry.trace import Status, StatusCode

        self._span.set_status(Status(StatusCode.ERROR, description))


# What azure-monitor-opentelemetry instruments by default (its "fully supported" libraries).
_AUTOMATIC_INSTRUMENTATIONS = (
    "azure_sdk",
    "django",
    "fastapi",
    "flask",
    "httpx",
    "httpx2",
    "psycopg2",
    "requests",
    "urllib",
    "urllib3",
)


def configure_azure_monitor(connection_string: str) -> None:
    """Export spans to Application Insights, as the Python worker would, but traces only (the host
    forwards logs already; exporting them here too would show each log line twice)."""
    from azure.monitor.opentelemetry import configure_azure_monitor as configure

    configure(
        connection_string=connection_string,
        disable_logging=True,
        disable_metrics=True,
        enable_live_metrics=False,
        # Keep or drop a trace whole: the ratio sampler decides by trace id, the same way in every
        # process of the path; the distro's default (5 spans/s) decides again at each hop.
        # OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG still override it.
        sampling_ratio=1.0,
        # The app's own spans only: the automatic ones (a span per Cosmos DB, queue and HTTP call)
        # made a plain turn cost about 60 % more CPU here (README, "Traces").
        instrumentation_options={name: {"enabled": False} for name in _AUTOMATIC_INSTRUMENTATIONS},
    )


def _installed_provider() -> TracerProvider | None:
    """The tracer provider someone installed (the worker, the local host, a configuration), if any."""
    # Nobody can have installed one without importing OpenTelemetry: checking costs nothing.
    trace: Any = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return None
    provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return None
    return provider  # type: ignore[no-any-return]


def _remote_context(traceparent: str | None) -> Context | None:
    """The context a W3C traceparent names, or None if it is missing or malformed."""
    if not traceparent or not isinstance(traceparent, str):
        return None
    from opentelemetry.trace import get_current_span
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    context = TraceContextTextMapPropagator().extract({"traceparent": traceparent})
    if not get_current_span(context).get_span_context().is_valid:
        logger.debug("ignored a malformed traceparent: %.80r", traceparent)
        return None
    return context


class Tracing:
    """The app's spans; see the module's docstring. One per process (bootstrap builds it).

    `provider` is for tests (an SDK provider with an in-memory exporter); `configure` replaces
    configure_azure_monitor (tests)."""

    def __init__(
        self,
        connection_string: str = "",
        *,
        provider: TracerProvider | None = None,
        configure: Callable[[str], None] = configure_azure_monitor,
    ) -> None:
        self._connection_string = connection_string
        self._provider = provider
        self._configure = configure
        self._tracer: Tracer | None = None
        self._resolved = False
        self._lock = threading.Lock()

    def _active_tracer(self) -> Tracer | None:
        if not self._resolved:
            with self._lock:
                if not self._resolved:
                    self._tracer = self._resolve()
                    self._resolved = True
        return self._tracer

    def _resolve(self) -> Tracer | None:
        provider = self._provider or _installed_provider()
        if provider is None and self._connection_string:
            try:
                self._configure(self._connection_string)
            except Exception:  # telemetry must never stop the bot
                logger.warning("traces are off: Azure Monitor could not be configured", exc_info=True)
            provider = _installed_provider()
        return provider.get_tracer(TRACER_NAME) if provider is not None else None

    @contextmanager
    def span(
        self,
        name: str,
        *,
        kind: str = "internal",
        parents: Sequence[str | None] = (),
        links: Sequence[str | None] = (),
        attributes: Attributes | None = None,
    ) -> Iterator[SpanHandle]:
        """A span around the block, current inside it (awaits included). Its parent is the first valid
        traceparent of `parents`, else the current span (a new trace if there is none); `links` are
        traceparents worth a link (the Functions host's invocation, when another trace is the parent).
        `kind`: internal, server, client, producer or consumer. An exception leaving the block is
        recorded on the span and marks it failed."""
        tracer = self._active_tracer()
        if tracer is None:
            yield _NO_SPAN
            return
        from opentelemetry import trace

        parent = next((context for context in map(_remote_context, parents) if context is not None), None)
        parent_span = trace.get_current_span(parent).get_span_context() if parent is not None else None
        linked = []
        for context in map(_remote_context, links):
            span_context = trace.get_current_span(context).get_span_context() if context is not None else None
            if span_context is not None and span_context != parent_span:
                linked.append(trace.Link(span_context))
        with tracer.start_as_current_span(
            name, context=parent, kind=trace.SpanKind[kind.upper()], links=linked, attributes=attributes
        ) as span:
            yield _RecordingSpan(span)

    def traceparent(self) -> str | None:
        """The current span's W3C traceparent, to carry across a hop (None when tracing is off)."""
        if self._active_tracer() is None:
            return None
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        carrier: dict[str, str] = {}
        TraceContextTextMapPropagator().inject(carrier)
        return carrier.get("traceparent")

    def annotate(self, attributes: Attributes) -> None:
        """Add attributes to the current span (nothing when tracing is off or no span is current)."""
        if self._active_tracer() is None:
            return
        from opentelemetry.trace import get_current_span

        get_current_span().set_attributes(attributes)

    def producer(
        self,
        name: str,
        send: Callable[[dict[str, Any]], Awaitable[None]],
        describe: Callable[[dict[str, Any]], Attributes],
        carry: Callable[[dict[str, Any], str | None], dict[str, Any]],
    ) -> Callable[[dict[str, Any]], Awaitable[None]]:
        """`send` in a producer span; the message it sends carries that span's traceparent (`carry` puts
        it in, `describe` names the message's attributes)."""

        async def traced_send(message: dict[str, Any]) -> None:
            with self.span(name, kind="producer", attributes=describe(message)) as span:
                await send(carry(message, self.traceparent()))
                span.set(OUTCOME, "sent")

        return traced_send
