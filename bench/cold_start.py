"""Cold start: importing the app, and a fresh host's first answered /api/messages.

Each figure is the median of fresh processes. Floors: a bare `import botbuilder.core` and
`import botbuilder.dialogs`. The first request also pays the lazy imports (the handler and what
bootstrap.Composition builds for it) and builds them (Cosmos client, containers looked up).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

import aiohttp

from bench.client import BOT, ChannelClient
from bench.stack import Emulators, bench_settings, bot_stack
from bench.stats import median
from localdev.processes import PROJECT_ROOT
from services.settings import load_settings
from services.state.cosmos import CosmosAccount

FIRST_REQUEST_MODULES = "handlers.messages, bot_logic.bot, services.turns.bot_adapter, services.state.cosmos_storage"
IMPORTS = {
    "function_app (the app's module, as the host imports it)": "function_app",
    "first request's lazy imports (handler, bot, adapter, storage)": FIRST_REQUEST_MODULES,
    "floor: botbuilder.core": "botbuilder.core",
    "floor: botbuilder.dialogs": "botbuilder.dialogs",
    "azure.cosmos.aio": "azure.cosmos.aio",
    "azure.functions": "azure.functions",
}
_TIMER = "import time, sys; t = time.perf_counter(); import {modules}; print(time.perf_counter() - t)"


def _import_seconds(modules: str, env: dict[str, str]) -> tuple[float, float]:
    """(import seconds inside the process, whole process wall seconds) for one fresh interpreter."""
    started = time.perf_counter()
    done = _python(["-c", _TIMER.format(modules=modules)], env)
    return float(done.stdout.strip().splitlines()[-1]), time.perf_counter() - started


def _python(arguments: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A fresh interpreter in the project root; raises if it fails."""
    return subprocess.run(
        [sys.executable, *arguments], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120, check=True
    )


def top_imports(modules: str, env: dict[str, str], count: int = 8) -> list[dict[str, Any]]:
    """`python -X importtime`: the distributions whose own modules take longest to import (self time, summed)."""
    done = _python(["-X", "importtime", "-c", f"import {modules}"], env)
    totals: dict[str, int] = {}
    for line in done.stderr.splitlines():
        fields = line.removeprefix("import time:").split("|")
        if not line.startswith("import time:") or len(fields) != 3 or not fields[0].strip().isdigit():
            continue
        parts = fields[2].strip().split(".")
        package = ".".join(parts[:2]) if parts[0] in ("azure", "botbuilder", "botframework") else parts[0]
        totals[package] = totals.get(package, 0) + int(fields[0])
    ranked = sorted(totals.items(), key=lambda item: -item[1])[:count]
    return [{"package": name, "self_ms": round(us / 1000, 1)} for name, us in ranked]


async def _first_answer(stack: Emulators, database: dict[str, str]) -> dict[str, float]:
    with bot_stack(stack, "cold-start", **database) as bot:
        host = bot.host
        async with aiohttp.ClientSession() as session:
            client = ChannelClient(session, bot.messages_url, bot.directline.url)
            user = "cold-start-user"
            conversation = await client.create_conversation(user)
            status, _ = await client.post(
                client.activity(
                    conversation, user, type="conversationUpdate", membersAdded=[{"id": BOT["id"]}, {"id": user}]
                )
            )
            answered = time.perf_counter()
            if status != 200:
                raise RuntimeError(f"the first request answered HTTP {status}")
            status, second = await client.post(client.activity(conversation, user, text="Ada"))
    return {
        "spawn_to_ready_s": host.ready_at - host.started_at,
        "ready_to_first_200_s": answered - host.ready_at,
        "spawn_to_first_200_s": answered - host.started_at,
        "second_turn_s": second,
    }


async def run(stack: Emulators, quick: bool) -> dict[str, Any]:
    repeats, host_repeats = (1, 1) if quick else (5, 3)
    settings = bench_settings(stack, "http://127.0.0.1:9/")  # no Direct Line needed to import
    env = {**os.environ, **settings}
    imports: dict[str, Any] = {}
    for label, modules in IMPORTS.items():
        samples = [_import_seconds(modules, env) for _ in range(repeats)]
        imports[label] = {
            "median_ms": round(median([s[0] for s in samples]) * 1000, 1),
            "process_wall_median_ms": round(median([s[1] for s in samples]) * 1000, 1),
            "repeats": repeats,
        }
    heaviest = {
        "function_app": top_imports("function_app", env),
        "first request": top_imports(FIRST_REQUEST_MODULES, env),
    }

    # The database and containers exist already, as in Azure (the template creates them).
    account = CosmosAccount(load_settings(settings))
    await account.conversation_container()
    await account.close()
    database = {"CosmosDbDatabaseId": settings["CosmosDbDatabaseId"]}
    runs = [await _first_answer(stack, database) for _ in range(host_repeats)]
    host = {key: round(median([r[key] for r in runs]) * 1000, 1) for key in runs[0]}
    return {
        "imports_ms": imports,
        "heaviest_imports": heaviest,
        "host_ms": {**{k.replace("_s", "_ms"): v for k, v in host.items()}, "repeats": host_repeats},
        "notes": (
            "Median of fresh processes. Import times are measured inside the process (perf_counter around the "
            "import); process wall adds the interpreter's own start. Host: spawn of `python -m "
            "localdev.functions_host` -> its 'listening' line -> the first /api/messages answered 200 "
            "(a conversationUpdate: greeting and name prompt sent to the local Direct Line)."
        ),
    }
