"""bench/transcript_memory.py runs (tiny sizes), so the figures in the README can be measured again."""

from __future__ import annotations

import pytest

from bench.transcript_memory import run
from localdev.emulators import Azurite

pytestmark = pytest.mark.emulators


async def test_the_transcript_memory_bench_walks_every_page(azurite: Azurite) -> None:
    results = await run(azurite.connection_string, 250, 20)
    assert results["paging_handler"] and results["first_request"]["status"] == 200
    assert results["first_request"]["next_token"] and results["walk"]["further_pages"] == 2
    assert results["first_request"]["peak_mib"] > 0
