"""Traces along a long operation, without emulators: the queue message and the worker's events carry a
W3C traceparent, the worker's run joins the trace that enqueued it, and tracing is free when off.

Spans are read from the OpenTelemetry SDK's in-memory exporter (the worker runs in this process); the
Direct Line service is the only stand-in (tests/unit/test_operations_worker.py's recorder)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from bot_logic.operation_protocol import (
    RESULT_EVENT,
    carried_traceparent,
    trace_attributes,
    verified_payload,
    with_traceparent,
)
from handlers.operations_worker import QueueMessageData, WorkerDependencies, handle_operation_message
from localdev.processes import PROJECT_ROOT
from localdev.settings_file import create_local_settings, read_values
from services import telemetry
from services.telemetry import Tracing
from tests.unit.test_operations_worker import KEY, RecordingDirectLine, counting_operation, request, worker_deps

# The Functions host's trace context of an invocation, as context.trace_context.trace_parent gives it.
HOST_TRACE = "0af7651916cd43dd8448eb211c80319c"
HOST_TRACEPARENT = f"00-{HOST_TRACE}-b7ad6b7169203331-01"
FAKE_CONNECTION_STRING = "InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=http://127.0.0.1:9/"


pytestmark = pytest.mark.usefixtures("counting_operation")
__all__ = ["counting_operation"]  # a fixture of the worker's tests, used here too


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def tracing(exporter: InMemorySpanExporter) -> Tracing:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return Tracing(provider=provider)


@pytest.fixture
def directline() -> RecordingDirectLine:
    return RecordingDirectLine()


@pytest.fixture
def deps(directline: RecordingDirectLine, tracing: Tracing) -> WorkerDependencies:
    return worker_deps(directline, [], tracing=tracing)


def spans(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.name == name]


def only(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    [span] = spans(exporter, name)
    return span


def trace_hex(span: ReadableSpan) -> str:
    assert span.context is not None
    return f"{span.context.trace_id:032x}"


def traceparent_of(span: ReadableSpan) -> str:
    assert span.context is not None
    return f"00-{span.context.trace_id:032x}-{span.context.span_id:016x}-01"


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


async def enqueue(tracing: Tracing, body: dict[str, Any]) -> dict[str, Any]:
    """The bot's side of the hop: the outbox's send, as bootstrap wraps it."""
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await tracing.producer("enqueue operation", send, trace_attributes, with_traceparent)(body)
    return sent[0]


def message(body: dict[str, Any] | bytes, dequeue_count: int = 1) -> QueueMessageData:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return QueueMessageData(id="m1", body=raw, dequeue_count=dequeue_count)


async def test_the_run_joins_the_trace_that_enqueued_it_and_the_result_event_carries_it_on(
    tracing: Tracing, exporter: InMemorySpanExporter, deps: WorkerDependencies, directline: RecordingDirectLine
) -> None:
    with tracing.span("message turn", kind="server", parents=(HOST_TRACEPARENT,)):
        queued = await enqueue(tracing, json.loads(request("counting test")))

    outcome = await handle_operation_message(message(queued), deps, "00-" + "1" * 32 + "-" + "2" * 16 + "-01")

    assert outcome == "succeeded"
    turn, sent, run = (
        only(exporter, "message turn"),
        only(exporter, "enqueue operation"),
        only(exporter, "run operation"),
    )
    post = only(exporter, "post operation result")
    assert {trace_hex(s) for s in (turn, sent, run, post)} == {HOST_TRACE}
    assert parent_id(turn) == 0xB7AD6B7169203331
    assert parent_id(sent) == turn.context.span_id and sent.kind == SpanKind.PRODUCER
    assert parent_id(run) == sent.context.span_id and run.parent.is_remote and run.kind == SpanKind.CONSUMER
    assert parent_id(post) == run.context.span_id and post.kind == SpanKind.CLIENT
    # The host's own trace of the queue invocation is linked, not lost.
    assert [f"{link.context.trace_id:032x}" for link in run.links] == ["1" * 32]
    assert queued["traceparent"] == traceparent_of(sent)

    name, value = directline.posts[-1]
    assert name == RESULT_EVENT
    assert carried_traceparent(value) == traceparent_of(post)
    # Beside the signature, not inside it: the payload still verifies and holds no trace context.
    payload = verified_payload(value, KEY)
    assert payload is not None and "traceparent" not in payload
    assert run.attributes is not None
    assert run.attributes["bot.outcome"] == "succeeded"
    assert run.attributes["bot.operation.name"] == "counting test"
    assert run.attributes["bot.conversation.id"] == "c1"


async def test_a_message_without_a_traceparent_runs_in_the_hosts_trace(
    exporter: InMemorySpanExporter, deps: WorkerDependencies
) -> None:
    """Messages queued before this version carry none: the run starts from the host's invocation."""
    assert await handle_operation_message(message(request("counting test")), deps, HOST_TRACEPARENT) == "succeeded"
    run = only(exporter, "run operation")
    assert trace_hex(run) == HOST_TRACE and parent_id(run) == 0xB7AD6B7169203331 and not run.links
    assert trace_hex(only(exporter, "post operation result")) == HOST_TRACE


async def test_without_any_trace_context_the_run_starts_a_new_trace(
    exporter: InMemorySpanExporter, deps: WorkerDependencies
) -> None:
    assert await handle_operation_message(message(request("counting test")), deps) == "succeeded"
    run = only(exporter, "run operation")
    assert run.parent is None
    assert trace_hex(only(exporter, "post operation result")) == trace_hex(run)


@pytest.mark.parametrize(
    "carried",
    [
        "not a traceparent",
        "00-" + "0" * 32 + "-b7ad6b7169203331-01",  # an all-zero trace id is invalid
        "00-0af7651916cd43dd8448eb211c80319c-" + "0" * 16 + "-01",  # so is an all-zero span id
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",  # version ff is forbidden
        42,
        {"traceparent": "nested"},
    ],
)
async def test_a_malformed_traceparent_is_ignored_and_the_work_goes_on(
    exporter: InMemorySpanExporter, deps: WorkerDependencies, directline: RecordingDirectLine, carried: Any
) -> None:
    body = {**json.loads(request("counting test")), "traceparent": carried}
    assert await handle_operation_message(message(body), deps, HOST_TRACEPARENT) == "succeeded"
    run = only(exporter, "run operation")
    assert trace_hex(run) == HOST_TRACE and parent_id(run) == 0xB7AD6B7169203331
    assert [name for name, _ in directline.posts].count(RESULT_EVENT) == 1


async def test_a_poisoned_message_is_a_span_of_the_hosts_trace(
    exporter: InMemorySpanExporter, deps: WorkerDependencies
) -> None:
    assert await handle_operation_message(message(b"{not json"), deps, HOST_TRACEPARENT) == "poisoned"
    run = only(exporter, "run operation")
    assert trace_hex(run) == HOST_TRACE and run.attributes is not None and run.attributes["bot.outcome"] == "poisoned"


async def test_progress_posts_are_spans_of_the_run_and_carry_their_own_traceparent(
    exporter: InMemorySpanExporter, deps: WorkerDependencies, directline: RecordingDirectLine
) -> None:
    # The counting operation reports progress at each quarter (progress_interval 0 in these deps).
    outcome = await handle_operation_message(message(request("counting test")), deps, HOST_TRACEPARENT)
    assert outcome == "succeeded"
    run = only(exporter, "run operation")
    progress = spans(exporter, "post operation progress")
    assert progress, "the run reported no progress"
    progress_values = [value for name, value in directline.posts if name != RESULT_EVENT]
    assert [carried_traceparent(value) for value in progress_values] == [traceparent_of(span) for span in progress]
    assert all(parent_id(span) == run.context.span_id for span in progress)


async def test_spans_tell_ids_names_and_outcomes_never_parameters(
    tracing: Tracing, exporter: InMemorySpanExporter, deps: WorkerDependencies
) -> None:
    body = {**json.loads(request("counting test")), "parameters": {"n": 7}}
    queued = await enqueue(tracing, body)
    assert await handle_operation_message(message(queued), deps) == "succeeded"
    for span in exporter.get_finished_spans():
        assert set(span.attributes or {}) <= {
            telemetry.CONVERSATION_ID,
            telemetry.OPERATION_NAME,
            telemetry.OPERATION_ID,
            telemetry.OUTCOME,
            "bot.delivery",
        }, span.name


def test_the_trace_context_travels_beside_the_data() -> None:
    value = {"payload": "{}", "signature": "ab"}
    assert with_traceparent(value, None) is value  # tracing off: the message is exactly as before
    assert carried_traceparent(with_traceparent(value, HOST_TRACEPARENT)) == HOST_TRACEPARENT
    assert carried_traceparent({"traceparent": 7}) is None
    assert carried_traceparent("text") is None
    assert carried_traceparent(None) is None


def test_a_connection_string_configures_azure_monitor_at_the_first_span_not_before() -> None:
    configured: list[str] = []
    tracing = Tracing("InstrumentationKey=x", configure=configured.append)
    assert configured == []  # building it (at import, in bootstrap) costs nothing
    with tracing.span("first"):
        pass
    with tracing.span("second"):
        pass
    assert configured == ["InstrumentationKey=x"]


def test_a_configuration_that_fails_leaves_traces_off_and_the_work_running(caplog: pytest.LogCaptureFixture) -> None:
    def broken(connection_string: str) -> None:
        raise ValueError("Invalid instrumentation key")

    tracing = Tracing("InstrumentationKey=nonsense", configure=broken)
    with caplog.at_level(logging.WARNING, logger="services.telemetry"):
        with tracing.span("turn") as span:
            span.set("bot.outcome", "ok")
        assert tracing.traceparent() is None
    assert "traces are off: Azure Monitor could not be configured" in caplog.text


def _fresh_python(code: str, **environment: str) -> str:
    """`code` in a fresh interpreter with the sample's settings (fresh secrets), as `make run` starts."""
    with tempfile.TemporaryDirectory() as folder:
        settings = read_values(create_local_settings(Path(folder) / "local.settings.json"))
    env = {**os.environ, **settings, **environment}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


_FIRST_SPAN = """
import sys
import function_app
from bootstrap import composition
print("at import:", sorted({m.split(".")[0] for m in sys.modules if m.startswith(("opentelemetry", "azure.monitor"))}))
tracing = composition().tracing
with tracing.span("turn") as span:
    span.set("bot.outcome", "ok")
    print("traceparent:", tracing.traceparent())
print("after a span:", "azure.monitor.opentelemetry" in sys.modules)
"""


def test_without_a_connection_string_tracing_imports_nothing() -> None:
    """Cold start: neither importing the app nor a span loads OpenTelemetry when nothing records."""
    output = _fresh_python(_FIRST_SPAN, APPLICATIONINSIGHTS_CONNECTION_STRING="")
    assert "at import: []" in output
    assert "traceparent: None" in output
    assert "after a span: False" in output


def test_with_a_connection_string_azure_monitor_is_configured_by_the_first_span() -> None:
    """The real azure-monitor-opentelemetry, pointed at a closed local port: nothing leaves the machine."""
    output = _fresh_python(_FIRST_SPAN, APPLICATIONINSIGHTS_CONNECTION_STRING=FAKE_CONNECTION_STRING)
    assert "at import: []" in output  # the import of function_app does not pay for it
    assert "after a span: True" in output
    [traceparent] = [line.split()[-1] for line in output.splitlines() if line.startswith("traceparent:")]
    assert int(traceparent.split("-")[-1], 16) & 1, f"the span was sampled away: {traceparent}"


@pytest.fixture(autouse=True)
def _no_global_provider() -> Iterator[None]:
    """These tests pass their own provider; none may leak into the process's global one."""
    yield
    assert telemetry._installed_provider() is None
