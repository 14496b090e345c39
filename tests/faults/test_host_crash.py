"""The Functions host SIGKILLed while an operation runs: the queue message reappears once the host's
lease on it ends (shortened to a few seconds), a new host runs it again, and the user hears the result
once. The real host process and the local Direct Line, against the session's emulators.

The launcher (localdev/stack.py) cannot pass the host its message lease yet, so its parts are started
here the way it starts them: the local Direct Line, then the host (spawn_host), both children of ours."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import requests

from localdev.app_settings import app_settings
from localdev.directline import start_directline_process
from localdev.emulators import Azurite, CosmosStandIn
from localdev.functions_host import HostProcess, spawn_host
from localdev.processes import PROJECT_ROOT, free_ports, wait_until
from tests.faults.conftest import Survived
from tests.faults.harness import brief
from tests.support.local_bot import LOG_DIR

pytestmark = [pytest.mark.faults, pytest.mark.emulators]

LEASE_SECONDS = 4  # how long a received message stays invisible (the host's default is 10 min)
# A few seconds of real work on these machines: long enough to be killed in the middle.
MEDIUM_PRIMES = "prime report end=150000000"
RESULT_PREFIX = "Thanks for waiting. Prime report for 1 to 150,000,000"


class DirectLineUser:
    """A person in one Direct Line conversation (REST, polling), with the secret."""

    def __init__(self, domain: str, secret: str) -> None:
        self.domain = domain
        self.user = f"user-{uuid.uuid4().hex[:8]}"
        answer = requests.post(
            f"{domain}/conversations",
            json={"user": {"id": self.user}},
            headers={"Authorization": f"Bearer {secret}"},
            timeout=10,
        )
        answer.raise_for_status()
        self.conversation, self.token = answer.json()["conversationId"], answer.json()["token"]
        self.watermark = ""
        self.texts: list[str] = []

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def say(self, text: str) -> None:
        activity = {"type": "message", "from": {"id": self.user}, "text": text}
        url = f"{self.domain}/conversations/{self.conversation}/activities"
        requests.post(url, json=activity, headers=self._headers(), timeout=30).raise_for_status()

    def poll(self) -> list[str]:
        url = f"{self.domain}/conversations/{self.conversation}/activities?watermark={self.watermark}"
        answer: dict[str, Any] = requests.get(url, headers=self._headers(), timeout=10).json()
        self.watermark = answer.get("watermark") or self.watermark
        self.texts += [
            a.get("text") or ""
            for a in answer["activities"]
            if a.get("type") == "message" and a.get("from", {}).get("id") != self.user
        ]
        return self.texts

    def wait_for(self, check: Callable[[list[str]], bool], timeout: float) -> None:
        # Polled as a Direct Line client polls, every 0.2 s.
        wait_until(lambda: check(self.poll()), timeout, "what the user should see", interval=0.2)

    def seen(self, prefix: str) -> int:
        return sum(1 for text in self.texts if text.startswith(prefix))


@contextmanager
def host(port: int, settings: dict[str, str], name: str) -> Iterator[HostProcess]:
    process = spawn_host(
        PROJECT_ROOT,
        port=port,
        settings=settings,
        extra_args=["--queue-message-lease", str(LEASE_SECONDS)],
        ready_timeout=90.0,
        log_path=LOG_DIR / f"{name}.log",
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.stop()


def kill(process: HostProcess) -> None:
    """SIGKILL the host's whole process group (it leads one): nothing of it gets to clean up."""
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)


def test_host_killed_while_an_operation_runs(azurite: Azurite, cosmos: CosmosStandIn, survived: Survived) -> None:
    functions_port, directline_port = free_ports(2)
    name = f"faults-{uuid.uuid4().hex[:8]}"
    domain = f"http://127.0.0.1:{directline_port}/v3/directline"
    settings = app_settings(azurite, cosmos, DirectLineEndpoint=domain)
    directline = start_directline_process(
        f"http://127.0.0.1:{functions_port}/api/messages",
        settings["DirectLineSecret"],
        port=directline_port,
        log_dir=LOG_DIR,
        name=f"{name}-directline",
    )
    try:
        with host(functions_port, settings, f"{name}-functions-1") as first:
            user = DirectLineUser(domain, settings["DirectLineSecret"])
            user.say("Ada")
            user.wait_for(lambda texts: any(t.startswith("Which long operation shall I run, Ada?") for t in texts), 30)
            since = len(user.texts)
            user.say(MEDIUM_PRIMES)
            first.wait_for_output("New queue message detected", timeout=30)  # the operation is running
            assert "(prime report) succeeded" not in first.output
            kill(first)
        with host(functions_port, settings, f"{name}-functions-2") as second:
            user.wait_for(lambda texts: any(t.startswith(RESULT_PREFIX) for t in texts), 90)
            # The result came from the second host's run; the queue has let the message go.
            second.wait_for_output("(prime report) succeeded", timeout=10)
            user.wait_for(lambda texts: texts[-1].startswith("Which long operation shall I run, Ada?"), 10)
            assert second.output.count("(prime report) succeeded") == 1
            assert "(prime report) succeeded" not in first.output
    finally:
        directline.stop()
    survived(
        f"host SIGKILLed while the operation runs; redelivered after a {LEASE_SECONDS} s lease",
        brief(user.texts[since:]),
        user.seen(RESULT_PREFIX),
    )
    assert user.seen(RESULT_PREFIX) == 1
    assert user.seen("Starting the prime report") == 1
