"""Instances that start at the same time on a fresh account: the SDK's create-if-not-exists reads,
then creates, so one of them can get 409 for what the other just created. Neither may fail a turn."""

from __future__ import annotations

import asyncio

import pytest

from localdev.app_settings import app_settings
from localdev.emulators import Azurite, CosmosStandIn
from services.settings import load_settings
from services.state.cosmos import CosmosAccount

pytestmark = pytest.mark.emulators


async def test_instances_starting_together_on_a_fresh_database_both_get_their_containers(
    azurite: Azurite, cosmos: CosmosStandIn
) -> None:
    for _ in range(5):  # each round a fresh database: the race is on the first use
        settings = load_settings(app_settings(azurite, cosmos))
        accounts = [CosmosAccount(settings) for _ in range(3)]
        try:
            for get in ("conversation_container", "reference_container"):
                containers = await asyncio.gather(*(getattr(account, get)() for account in accounts))
                assert len({container.id for container in containers}) == 1
        finally:
            await asyncio.gather(*(account.close() for account in accounts))
