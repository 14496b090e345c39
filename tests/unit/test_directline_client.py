"""The worker's Direct Line client against a scripted HTTP server: how long it waits when throttled."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from services.channel.directline_client import DirectLineClient, DirectLineError

Answer = tuple[int, dict[str, str]]


class ScriptedDirectLine:
    """Answers each POST with the next scripted (status, headers); then 200 with an activity id."""

    def __init__(self) -> None:
        self.script: list[Answer] = []
        self.posts = 0
        scripted = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                scripted.posts += 1
                status, headers = scripted.script.pop(0) if scripted.script else (200, {})
                body = json.dumps({"id": "conv|0000001"} if status < 400 else {"error": {"code": "x"}}).encode()
                self.send_response(status)
                for name, value in {**headers, "Content-Type": "application/json"}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}/v3/directline"


@pytest.fixture
def directline() -> Iterator[ScriptedDirectLine]:
    scripted = ScriptedDirectLine()
    thread = threading.Thread(target=scripted.server.serve_forever, daemon=True)
    thread.start()
    yield scripted
    scripted.server.shutdown()
    thread.join(5)
    scripted.server.server_close()


def post(client: DirectLineClient) -> str:
    return client.post_event("conv", "token", "LongOperationResponse", {"operationId": "op"}, "worker")


@pytest.mark.parametrize(
    ("retry_after", "least", "most"),
    [
        (lambda: "7", 7.0, 7.0),
        (lambda: formatdate(time.time() + 10, usegmt=True), 8.0, 10.0),  # whole seconds, less the time spent
        (lambda: "600", 20.0, 20.0),  # past max_delay: retried at max_delay (the queue message's time runs too)
    ],
    ids=["delta-seconds", "http-date", "beyond-max-delay"],
)
def test_throttled_post_waits_as_long_as_retry_after_asks(
    directline: ScriptedDirectLine, retry_after: Callable[[], str], least: float, most: float
) -> None:
    waits: list[float] = []
    client = DirectLineClient(directline.endpoint, "secret", sleep=waits.append)
    directline.script.append((429, {"Retry-After": retry_after()}))
    assert post(client) == "conv|0000001"
    assert directline.posts == 2
    [wait] = waits
    assert least <= wait <= most


def test_a_refusal_is_not_retried(directline: ScriptedDirectLine) -> None:
    waits: list[float] = []
    client = DirectLineClient(directline.endpoint, "secret", sleep=waits.append)
    directline.script.append((403, {}))
    with pytest.raises(DirectLineError, match="HTTP 403"):
        post(client)
    assert directline.posts == 1 and waits == []
