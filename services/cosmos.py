"""The Cosmos DB account: one client per process, database and containers created lazily, once."""

from __future__ import annotations

import asyncio
from typing import Any

from azure.cosmos import PartitionKey
from azure.cosmos.aio import ContainerProxy, CosmosClient

from services.settings import Settings

# Only the fields the sweeper filters and sorts on are indexed: state bodies are
# never queried, and every indexed path costs RUs on each write.
CONVERSATION_INDEXING_POLICY: dict[str, Any] = {
    "indexingMode": "consistent",
    "includedPaths": [{"path": "/sweepAt/?"}],
    "excludedPaths": [{"path": "/*"}],
}
USER_INDEXING_POLICY: dict[str, Any] = {
    "indexingMode": "consistent",
    "includedPaths": [],
    "excludedPaths": [{"path": "/*"}],
}


class CosmosAccount:
    """Creates the client, database and both containers on first use (not at import)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._client: CosmosClient | None = None
        self._containers: dict[str, ContainerProxy] = {}
        self._lock = asyncio.Lock()

    def _credential(self) -> Any:
        if self._settings.cosmos_auth_key:
            return self._settings.cosmos_auth_key
        # No key: the Function App's managed identity (needs a Cosmos DB data-plane role).
        from azure.identity.aio import DefaultAzureCredential

        return DefaultAzureCredential()

    async def _ensure(self) -> None:
        async with self._lock:
            if self._containers:
                return
            settings = self._settings
            client = CosmosClient(settings.cosmos_endpoint, credential=self._credential())
            database = await client.create_database_if_not_exists(id=settings.cosmos_database_id)
            conversations = await database.create_container_if_not_exists(
                id=settings.cosmos_conversation_container_id,
                partition_key=PartitionKey(path="/id"),
                default_ttl=settings.cosmos_time_to_live,
                indexing_policy=CONVERSATION_INDEXING_POLICY,
            )
            users = await database.create_container_if_not_exists(
                id=settings.cosmos_user_container_id,
                partition_key=PartitionKey(path="/id"),
                indexing_policy=USER_INDEXING_POLICY,
            )
            self._client = client
            self._containers = {"conversations": conversations, "users": users}

    async def conversation_container(self) -> ContainerProxy:
        if not self._containers:
            await self._ensure()
        return self._containers["conversations"]

    async def user_container(self) -> ContainerProxy:
        if not self._containers:
            await self._ensure()
        return self._containers["users"]

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
            self._containers = {}
