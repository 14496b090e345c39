"""The command lines: `python -m localdev.directline` and the terminal chat client `python -m localdev.chat_cli`."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from localdev.directline.tests.support import SECRET, BackgroundLoop, EchoBot
from localdev.processes import PROJECT_ROOT, free_port


def read_lines(process: subprocess.Popen[bytes], count: int, timeout: float) -> list[str]:
    """The first `count` lines of the child's stdout (raw reads: select and buffered files don't mix)."""
    assert process.stdout is not None
    data = b""
    deadline = time.monotonic() + timeout
    while data.count(b"\n") < count:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([process.stdout], [], [], remaining)[0]:
            raise AssertionError(f"no {count} lines within {timeout}s: {data!r}")
        chunk = os.read(process.stdout.fileno(), 4096)
        if not chunk:
            raise AssertionError(f"the server exited: {data!r}")
        data += chunk
    return data.decode().splitlines()[:count]


@pytest.fixture(scope="module")
def domain() -> Iterator[str]:
    loop = BackgroundLoop("cli-bot")
    bot = EchoBot()
    runner, bot_port = loop.run(bot.start())
    port = free_port()
    argv = [sys.executable, "-m", "localdev.directline", "--port", str(port), "--secret", SECRET,
            "--bot-endpoint", f"http://127.0.0.1:{bot_port}/api/messages", "--console-key", "run-key"]  # fmt: skip
    server = subprocess.Popen(argv, cwd=PROJECT_ROOT, stdout=subprocess.PIPE)
    try:
        assert read_lines(server, 3, 20) == [
            f"Direct Line listening on http://127.0.0.1:{port}/v3/directline",
            f"Web Chat: http://127.0.0.1:{port}/",
            f"Agent console: http://127.0.0.1:{port}/agent?key=run-key",
        ]
        yield f"http://127.0.0.1:{port}/v3/directline"
    finally:
        server.terminate()
        server.wait(10)
        loop.run(runner.cleanup())
        loop.run(bot.close())
        loop.close()


def test_server_command_serves_the_client_api(domain: str) -> None:
    started = requests.post(f"{domain}/conversations", headers={"Authorization": f"Bearer {SECRET}"}, timeout=10)
    assert started.status_code == 201


@pytest.mark.parametrize("transport", [[], ["--polling", "--poll-interval", "0.2"]], ids=["websocket", "polling"])
def test_chat_cli_sends_lines_and_prints_replies(domain: str, transport: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "localdev.chat_cli", "--directline", domain, "--secret", SECRET,
         "--user-id", "terminal", "--linger", "1", *transport],
        input="hello\ntyping\n", capture_output=True, text=True, timeout=30, cwd=PROJECT_ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "Bot> welcome terminal" in lines
    assert "Bot> echo: hello" in lines and "Bot> echo: typing" in lines
    assert not any(line.startswith("terminal") for line in lines)  # own echoes are not printed
    if not transport:
        assert "(Bot is typing…)" in lines  # not a terminal: the indicator is a plain line


def test_each_person_is_a_user_of_their_own_kept_between_runs(domain: str, tmp_path: Path) -> None:
    def run_as(home: Path) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "localdev.chat_cli", "--directline", domain, "--secret", SECRET, "--linger", "1"],
            input="hello\n", capture_output=True, text=True, timeout=30, cwd=PROJECT_ROOT,
            env={**os.environ, "XDG_CONFIG_HOME": str(home)},
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        [welcome] = [line for line in result.stdout.splitlines() if line.startswith("Bot> welcome ")]
        return welcome.removeprefix("Bot> welcome ")

    ada, ada_again, bob = run_as(tmp_path / "ada"), run_as(tmp_path / "ada"), run_as(tmp_path / "bob")
    assert ada.startswith("dl_") and ada == ada_again  # kept between runs
    assert bob != ada  # another person, another user


def test_events_are_shown_in_words() -> None:
    from localdev.chat_cli import describe_event

    initiate = {"type": "event", "name": "handoff.initiate", "value": {"reason": "the user asked for a person"}}
    assert describe_event(initiate) == "asked for a person to take over: the user asked for a person"
    signed = {"name": "handoff.status", "value": {"payload": '{"state": "accepted"}', "signature": "ab"}}
    assert describe_event(signed) == "handoff accepted"
    assert describe_event({"name": "handoff.status", "value": {"state": "failed"}}) == "handoff failed"
    assert describe_event({"name": "something.else", "value": {"x": 1}}) == "event something.else"
