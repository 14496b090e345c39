"""What the in-process A/B scripts share: compositions of the app in one process, each with its own
conversations, plain turns in blocks, and variants taking turns in rounds (the order rotating, so machine
noise hits all alike). CPU ms per turn is the process time of a block (the stub Connector, in the same
process, counts alike for every variant)."""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence

from bench.profile_turn import Connector, _request
from bench.stack import emulators
from bootstrap import Composition
from handlers.messages import handle_messages
from localdev.emulators import Emulators

CONVERSATIONS = 40

Built = tuple[Composition, list[str]]
Build = Callable[[str, Emulators, str], Awaitable[Built]]  # (variant, emulators, the stub Connector's URL)


async def introduced(app: Composition, connector_url: str, count: int = CONVERSATIONS) -> list[str]:
    """`count` new conversations, each brought to the menu with one retry prompt shown (so every client is built)."""
    conversations = [f"ab-{uuid.uuid4().hex[:12]}" for _ in range(count)]
    for conversation in conversations:
        update = {"type": "conversationUpdate", "membersAdded": [{"id": "bot"}, {"id": f"user-of-{conversation}"}]}
        for fields in (update, {"text": "Ada"}, {"text": "what?"}):
            response = await handle_messages(_request(conversation, connector_url, **fields), app.messages)
            if response.status != 200:
                raise RuntimeError(f"set-up turn answered {response.status}")
    assert app.transcripts is not None
    await app.transcripts.flush(30)
    return conversations


async def rotating_rounds(
    built: dict[str, Built], connector_url: str, rounds: int, before: Callable[[str], None] = lambda _v: None
) -> dict[str, list[float]]:
    """Per variant, CPU ms per plain turn of each round's block: one turn in each of its conversations, then
    its transcript recorder flushed (so each turn's rows are written on their own, as at low load)."""
    variants = list(built)
    cpu_ms: dict[str, list[float]] = {variant: [] for variant in variants}
    for round_number in range(rounds):
        shift = round_number % len(variants)
        for variant in variants[shift:] + variants[:shift]:
            app, conversations = built[variant]
            before(variant)
            started = time.process_time()
            for conversation in conversations:
                await handle_messages(_request(conversation, connector_url, text="what?"), app.messages)
            assert app.transcripts is not None
            await app.transcripts.flush(30)
            cpu_ms[variant].append((time.process_time() - started) * 1000 / len(conversations))
    return cpu_ms


async def measure(
    variants: Sequence[str], build: Build, rounds: int, before: Callable[[str], None] = lambda _v: None
) -> dict[str, list[float]]:
    """Each variant's composition built against the emulators and a stub Connector, then `rotating_rounds`."""
    connector = Connector()
    await connector.start()
    built: dict[str, Built] = {}
    try:
        with emulators() as stack:
            try:
                for variant in variants:
                    built[variant] = await build(variant, stack, connector.url)
                return await rotating_rounds(built, connector.url, rounds, before)
            finally:
                for app, _ in built.values():
                    await app.close()
    finally:
        await connector.stop()


def print_medians(cpu_ms: dict[str, list[float]], ratios: Sequence[tuple[str, str]]) -> None:
    """Each variant's median and rounds, then the ratios asked for (numerator, denominator)."""
    medians = {variant: statistics.median(values) for variant, values in cpu_ms.items()}
    for variant, values in cpu_ms.items():
        each = ", ".join(f"{value:.1f}" for value in values)
        print(f"{variant}: {medians[variant]:.2f} CPU ms per plain turn (rounds: {each})")
    print("  ".join(f"{top[:1]}/{bottom[:1]} {medians[top] / medians[bottom]:.3f}" for top, bottom in ratios))
