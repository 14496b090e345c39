"""Sweeper cost: one sweep over N stored conversations with a share of them expired.

Conversation documents are seeded straight into the Cosmos DB stand-in in the shape the app
writes (services/state/cosmos_storage.py, bot_logic/expiry.py), through the stand-in's bulk-load
endpoint (seeding is not what is measured). `handlers.sweeper.handle_sweep` then runs in this
process with a no-op notifier; requests are counted at the stand-in.

The stand-in scans every document for a query (it has no index), so its wall time grows with
the container's size; Cosmos DB serves the sweeper's range query from the `sweepAt` index.
The request counts are the portable figure.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from bench.stack import CosmosStats, Emulators, bench_settings, reads_and_writes
from bootstrap import Composition
from handlers.sweeper import handle_sweep
from services.settings import load_settings

EXPIRE_AFTER = 1800
BULK_CHUNK = 5000

FULL_SCENARIOS = ((10_000, 0.01), (10_000, 0.10), (100_000, 0.01), (100_000, 0.10))
QUICK_SCENARIOS = ((1_000, 0.01), (1_000, 0.10))


def conversation_document(index: int, now: float, expired: bool, rng: random.Random) -> dict[str, Any]:
    """A stored conversation as the app writes it: escaped id, real key, jsonpickled state, index fields."""
    conversation_id = f"bench{index:07d}"
    key = f"directline/conversations/{conversation_id}"
    idle = EXPIRE_AFTER + rng.uniform(1, 3600) if expired else rng.uniform(0, EXPIRE_AFTER - 60)
    last_access = now - idle
    reference = {
        "activityId": f"{conversation_id}|0000005",
        "user": {"id": f"user-{index}", "name": "User", "role": "user"},
        "bot": {"id": "bot", "name": "Bot", "role": "bot"},
        "conversation": {"id": conversation_id},
        "channelId": "directline",
        "locale": "en-US",
        "serviceUrl": "http://127.0.0.1:7072/",
    }
    record = {
        "lastAccessAt": last_access,
        "reference": reference,
        "recentActivityIds": [f"{conversation_id}|{n:07d}" for n in range(1, 6)],
        "pendingOperation": None,
        "expiredAt": None,
    }
    dialog_state = {
        "py/object": "botbuilder.dialogs.dialog_state.DialogState",
        "_dialog_stack": [
            {
                "py/object": "botbuilder.dialogs.dialog_instance.DialogInstance",
                "id": "MainDialog",
                "state": {"dialogs": {"py/object": "botbuilder.dialogs.dialog_state.DialogState", "_dialog_stack": [
                    {"py/object": "botbuilder.dialogs.dialog_instance.DialogInstance", "id": "main",
                     "state": {"options": None, "values": {"instanceId": f"{index:032x}"}, "stepIndex": 3}},
                    {"py/object": "botbuilder.dialogs.dialog_instance.DialogInstance", "id": "operation_prompt",
                     "state": {"options": {"py/object": "botbuilder.dialogs.prompts.prompt_options.PromptOptions"},
                               "state": {"attemptCount": 0}}},
                ]}},
            }
        ],
    }  # fmt: skip
    return {
        "id": key.replace("/", "*2f"),
        "realId": key,
        "document": {"ConversationRecord": record, "DialogState": dialog_state},
        "sweepAt": last_access + EXPIRE_AFTER,
    }


@dataclass
class Recorder:
    """The notifier: records, sends nothing."""

    calls: int = 0

    async def __call__(self, activity: dict[str, Any]) -> None:
        self.calls += 1


async def scenario(stack: Emulators, stats: CosmosStats, stored: int, share: float) -> dict[str, Any]:
    settings = load_settings(bench_settings(stack, "http://127.0.0.1:9/", ExpireAfterSeconds=str(EXPIRE_AFTER)))
    app = Composition(settings)
    account = app.cosmos
    try:
        await account.conversation_container()  # creates the database and containers as the app does
        rng = random.Random(stored * 1000 + int(share * 1000))
        now = time.time()
        expired = round(stored * share)
        flags = [True] * expired + [False] * (stored - expired)
        rng.shuffle(flags)
        seeding = time.perf_counter()
        for start in range(0, stored, BULK_CHUNK):
            docs = [conversation_document(i, now, flags[i], rng) for i in range(start, min(stored, start + BULK_CHUNK))]
            await stats.bulk_upsert(settings.cosmos_database_id, settings.cosmos_conversation_container_id, docs)
        seeded_s = time.perf_counter() - seeding

        recorder = Recorder()
        deps = app.sweeper
        deps.send_reply = recorder
        deps.max_batches = math.ceil(expired / deps.batch_size) + 1  # all of them in one sweep (see notes)
        await stats.reset()
        started = time.perf_counter()
        report = await handle_sweep(deps)
        wall = time.perf_counter() - started
        counted = await stats.read()

        await stats.reset()
        started = time.perf_counter()
        again = await handle_sweep(deps)  # nothing left to expire: the floor of a run
        idle_wall = time.perf_counter() - started
        idle_counted = await stats.read()
    finally:
        try:
            if account._client is not None:  # drop the database: keep the stand-in's memory small
                await account._client.delete_database(settings.cosmos_database_id)
        finally:
            await app.close()
    reads, writes = reads_and_writes(counted["kinds"])
    return {
        "stored": stored,
        "expired_share": share,
        "expired_seeded": expired,
        "expired_swept": report.expired,
        "notified": recorder.calls,
        "seed_s": round(seeded_s, 2),
        "sweep_wall_s": round(wall, 3),
        "requests": counted["total"],
        "queries": counted["kinds"]["query"],
        "reads": reads,
        "writes": writes,
        "other": counted["kinds"]["other"],
        "requests_per_expired": round(counted["total"] / max(1, report.expired), 3),
        "ms_per_expired": round(wall * 1000 / max(1, report.expired), 2),
        "empty_sweep_requests": idle_counted["total"],
        "empty_sweep_wall_s": round(idle_wall, 3),
        "empty_sweep_expired": again.expired,
    }


async def run(stack: Emulators, quick: bool) -> dict[str, Any]:
    results = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as session:
        stats = CosmosStats(stack.cosmos.endpoint, session)
        for stored, share in QUICK_SCENARIOS if quick else FULL_SCENARIOS:
            results.append(await scenario(stack, stats, stored, share))
    return {
        "scenarios": results,
        "notes": (
            "One handle_sweep call with max_batches raised to cover every expired conversation (as shipped a run "
            "stops after 20 batches of 100 = 2,000 conversations; the next run continues). Requests: "
            "1 query per batch of 100 + 1 conditional replace per expired conversation, whatever the number "
            "stored. The stand-in scans every document per query, so its wall time also grows with the "
            "number stored; Cosmos DB serves the query from the sweepAt index."
        ),
    }
