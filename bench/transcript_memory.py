"""Peak memory of answering GET /api/transcripts/{id} for a long conversation, against Azurite.

    .venv/bin/python -m bench.transcript_memory [--activities 10000] [--text-size 200]

Seeds one conversation of N activities in Azurite's table service, then, in a fresh store, calls
the transcript handler as the function does (the handler, then the answer serialised to bytes) with
tracemalloc on, and reports the peak of Python allocations and the answer's size (that one page is
one Table storage request is checked by tests/integration/test_transcript_handlers.py). With a
paging handler it reports the first page (what one request costs) and a walk through every page
(the largest single request of the walk). The same script runs against an older handler without
paging (it detects the handler's signature), which is how the "before" figure is measured: run it
from a copy of that version's tree.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import time
import tracemalloc
import uuid
from datetime import UTC, datetime
from typing import Any

from handlers import transcripts as transcript_handlers
from localdev.emulators import start_azurite
from services.transcripts.recorder import TranscriptEntry
from services.transcripts.store import TableTranscriptStore

CONVERSATION = "bench-long-conversation"


def activity(number: int, text_size: int) -> dict[str, Any]:
    """A plausible message activity (a reply of `text_size` characters), about 500 bytes of JSON plus the text."""
    bot = number % 2 == 1
    user = {"id": "dl_bench-user", "name": "Bench", "role": "user"}
    bot_account = {"id": "bench-bot", "name": "Bot", "role": "bot"}
    return {
        "type": "message",
        "id": f"act-{number:06d}",
        "text": f"{number:06d} " + "lorem ipsum " * (text_size // 12),
        "channelId": "directline",
        "serviceUrl": "https://directline.botframework.com/",
        "conversation": {"id": CONVERSATION},
        "from": bot_account if bot else user,
        "recipient": user if bot else bot_account,
        "locale": "en-US",
    }


async def seed(store: TableTranscriptStore, count: int, text_size: int) -> None:
    base_ms = int(datetime.now(UTC).timestamp() * 1000) - count - 60_000
    batch: list[TranscriptEntry] = []
    for number in range(count):
        batch.append(TranscriptEntry(activity(number, text_size), base_ms + number))
        if len(batch) == 1000:
            await store.write(CONVERSATION, batch)
            batch = []
    if batch:
        await store.write(CONVERSATION, batch)


def paging_handler() -> bool:
    return "query" in inspect.signature(transcript_handlers.handle_get_transcript).parameters


async def answer(store: TableTranscriptStore, query: dict[str, str] | None) -> tuple[int, int, dict[str, str]]:
    """(status, bytes of the answer, headers): the handler, then its body serialised as the function does."""
    deps = transcript_handlers.TranscriptReadDependencies(store=store, enabled=True, retention_days=30)
    if paging_handler():
        response = await transcript_handlers.handle_get_transcript(CONVERSATION, deps, query or {})
    else:
        response = await transcript_handlers.handle_get_transcript(CONVERSATION, deps)
    body = response.body_bytes()
    return response.status, len(body), response.headers


async def measured(store: TableTranscriptStore, query: dict[str, str] | None) -> dict[str, Any]:
    tracemalloc.start()
    tracemalloc.reset_peak()
    started = time.perf_counter()
    status, size, headers = await answer(store, query)
    seconds = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "status": status,
        "answer_bytes": size,
        "peak_mib": round(peak / 2**20, 2),
        "seconds_traced": round(seconds, 2),
        "next_token": headers.get("X-Continuation-Token"),
    }


async def run(connection_string: str, count: int, text_size: int) -> dict[str, Any]:
    table = "benchtranscripts" + uuid.uuid4().hex[:8]
    writer = TableTranscriptStore(connection_string, table)
    await seed(writer, count, text_size)
    await writer.close()
    store = TableTranscriptStore(connection_string, table)
    try:
        await store.read_activities("warm-up", limit=1)  # client, table and imports outside the measurement
        results: dict[str, Any] = {"activities": count, "paging_handler": paging_handler()}
        results["first_request"] = await measured(store, None)
        if paging_handler():
            largest: dict[str, Any] = {}
            pages = 0
            token = results["first_request"]["next_token"]
            while token:
                page = await measured(store, {"continuationToken": token})
                pages += 1
                if page["peak_mib"] > largest.get("peak_mib", 0):
                    largest = page
                token = page["next_token"]
            results["walk"] = {"further_pages": pages, "largest_page": largest}
        return results
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.transcript_memory", description=__doc__)
    parser.add_argument("--activities", type=int, default=10_000)
    parser.add_argument("--text-size", type=int, default=200, help="characters of text per activity")
    parser.add_argument("--connection-string", help="an Azurite with its table service (default: start one)")
    args = parser.parse_args()
    if args.connection_string:
        results = asyncio.run(run(args.connection_string, args.activities, args.text_size))
    else:
        azurite = start_azurite()
        try:
            results = asyncio.run(run(azurite.connection_string, args.activities, args.text_size))
        finally:
            azurite.stop()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
