"""Microsoft's own Direct Line client (botframework-directlinejs, unmodified) chatting through the local server."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from localdev.directline.tests.directline_js import DirectLineJsClient
from localdev.directline.tests.support import SECRET, Stack, running_stack, user_token
from localdev.processes import NODE_MODULES

pytestmark = [
    pytest.mark.node,
    pytest.mark.skipif(
        shutil.which("node") is None or not (NODE_MODULES / "botframework-directlinejs").is_dir(),
        reason="needs node and `npm ci`",
    ),
]


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with running_stack() as running:
        yield running


@pytest.mark.parametrize("mode", ["websocket", "polling"])
def test_send_and_receive_with_the_secret(stack: Stack, mode: str) -> None:
    with DirectLineJsClient().start(stack.domain, secret=SECRET, mode=mode, user_id=f"js-{mode}") as client:
        welcome = client.wait_for_text(f"welcome js-{mode}")  # the user id went in the start request
        conversation_id = welcome["conversation"]["id"]

        mark = client.mark()
        posted_id = client.send("hello", channelData={"clientActivityID": f"client-{mode}"})
        assert posted_id.startswith(f"{conversation_id}|")
        echo = client.wait_for_activity(
            lambda a: (a.get("channelData") or {}).get("clientActivityID") == f"client-{mode}", since=mark
        )
        assert echo["id"] == posted_id and echo["from"]["id"] == f"js-{mode}" and echo["from"]["role"] == "user"
        reply = client.wait_for_text("echo: hello", since=mark)
        assert reply["replyToId"] == posted_id

        client.send_event("LongOperationResponse", {"operationId": "op-7"})
        client.wait_for_text('event LongOperationResponse {"operationId": "op-7"}')
        forwarded = stack.bot.received_in(conversation_id)[-1]
        assert forwarded["type"] == "event" and forwarded["value"] == {"operationId": "op-7"}

        client.send("typing")
        client.wait_for_text("echo: typing")
        typing = [a for a in client.activities if a["type"] == "typing"]
        assert len(typing) == (1 if mode == "websocket" else 0)  # typing only travels on the WebSocket
        assert not [a for a in client.activities if a["type"] == "conversationUpdate"]
        assert client.errors == []


def test_webchat_style_token_with_embedded_user(stack: Stack) -> None:
    local = user_token(stack, "dl_webchat")
    # The client is told another user id (as a page might): the token's user is who speaks.
    with DirectLineJsClient().start(stack.domain, token=local["token"], user_id="dl_claimed") as client:
        client.wait_for_text("welcome dl_webchat")
        client.send("from web chat")
        reply = client.wait_for_text("echo: from web chat")
        assert reply["recipient"]["id"] == "dl_webchat" and reply["conversation"]["id"] == local["conversationId"]


def test_two_tabs_of_one_conversation_take_turns_on_the_stream_and_miss_nothing(stack: Stack) -> None:
    """As in Azure, a conversation has one WebSocket: a second tab's stream closes the first's ("collision").
    Microsoft's client (the one inside Web Chat) ignores the reason and reconnects with its watermark after a
    pause (3-15 s in a browser, 300 ms here), displacing the other tab in turn: both show everything, once, late."""
    local = user_token(stack, "dl_tabs")
    tab = {"token": local["token"], "user_id": "dl_tabs", "retry_delay_ms": 300}
    with DirectLineJsClient().start(stack.domain, **tab) as first:
        first.wait_for_text("welcome dl_tabs")
        with DirectLineJsClient().start(stack.domain, conversation_id=local["conversationId"], **tab) as second:
            assert first.wait_for_socket_close("collision")["code"] == 1008
            second.send("from the second tab")
            first.send("from the first tab")
            assert second.wait_for_socket_close("collision")["code"] == 1008  # the first tab came back
            second.send("last")
            for each in (first, second):
                each.wait_for_text("echo: last", timeout=15)
                texts = [a.get("text") for a in each.activities if a.get("type") == "message"]
                for text in ("from the second tab", "from the first tab", "last"):
                    assert (texts.count(text), texts.count(f"echo: {text}")) == (1, 1), (text, texts)
                assert set(each.statuses) <= {0, 1, 2} and each.errors == []  # never anything but Online
