"""One trace per user request, in process: the user's choice (message turn), the queue message (enqueue),
the worker's run and its post of the result, and the bot's resumed turn, through the real handlers,
storage and queue; spans read from the OpenTelemetry SDK's in-memory exporter."""

from __future__ import annotations

import dataclasses
import json
import uuid
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from bootstrap import Composition
from bot_logic.operation_protocol import RESULT_EVENT, carried_traceparent, result_payload, sign, with_traceparent
from handlers.messages import handle_messages
from handlers.operations_worker import QueueMessageData, handle_operation_message
from services.telemetry import Tracing
from tests.integration.test_operation_flow import queued_requests, worker_event
from tests.support.activities import activity, joined, post
from tests.support.connector import RecordingConnector
from tests.unit.test_operations_worker import RecordingDirectLine

pytestmark = pytest.mark.emulators

# The Functions host's trace context of each invocation (context.trace_context.trace_parent).
CHOICE_HOST = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
WORKER_HOST = "00-11111111111111111111111111111111-2222222222222222-01"
EVENT_HOST = "00-33333333333333333333333333333333-4444444444444444-01"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def traced(app: Composition, exporter: InMemorySpanExporter) -> Composition:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app.tracing = Tracing(provider=provider)  # before anything that uses it is built
    return app


def by_name(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.name == name]


def by_id(exporter: InMemorySpanExporter, span_id: int) -> ReadableSpan:
    [span] = [s for s in exporter.get_finished_spans() if s.context is not None and s.context.span_id == span_id]
    return span


def parent_of(exporter: InMemorySpanExporter, span: ReadableSpan) -> ReadableSpan:
    assert span.parent is not None, f"{span.name} has no parent"
    return by_id(exporter, span.parent.span_id)


def trace_of(span: ReadableSpan) -> str:
    assert span.context is not None
    return f"{span.context.trace_id:032x}"


async def choose_an_operation(app: Composition, connector: RecordingConnector) -> tuple[str, dict[str, Any]]:
    conversation = f"c-{uuid.uuid4()}"
    url = connector.service_url
    await handle_messages(post(joined(conversation, url)), app.messages)
    await handle_messages(post(activity(conversation, url, text="Grace")), app.messages)
    choice = activity(conversation, url, text="prime report end=1000")
    assert (await handle_messages(post(choice), app.messages, CHOICE_HOST)).status == 200
    [request] = [r for r in await queued_requests(app) if r["conversation"]["conversation"]["id"] == conversation]
    return conversation, request


async def run_worker(app: Composition, request: dict[str, Any]) -> dict[str, Any]:
    """The worker's invocation for the queued message; returns the result event's value it posted."""
    directline = RecordingDirectLine()  # the Direct Line service itself cannot run here
    deps = dataclasses.replace(app.worker, directline=directline, conversation=None)  # a conversation on it
    body = json.dumps(request).encode()
    assert await handle_operation_message(QueueMessageData("m1", body, 1), deps, WORKER_HOST) == "succeeded"
    [value] = [value for name, value in directline.posts if name == RESULT_EVENT]
    return value


async def test_one_trace_from_the_users_choice_to_the_resumed_turn(
    traced: Composition, connector: RecordingConnector, exporter: InMemorySpanExporter
) -> None:
    conversation, request = await choose_an_operation(traced, connector)
    value = await run_worker(traced, request)
    event = worker_event(connector, RESULT_EVENT, value)
    assert (await handle_messages(post(event), traced.messages, EVENT_HOST)).status == 200
    assert connector.messages(conversation)[-2].startswith("Thanks for waiting. Prime report for 1 to 1,000")

    [resumed] = by_name(exporter, "resumed turn")
    posted = parent_of(exporter, resumed)
    run = parent_of(exporter, posted)
    enqueued = parent_of(exporter, run)
    turn = parent_of(exporter, enqueued)
    assert [s.name for s in (posted, run, enqueued, turn)] == [
        "post operation result",
        "run operation",
        "enqueue operation",
        "message turn",
    ]
    assert {trace_of(s) for s in (resumed, posted, run, enqueued, turn)} == {CHOICE_HOST.split("-")[1]}
    assert turn.parent is not None and f"{turn.parent.span_id:016x}" == CHOICE_HOST.split("-")[2]
    # Each later invocation's own host trace is linked from the span that joined the user's trace.
    assert [f"{link.context.trace_id:032x}" for link in run.links] == [WORKER_HOST.split("-")[1]]
    assert [f"{link.context.trace_id:032x}" for link in resumed.links] == [EVENT_HOST.split("-")[1]]

    assert turn.attributes is not None and turn.attributes["bot.conversation.id"] == conversation
    assert resumed.attributes is not None
    assert resumed.attributes["bot.conversation.id"] == conversation  # the user's, not the worker's
    assert resumed.attributes["bot.operation.name"] == "prime report"
    assert resumed.attributes["bot.event.verified"] is True
    assert resumed.attributes["bot.outcome"] == "ok"
    everything = json.dumps([dict(span.attributes or {}) for span in exporter.get_finished_spans()])
    assert "Grace" not in everything and "end=1000" not in everything  # what the user wrote stays out


async def test_an_event_without_a_usable_traceparent_is_resumed_in_the_hosts_trace(
    traced: Composition, connector: RecordingConnector, exporter: InMemorySpanExporter
) -> None:
    conversation, request = await choose_an_operation(traced, connector)
    key = traced.settings.operation_signing_key
    value = with_traceparent(sign(result_payload(request, "succeeded", "42 primes."), key), "00-garbage")
    assert (
        await handle_messages(post(worker_event(connector, RESULT_EVENT, value)), traced.messages, EVENT_HOST)
    ).status == 200
    assert connector.messages(conversation)[-2] == "Thanks for waiting. 42 primes."
    [resumed] = by_name(exporter, "resumed turn")
    assert trace_of(resumed) == EVENT_HOST.split("-")[1] and not resumed.links


async def test_a_forged_event_joins_the_trace_it_names_but_changes_nothing(
    traced: Composition, connector: RecordingConnector, exporter: InMemorySpanExporter
) -> None:
    """The traceparent is unsigned: it can only place a span, never make the bot act."""
    _, request = await choose_an_operation(traced, connector)
    count = len(connector.activities)
    forged = with_traceparent(sign(result_payload(request, "succeeded", "forged"), "x" * 40), CHOICE_HOST)
    assert carried_traceparent(forged) == CHOICE_HOST
    await handle_messages(post(worker_event(connector, RESULT_EVENT, forged)), traced.messages, EVENT_HOST)
    assert len(connector.activities) == count
    [resumed] = by_name(exporter, "resumed turn")
    assert resumed.attributes is not None and "bot.event.verified" not in resumed.attributes
