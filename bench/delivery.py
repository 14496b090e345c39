"""Result delivery: from the moment an operation's run returns to the moment the user's client
receives "Thanks for waiting", with host.json as shipped.

The app runs in the local Functions host from bench/instrumented_app.py (the app as shipped plus
timestamps; see there). The user's client is an aiohttp WebSocket client of the local Direct Line
(the Direct Line 3.0 protocol, as Web Chat uses it) that stamps each activity's arrival. Same
machine, same clock (time.time()).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench.client import MENU_PREFIX, TINY_OPERATION
from bench.stack import CosmosStats, Emulators, bot_stack, instrumented_app_dir, reads_and_writes
from bench.stats import summary_ms
from localdev.stack import LocalStack

THANKS = "Thanks for waiting."
STARTING = "Starting the prime report"
PREFIX = "BENCHMARK "


@dataclass
class Arrival:
    at: float
    text: str


@dataclass
class DirectLineUser:
    """A Direct Line 3.0 client: start a conversation with the secret, read its WebSocket stream."""

    session: aiohttp.ClientSession
    domain: str
    secret: str
    user_id: str = "bench-user"
    conversation_id: str = ""
    token: str = ""
    arrivals: list[Arrival] = field(default_factory=list)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        headers = {"Authorization": f"Bearer {self.secret}"}
        body = {"user": {"id": self.user_id, "name": "Bench"}}
        async with self.session.post(f"{self.domain}/conversations", json=body, headers=headers) as response:
            response.raise_for_status()
            answer = await response.json()
        self.conversation_id, self.token = answer["conversationId"], answer["token"]
        socket = await self.session.ws_connect(answer["streamUrl"])
        self._reader = asyncio.get_running_loop().create_task(self._read(socket))

    async def _read(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        async with socket:
            async for message in socket:
                arrived = time.time()
                if message.type != aiohttp.WSMsgType.TEXT or not message.data.strip():
                    continue
                for activity in json.loads(message.data).get("activities", []):
                    if activity.get("type") == "message" and (activity.get("from") or {}).get("role") == "bot":
                        async with self._changed:
                            self.arrivals.append(Arrival(arrived, activity.get("text") or ""))
                            self._changed.notify_all()

    async def say(self, text: str) -> None:
        """Post a message; the Direct Line answers once the bot's turn is done."""
        activity = {"type": "message", "text": text, "from": {"id": self.user_id}, "locale": "en-US"}
        url = f"{self.domain}/conversations/{self.conversation_id}/activities"
        headers = {"Authorization": f"Bearer {self.token}"}
        async with self.session.post(url, json=activity, headers=headers) as response:
            response.raise_for_status()

    async def wait_for(self, predicate: Callable[[str], bool], since: int, timeout: float) -> Arrival:
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: any(predicate(a.text) for a in self.arrivals[since:]))
            return next(a for a in self.arrivals[since:] if predicate(a.text))

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader


def parse_marks(output: str) -> tuple[dict[str, dict[str, float]], dict[str, str], list[tuple[str, str, float]]]:
    """(marks by operation id, the worker's Direct Line conversation per operation, conversationUpdate marks)."""
    by_operation: dict[str, dict[str, float]] = {}
    worker_conversation: dict[str, str] = {}
    updates: list[tuple[str, str, float]] = []
    for line in output.splitlines():
        if not line.startswith(PREFIX):
            continue
        parts = line.split()
        event, key, moment = parts[1], parts[2], float(parts[3])
        if event.startswith("update_"):
            updates.append((event, key, moment))
            continue
        marks = by_operation.setdefault(key, {})
        if event == "dl_started":
            marks[event] = moment  # the last one: the result's post (progress posts may come before it)
        else:
            marks.setdefault(event, moment)
        if event == "dl_started" and len(parts) > 4:
            worker_conversation[key] = parts[4]
    return by_operation, worker_conversation, updates


async def _wait_output(bot: LocalStack, predicate: Callable[[str], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate(bot.host.output):
        if time.monotonic() > deadline:
            raise TimeoutError("the worker did not finish in time")
        await asyncio.sleep(0.05)


async def measure(bot: LocalStack, stats: CosmosStats, samples: int, max_pause: float) -> dict[str, Any]:
    rng = random.Random(6)
    async with aiohttp.ClientSession() as session:
        user = DirectLineUser(session, bot.directline.domain, bot.secret)
        await user.start()
        try:
            await user.wait_for(lambda t: t.startswith("What's your name?"), 0, 30)
            mark = len(user.arrivals)
            await user.say("Ada")
            await user.wait_for(lambda t: t.startswith(MENU_PREFIX), mark, 30)
            rows: list[dict[str, Any]] = []
            for index in range(samples):
                # A pause like a person's: the queue poller backs off while the queue is empty.
                await asyncio.sleep(rng.uniform(0, max_pause))
                mark = len(user.arrivals)
                sent = time.time()
                await user.say(TINY_OPERATION)
                await stats.reset()  # the choice turn has committed: count what delivery costs
                ack = await user.wait_for(lambda t: t.startswith(STARTING), mark, 15)
                thanks = await user.wait_for(lambda t: t.startswith(THANKS), mark, 30)
                await user.wait_for(lambda t: t.startswith(MENU_PREFIX), mark + 1, 15)
                await _wait_output(bot, lambda text, n=index + 1: text.count(f"{PREFIX}worker_done") >= n, 30)
                counted = await stats.read()
                rows.append({"sent": sent, "ack": ack.at, "thanks": thanks.at, "storage": counted})
        finally:
            await user.close()
    return _analyse(bot.host.output, rows)


PARTS = {
    "total": "total: run returned -> client has 'Thanks for waiting'",
    "worker": "1. worker: run returned -> its Direct Line conversation ready (opened once per instance)",
    "updates": "2a. Direct Line -> bot: conversationUpdate turns of the worker's conversation",
    "hop": "2b. Direct Line -> bot: rest of the hop (post the event, forward it)",
    "turn": "3. resumed turn: event at the bot -> reply handed to the Connector client",
    "reply": "4. reply: Connector API -> Direct Line -> client's WebSocket",
    "e2e": "end to end: choice sent -> 'Thanks for waiting' at the client",
    "ack": "e2e a. choice sent -> acknowledgement at the client",
    "queue": "e2e b. queue: message sent -> worker picked it up",
    "run": "e2e c. worker picked it up -> run returned",
}


def _update_time(updates: list[tuple[str, str, float]], conversation: str) -> float:
    """Seconds the bot spent in conversationUpdate turns of one conversation."""
    starts = sorted(t for event, key, t in updates if key == conversation and event == "update_start")
    ends = sorted(t for event, key, t in updates if key == conversation and event == "update_end")
    return sum(end - start for start, end in zip(starts, ends, strict=False))


def _analyse(output: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    by_operation, worker_conversation, updates = parse_marks(output)
    operation_ids = sorted(
        (k for k, m in by_operation.items() if "enqueued" in m), key=lambda k: by_operation[k]["enqueued"]
    )
    parts: dict[str, list[float]] = {key: [] for key in PARTS}
    storage_reads, storage_writes = [], []
    for row, operation_id in zip(rows, operation_ids, strict=False):
        m = by_operation[operation_id]
        updates_time = _update_time(updates, worker_conversation.get(operation_id, ""))
        parts["total"].append(row["thanks"] - m["run_end"])
        parts["worker"].append(m["dl_started"] - m["run_end"])
        parts["updates"].append(updates_time)
        parts["hop"].append(m["event_at_bot"] - m["dl_started"] - updates_time)
        parts["turn"].append(m["reply_send_start"] - m["event_at_bot"])
        parts["reply"].append(row["thanks"] - m["reply_send_start"])
        parts["e2e"].append(row["thanks"] - row["sent"])
        parts["ack"].append(row["ack"] - row["sent"])
        parts["queue"].append(m["picked"] - m["enqueued"])
        parts["run"].append(m["run_end"] - m["picked"])
        reads, writes = reads_and_writes(row["storage"]["kinds"])
        storage_reads.append(reads)
        storage_writes.append(writes)
    n = max(1, len(storage_reads))
    return {
        "samples": len(rows),
        "parts_ms": {PARTS[key]: summary_ms(values) for key, values in parts.items()},
        "storage_per_delivery": {
            "reads": round(sum(storage_reads) / n, 2),
            "writes": round(sum(storage_writes) / n, 2),
            "example": rows[0]["storage"] if rows else {},
        },
    }


async def run(stack: Emulators, quick: bool) -> dict[str, Any]:
    samples, max_pause = (2, 0.2) if quick else (15, 3.0)
    app_dir = instrumented_app_dir()
    with bot_stack(stack, "delivery", app_dir=app_dir, PYTHON_SCRIPT_FILE_NAME="bench_instrumented_app.py") as bot:
        async with aiohttp.ClientSession() as session:
            result = await measure(bot, CosmosStats(stack.cosmos.endpoint, session), samples, max_pause)
    result["notes"] = (
        f"{samples} sequential operations ({TINY_OPERATION!r}) in one Direct Line conversation, a random pause of "
        f"0-{max_pause:g} s before each choice; host.json as shipped (queues.maxPollingInterval 2 s). Parts 1-4 add up "
        "to the total. Storage per delivery: stand-in requests from the choice turn's answer to the worker's end."
    )
    return result
