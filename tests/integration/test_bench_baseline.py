"""The benchmarks' plain-SDK baseline (bench/baseline) holds the app's conversation, so comparing the
two compares hosting, not dialogs; and bench/cpu.py reads CPU time of a process tree."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from azure.storage.queue import TextBase64DecodePolicy
from azure.storage.queue.aio import QueueClient

from bench.baseline.app import create_app, per_turn_clients_cpu_ms
from bench.cpu import CpuMeter, process_tree, tree_cpu_seconds, trees
from bench.turns import _ratio
from bot_logic.bot import WELCOME
from bot_logic.dialogs.main_dialog import NAME_PROMPT
from localdev.emulators import Azurite
from localdev.processes import wait_until
from tests.support.activities import activity, joined
from tests.support.connector import RecordingConnector

MENU = "Which long operation shall I run, Ada?"


@pytest.fixture
def queue_name() -> str:
    return f"baseline-test-{secrets.token_hex(4)}"


@pytest.fixture
async def baseline_url(azurite: Azurite, queue_name: str) -> AsyncIterator[str]:
    environ = {
        "AzureWebJobsStorage": azurite.connection_string,
        "OperationsQueueName": queue_name,
        "CosmosDbEndpoint": "http://127.0.0.1:9/",  # required by the app's settings; the baseline never calls it
        "DirectLineSecret": secrets.token_urlsafe(16),
        "OperationSigningKey": secrets.token_urlsafe(32),
        "HandoffSigningKey": secrets.token_urlsafe(32),
        "HandoffAfterMisunderstandings": "0",
    }
    runner = web.AppRunner(create_app(environ), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/api/messages"
    finally:
        await runner.cleanup()


async def queued(azurite: Azurite, queue_name: str) -> list[dict[str, Any]]:
    async with QueueClient.from_connection_string(
        azurite.connection_string, queue_name, message_decode_policy=TextBase64DecodePolicy()
    ) as queue:
        return [json.loads(message.content) for message in await queue.peek_messages(max_messages=32)]


@pytest.mark.emulators
async def test_baseline_holds_the_apps_conversation_and_queues_the_request(
    baseline_url: str, connector: RecordingConnector, azurite: Azurite, queue_name: str
) -> None:
    conversation = f"c-{uuid.uuid4()}"
    url = connector.service_url
    async with aiohttp.ClientSession() as session:

        async def say(body: dict[str, Any]) -> list[str]:
            before = len(connector.messages(conversation))
            async with session.post(baseline_url, json=body) as response:
                assert response.status == 201, await response.text()  # as the SDK's CloudAdapter answers
            return connector.messages(conversation)[before:]

        assert await say(joined(conversation, url)) == [WELCOME, NAME_PROMPT]
        nice, menu = await say(activity(conversation, url, text="Ada"))
        assert nice.startswith("Nice to meet you, Ada!") and menu.startswith(MENU)
        for _ in range(4):  # never handed off: HandoffAfterMisunderstandings=0, as in the benchmark
            [retry] = await say(activity(conversation, url, text="what?"))
            assert retry.startswith("Sorry, I didn't understand “what?”.")
        [started] = await say(activity(conversation, url, text="prime report end=1000"))
        assert started.startswith("Starting the prime report.")

    [request] = await queued(azurite, queue_name)
    assert request["operation"] == "prime report" and request["parameters"]["end"] == 1000
    assert request["conversation"]["conversation"]["id"] == conversation


async def test_the_sdk_clients_built_per_turn_cost_measurable_cpu() -> None:
    assert await per_turn_clients_cpu_ms("http://127.0.0.1:9/", repeats=3) > 0


BUSY_CHILD = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass"
# Runs the busy child to its end (and waits for it), says so, then idles until killed.
PARENT = (
    "import subprocess, sys, time\n"
    f"subprocess.run([sys.executable, '-c', {BUSY_CHILD!r}])\n"
    "print('done', flush=True)\n"
    "time.sleep(60)"
)


def test_cpu_of_a_process_tree_counts_its_children() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    try:
        meter = CpuMeter({"tree": trees(parent.pid)})
        meter.start()
        wait_until(
            lambda: len(process_tree(parent.pid)) == 2, timeout=10, message="the busy child, found by the tree walk"
        )
        assert parent.stdout is not None and parent.stdout.readline().strip() == "done"
        # The child has exited and been waited for: its time is in the parent's cutime + cstime.
        assert process_tree(parent.pid) == [parent.pid]
        assert meter.stop()["tree"] >= 0.25
        assert tree_cpu_seconds(parent.pid) >= 0.25
    finally:
        parent.kill()
        parent.wait()


def test_ratios_stay_finite() -> None:
    assert _ratio(10.0, 5.0) == 2.0
    assert _ratio(1.0, 0.0) is None and _ratio(None, 1.0) is None and _ratio(float("nan"), 1.0) is None
