"""Local only: the app's spans, one line each in the host's output, as each span ends.

In Azure the Python worker installs the tracer provider (Azure Monitor) before it imports the app,
when PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY is true; the app records into whatever provider
is installed (services/telemetry.py). The local host does the same with a provider that prints:

    [..Z] trace 4bf92f35  run operation  812.4 ms  span 00f067aa <- 1a2b3c4d (remote)  bot.operation.name=prime report

short trace and span ids, the name, the duration, the parent span ("(remote)": it came from another
invocation, through the queue message or the worker's event; "-": none). Lines of one trace share
its id; `grep 'trace 4bf92f35' .localdev/logs/functions.log` shows one request's whole path.

On by default; LOCALDEV_TRACES=0 in the host's environment turns it off. An installed provider wins
over the app's own Azure Monitor configuration (as the worker's does in Azure), so to export to
Application Insights from this machine, set APPLICATIONINSIGHTS_CONNECTION_STRING and LOCALDEV_TRACES=0.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan

log = logging.getLogger("localdev.traces")

SWITCH = "LOCALDEV_TRACES"
_OFF = ("0", "false", "no", "off")
_SHORT = 8  # hex digits shown of trace and span ids

SPAN_LINE = re.compile(
    r"trace (?P<trace>[0-9a-f]{8})  (?P<name>.+?)  (?P<ms>[0-9.]+) ms  "
    r"span (?P<span>[0-9a-f]{8}) <- (?P<parent>[0-9a-f]{8}|-)(?P<remote> \(remote\))?(?:  (?P<attributes>.*))?$"
)


def enabled(environ: Mapping[str, str] = os.environ) -> bool:
    return environ.get(SWITCH, "").strip().lower() not in _OFF


def install_span_lines(environ: Mapping[str, str] = os.environ) -> bool:
    """Install a tracer provider that logs a line per finished span, unless LOCALDEV_TRACES is off.
    Call before the app is imported. Returns whether it did."""
    if not enabled(environ):
        return False
    from opentelemetry import trace
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON

    class SpanLines(SpanProcessor):
        def on_end(self, span: ReadableSpan) -> None:
            log.info(format_span(span))

    # ALWAYS_ON: the local host's trace context is not marked sampled; every span should show here.
    provider = TracerProvider(sampler=ALWAYS_ON)
    provider.add_span_processor(SpanLines())
    trace.set_tracer_provider(provider)
    return True


def _short(identifier: int, digits: int) -> str:
    return f"{identifier:0{digits}x}"[:_SHORT]


def format_span(span: ReadableSpan) -> str:
    context = span.context
    assert context is not None
    duration_ms = ((span.end_time or 0) - (span.start_time or 0)) / 1e6
    parent = "-"
    if span.parent is not None and span.parent.is_valid:
        parent = _short(span.parent.span_id, 16) + (" (remote)" if span.parent.is_remote else "")
    attributes = " ".join(f"{key}={value}" for key, value in (span.attributes or {}).items())
    status = "  FAILED" if not span.status.is_ok else ""
    line = (
        f"trace {_short(context.trace_id, 32)}  {span.name}  {duration_ms:.1f} ms  "
        f"span {_short(context.span_id, 16)} <- {parent}"
    )
    return f"{line}  {attributes}{status}" if attributes or status else line


@dataclass(frozen=True)
class SpanLine:
    """One printed span, read back (tests)."""

    trace: str
    name: str
    duration_ms: float
    span: str
    parent: str | None  # None: no parent
    remote_parent: bool
    attributes: dict[str, str]
    failed: bool


def parse_span_lines(text: str) -> list[SpanLine]:
    """Every span line in a host's output, in order."""
    found = []
    for raw in text.splitlines():
        index = raw.find("trace ")
        match = SPAN_LINE.search(raw[index:]) if index >= 0 else None
        if match is None:
            continue
        listed = match["attributes"] or ""
        failed = listed == "FAILED" or listed.endswith("  FAILED")
        attributes = {}
        for item in re.split(r" (?=[\w.]+=)", listed.removesuffix("FAILED").strip() if failed else listed):
            key, separator, value = item.partition("=")
            if separator:
                attributes[key] = value
        found.append(
            SpanLine(
                trace=match["trace"],
                name=match["name"],
                duration_ms=float(match["ms"]),
                span=match["span"],
                parent=None if match["parent"] == "-" else match["parent"],
                remote_parent=bool(match["remote"]),
                attributes=attributes,
                failed=failed,
            )
        )
    return found
