"""One trace per user request, end to end on this machine (what `make run` runs): a person chats through
the local Direct Line with Microsoft's own client, asks for a long operation and gets its result; the
local Functions host prints a line per finished span, and those lines show the message turn, the
enqueue, the worker's run, its Direct Line post and the resumed turn as one trace, parent by parent."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from localdev.directline.tests.directline_js import DirectLineJsClient
from localdev.emulators import Azurite, CosmosStandIn
from localdev.functions_host.telemetry import SWITCH, SpanLine, parse_span_lines
from localdev.stack import LocalStack
from tests.e2e.test_long_operations_directline import conversation_id, introduce, is_bot_text
from tests.support.local_bot import running_bot

pytestmark = [pytest.mark.emulators, pytest.mark.node]

NAME = "Quokka"
CHOICE = "prime report end=4000"


@pytest.fixture(scope="module")
def bot(azurite: Azurite, cosmos: CosmosStandIn) -> Iterator[LocalStack]:
    with pytest.MonkeyPatch.context() as environment:
        environment.setenv(SWITCH, "1")  # the host's span lines: on, whatever the caller's shell says
        with running_bot(azurite, cosmos) as running:
            yield running


def chain(spans: list[SpanLine], last: SpanLine) -> list[SpanLine]:
    """`last` and its ancestors among `spans`, last first."""
    by_id = {(span.trace, span.span): span for span in spans}
    found = [last]
    while found[-1].parent is not None and (found[-1].trace, found[-1].parent) in by_id:
        found.append(by_id[(found[-1].trace, found[-1].parent)])
    return found


def test_a_long_operation_is_one_trace_from_the_choice_to_the_resumed_turn(bot: LocalStack) -> None:
    with DirectLineJsClient() as client:
        client.start(bot.directline.domain, secret=bot.secret, user_id="trace-user")
        introduce(client, NAME)
        mark = client.mark()
        client.send(CHOICE)
        client.wait_for_activity(
            is_bot_text("^Thanks for waiting. Prime report for 1 to 4,000"), since=mark, timeout=60
        )
        conversation = conversation_id(client)

    def resumed_in(text: str) -> list[SpanLine]:
        return [
            span
            for span in parse_span_lines(text)
            if span.name == "resumed turn" and span.attributes.get("bot.conversation.id") == conversation
        ]

    def whole_path_in(text: str) -> bool:
        # A span's line is printed when it ends: the worker's spans end after the turn it resumed.
        spans = parse_span_lines(text)
        return any(chain(spans, resumed)[-1].name == "message turn" for resumed in resumed_in(text))

    try:
        output = bot.host.wait_for_output(whole_path_in, timeout=30)
    except TimeoutError:
        output = bot.host.output  # a broken chain: the assertions below show where it breaks
    if not resumed_in(output):
        pytest.fail("no resumed turn span:\n" + output[-4000:])
    spans = parse_span_lines(output)
    [resumed] = resumed_in(output)
    path = chain(spans, resumed)
    assert [span.name for span in path] == [
        "resumed turn",
        "post operation result",
        "run operation",
        "enqueue operation",
        "message turn",
    ], "\n".join(line for line in output.splitlines() if "trace " in line)
    assert len({span.trace for span in path}) == 1
    # Where the trace crossed from one invocation to another: the queue message, the worker's event.
    assert [span.remote_parent for span in path[:-1]] == [True, False, True, False]
    turn = path[-1]
    assert turn.attributes["bot.conversation.id"] == conversation and turn.attributes["bot.outcome"] == "ok"
    assert path[2].attributes["bot.outcome"] == "succeeded"
    assert resumed.attributes["bot.operation.name"] == "prime report"
    span_lines = "\n".join(line for line in output.splitlines() if "trace " in line)
    assert NAME not in span_lines and "end=4000" not in span_lines  # what the user wrote stays out
