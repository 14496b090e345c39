"""The Cosmos DB account: one client per process, database and containers created lazily, once.

The state containers are created together on first use; the conversation-references container
(proactive notifications) on its own first use, so a process that never notifies never creates it.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from azure.cosmos import PartitionKey
from azure.cosmos.aio import ContainerProxy, CosmosClient, DatabaseProxy
from azure.cosmos.exceptions import CosmosResourceExistsError

from services.azure_transport import direct_transport
from services.settings import Settings

# Throttled (429, 449 retry-with), timed out (408) or unavailable (5xx): what is left after the SDK's
# own retries and worth trying again shortly.
TRANSIENT_STATUSES = frozenset({408, 429, 449, 500, 502, 503, 504})
MAX_ID_LENGTH = 255


T = TypeVar("T")


async def if_not_exists(create: Callable[[], Awaitable[T]]) -> T:
    """The SDK's create_*_if_not_exists reads, then creates: another instance starting at the same time
    can create it in between, and this one gets 409. Then it exists: asking again reads it."""
    try:
        return await create()
    except CosmosResourceExistsError:
        return await create()


def escape_id(key: str) -> str:
    """`key` as a valid Cosmos DB id: / \\ ? # (forbidden) and * (the escape character) and control
    characters become *xx, as the SDKs escape them; too long, it keeps its start and gets a digest of the whole."""
    escaped = "".join(f"*{ord(ch):02x}" if ch in "/\\?#*" or ord(ch) < 0x20 or ord(ch) == 0x7F else ch for ch in key)
    if len(escaped) <= MAX_ID_LENGTH:
        return escaped
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{escaped[: MAX_ID_LENGTH - len(digest) - 1]}-{digest}"


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

# Subscribers are found by topic (ARRAY_CONTAINS over `topics`); everything else is a point read.
REFERENCE_INDEXING_POLICY: dict[str, Any] = {
    "indexingMode": "consistent",
    "includedPaths": [{"path": "/topics/[]/?"}],
    "excludedPaths": [{"path": "/*"}],
}
# -1: time to live on, but only for documents that carry their own `ttl` (a conversation's
# reference does; a user's subscriptions do not expire).
REFERENCE_DEFAULT_TTL = -1


class CosmosAccount:
    """Creates the client, the database and the containers on first use (not at import)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._client: CosmosClient | None = None
        self._containers: dict[str, ContainerProxy] = {}
        self._lock = asyncio.Lock()
        self._database: DatabaseProxy | None = None
        self._references: ContainerProxy | None = None
        self._references_lock = asyncio.Lock()

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
            transport = direct_transport()  # no .netrc and proxy lookups on every request
            client = CosmosClient(settings.cosmos_endpoint, credential=self._credential(), transport=transport)
            try:
                database_id = settings.cosmos_database_id
                database = await if_not_exists(lambda: client.create_database_if_not_exists(id=database_id))
                conversations = await if_not_exists(
                    lambda: database.create_container_if_not_exists(
                        id=settings.cosmos_conversation_container_id,
                        partition_key=PartitionKey(path="/id"),
                        default_ttl=settings.cosmos_time_to_live,
                        indexing_policy=CONVERSATION_INDEXING_POLICY,
                    )
                )
                users = await if_not_exists(
                    lambda: database.create_container_if_not_exists(
                        id=settings.cosmos_user_container_id,
                        partition_key=PartitionKey(path="/id"),
                        indexing_policy=USER_INDEXING_POLICY,
                    )
                )
            except BaseException:
                await client.close()  # unused: its connections must not leak
                raise
            self._client = client
            self._database = database
            self._containers = {"conversations": conversations, "users": users}

    async def conversation_container(self) -> ContainerProxy:
        if not self._containers:
            await self._ensure()
        return self._containers["conversations"]

    async def user_container(self) -> ContainerProxy:
        if not self._containers:
            await self._ensure()
        return self._containers["users"]

    async def reference_container(self) -> ContainerProxy:
        """Conversation references and notification subscriptions (services/notifications/)."""
        if self._references is None:
            if not self._containers:
                await self._ensure()
            async with self._references_lock:
                if self._references is None:
                    assert self._database is not None
                    database = self._database
                    self._references = await if_not_exists(
                        lambda: database.create_container_if_not_exists(
                            id=self._settings.cosmos_reference_container_id,
                            partition_key=PartitionKey(path="/id"),
                            default_ttl=REFERENCE_DEFAULT_TTL,
                            indexing_policy=REFERENCE_INDEXING_POLICY,
                        )
                    )
        return self._references

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
            self._containers = {}
            self._database = None
            self._references = None
