"""How throughput splits over instances: the same plain-turn load on one local Functions host, then on
two behind the local round-robin balancer (what `make run INSTANCES=1` and `INSTANCES=2` start).

Both runs share this machine's cores, so two instances cannot double throughput here; what the run
shows is whether the app has a per-instance bottleneck (a lock, a lease, a shared map) and how the
turns and CPU divide between instances. It predicts nothing about Azure's per-instance speed.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from bench.client import ChannelClient, Conversation
from bench.cpu import CpuMeter, ms_per_turn, this_process, trees
from bench.stack import Emulators, bot_stack
from bench.turns import PLAIN_TEXT, gather_bounded, plain_level

FULL_LEVEL, FULL_TURNS, FULL_TIME_BOUND = 32, 800, 20.0
QUICK_LEVEL, QUICK_TURNS, QUICK_TIME_BOUND = 8, 16, 5.0


async def _one(stack: Emulators, instances: int, level: int, turns: int, time_bound: float) -> dict[str, Any]:
    with bot_stack(stack, f"instances-{instances}", instances=instances) as bot:
        readers = {f"instance {i + 1}": trees(host.pid) for i, host in enumerate(bot.hosts)}
        if bot.balancer is not None:
            readers["balancer"] = trees(bot.balancer.popen.pid)
        readers["load driver"] = this_process
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=128)) as session:
            client = ChannelClient(session, bot.messages_url, bot.directline.url)
            conversations = await gather_bounded([lambda: Conversation.start(client)] * level, 8)
            for conversation in conversations:  # warm every instance (the balancer alternates)
                await conversation.expect(text=PLAIN_TEXT)
            meter = CpuMeter(readers)
            meter.start()
            figures = await plain_level(conversations, turns, time_bound)
            cpu_s = meter.stop()
    app_s = sum(seconds for name, seconds in cpu_s.items() if name.startswith("instance"))
    figures["cpu_ms_per_turn"] = ms_per_turn(app_s, figures["count"])
    figures["cpu_share_by_instance"] = {
        name: round(seconds / app_s, 2) if app_s else None
        for name, seconds in cpu_s.items()
        if name.startswith("instance")
    }
    others = {name: seconds for name, seconds in cpu_s.items() if not name.startswith("instance")}
    figures["cpu_ms_per_turn_others"] = {name: ms_per_turn(s, figures["count"]) for name, s in others.items()}
    return figures


async def run(stack: Emulators, quick: bool) -> dict[str, Any]:
    level, turns, time_bound = (QUICK_LEVEL, QUICK_TURNS, QUICK_TIME_BOUND) if quick else (
        FULL_LEVEL, FULL_TURNS, FULL_TIME_BOUND)  # fmt: skip
    one = await _one(stack, 1, level, turns, time_bound)
    two = await _one(stack, 2, level, turns, time_bound)
    return {
        "conversations": level,
        "runs": {"1": one, "2": two},
        "throughput_ratio_2_over_1": round(two["turns_per_s"] / one["turns_per_s"], 2) if one["turns_per_s"] else None,
        "notes": (
            f"Plain turns ({PLAIN_TEXT!r} at the menu), {level} conversations at once, one turn at a time each, on "
            "one local Functions host and then on two behind the local round-robin balancer (make run INSTANCES=1 "
            "and 2), with the same emulators and load. Both instances run on this machine's cores: the ratio shows "
            "whether turns spread without a per-instance bottleneck, not how Azure scales. CPU ms per turn = "
            "the instances' process trees together; the share is each instance's part of that."
        ),
    }
