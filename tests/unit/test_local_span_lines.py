"""The local Functions host's span lines (localdev/functions_host/telemetry.py): what the app records ends
up as one readable line per span, which tests read back; LOCALDEV_TRACES=0 turns them off."""

from __future__ import annotations

import os
import subprocess
import sys

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from localdev.functions_host.telemetry import SWITCH, enabled, format_span, parse_span_lines
from localdev.processes import PROJECT_ROOT
from services.telemetry import Tracing

REMOTE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def recorded() -> tuple[Tracing, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return Tracing(provider=provider), exporter


def finished(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    [span] = [s for s in exporter.get_finished_spans() if s.name == name]
    return span


def test_a_line_per_span_reads_back_with_its_trace_parent_and_attributes() -> None:
    tracing, exporter = recorded()
    with tracing.span("run operation", parents=(REMOTE,), attributes={"bot.operation.name": "prime report"}) as run:
        run.set("bot.outcome", "succeeded")
        with tracing.span("post operation result"):
            pass
    with tracing.span("message turn") as turn:
        turn.fail("HTTP 500")

    text = "\n".join(
        f"[2026-11-23T14:17:46.993Z] {format_span(finished(exporter, name))}"
        for name in ("post operation result", "run operation", "message turn")
    )
    post, run_line, turn_line = parse_span_lines(text)
    assert run_line.trace == "0af76519" and post.trace == "0af76519"
    assert (run_line.parent, run_line.remote_parent) == ("b7ad6b71", True)
    assert (post.parent, post.remote_parent) == (run_line.span, False)
    assert run_line.attributes == {"bot.operation.name": "prime report", "bot.outcome": "succeeded"}
    assert run_line.name == "run operation" and run_line.duration_ms >= 0 and not run_line.failed
    assert turn_line.parent is None and turn_line.failed and turn_line.attributes == {}


def test_lines_are_on_unless_switched_off() -> None:
    assert enabled({})
    assert enabled({SWITCH: "1"})
    assert not enabled({SWITCH: "0"}) and not enabled({SWITCH: "off"}) and not enabled({SWITCH: " False "})


_HOST_START = """
import logging, sys
logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(message)s")
from localdev.functions_host.telemetry import install_span_lines
print("installed:", install_span_lines())
from services.telemetry import Tracing
tracing = Tracing()  # as the app builds it without a connection string
with tracing.span("message turn", kind="server") as span:
    span.set("bot.outcome", "ok")
"""


def _host_start(**environment: str) -> str:
    env = {**os.environ, **environment}
    done = subprocess.run(
        [sys.executable, "-c", _HOST_START], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_apps_spans_go_to_the_provider_the_host_installed() -> None:
    output = _host_start(**{SWITCH: "1"})
    assert "installed: True" in output
    [line] = parse_span_lines(output)
    assert line.name == "message turn" and line.attributes == {"bot.outcome": "ok"}


def test_switched_off_the_host_installs_nothing_and_the_app_records_nothing() -> None:
    output = _host_start(**{SWITCH: "0"})
    assert "installed: False" in output
    assert parse_span_lines(output) == []
