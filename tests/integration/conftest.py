"""An app composed against the session's emulators, with a clock the test moves by hand."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bootstrap import Composition
from localdev.emulators import Azurite, CosmosStandIn
from tests.support.app import composed_app
from tests.support.clock import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def app(azurite: Azurite, cosmos: CosmosStandIn, clock: FakeClock) -> AsyncIterator[Composition]:
    async with composed_app(azurite, cosmos, clock) as composed:
        yield composed
