"""Bot state in Cosmos DB (azure-cosmos 4.x, async), with optimistic concurrency.

botbuilder-azure's storage cannot be installed beside azure-cosmos 4.8+ and blocks the
event loop, so the project has its own. One document per state key:

    {"id": <escaped key>, "realId": <key>, "document": <state>, ...index fields, "ttl"?}

`index_fields` lifts a few values (last access, expiry time, per-item ttl) to the top
level, where Cosmos DB indexes them, so the sweeper's query is served by an index.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from azure.core import MatchConditions
from azure.cosmos.aio import ContainerProxy
from azure.cosmos.exceptions import CosmosHttpResponseError, CosmosResourceNotFoundError
from botbuilder.core import Storage
from jsonpickle import Pickler, Unpickler

logger = logging.getLogger(__name__)

ETAG_KEY = "e_tag"
# Cosmos DB ids may not contain these characters; the SDKs escape them the same way.
_FORBIDDEN = {"\\": "*5c", "?": "*3f", "/": "*2f", "#": "*23", "*": "*2a"}
_MAX_ID_LENGTH = 255

IndexFields = Callable[[Mapping[str, Any]], dict[str, Any]]


class StateConflictError(Exception):
    """The stored state changed since it was read (HTTP 412, or 409 on a first write)."""


@dataclass
class StorageCounters:
    """Round trips made, counted (benchmarks report them)."""

    reads: int = 0
    writes: int = 0
    deletes: int = 0
    queries: int = 0


def escape_key(key: str) -> str:
    escaped = "".join(_FORBIDDEN.get(ch, ch) for ch in key)
    if len(escaped) <= _MAX_ID_LENGTH:
        return escaped
    digest = hashlib.sha256(key.encode()).hexdigest()
    return f"{escaped[: _MAX_ID_LENGTH - len(digest) - 1]}-{digest}"


def _state_of(doc: Mapping[str, Any]) -> dict[str, Any]:
    # jsonpickle, as the SDK's own storages: dialog state holds SDK objects, not plain JSON.
    state = dict(Unpickler().restore(doc.get("document") or {}))
    state[ETAG_KEY] = doc["_etag"]
    return state


def _no_index_fields(_state: Mapping[str, Any]) -> dict[str, Any]:
    return {}


class CosmosStorage(Storage):
    """botbuilder Storage over one container with partition key /id."""

    def __init__(
        self,
        container: Callable[[], Awaitable[ContainerProxy]],
        index_fields: IndexFields = _no_index_fields,
        counters: StorageCounters | None = None,
    ) -> None:
        self._container = container
        self._index_fields = index_fields
        self.counters = counters or StorageCounters()

    async def read(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        container = await self._container()
        items: dict[str, dict[str, Any]] = {}
        for key in keys:
            doc_id = escape_key(key)
            self.counters.reads += 1
            try:
                doc = await container.read_item(item=doc_id, partition_key=doc_id)
            except CosmosResourceNotFoundError:
                continue
            items[key] = _state_of(doc)
        return items

    async def query(self, query: str, parameters: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
        """(key, state) of the documents a query over the index fields finds; states carry their
        etags, so writing them back is conditional, as after read()."""
        container = await self._container()
        self.counters.queries += 1
        return [(doc["realId"], _state_of(doc)) async for doc in container.query_items(query, parameters=parameters)]

    async def write(self, changes: dict[str, Any]) -> None:
        container = await self._container()
        for key, value in changes.items():
            state = dict(value) if isinstance(value, Mapping) else dict(vars(value))
            etag = state.pop(ETAG_KEY, None)
            doc_id = escape_key(key)
            document = Pickler().flatten(state)
            body = {**self._index_fields(state), "id": doc_id, "realId": key, "document": document}
            self.counters.writes += 1
            try:
                if etag is None:
                    saved = await container.create_item(body=body)
                elif etag == "*":
                    saved = await container.upsert_item(body=body)
                else:
                    saved = await container.replace_item(
                        item=doc_id, body=body, etag=etag, match_condition=MatchConditions.IfNotModified
                    )
            except CosmosHttpResponseError as error:
                # 404 on a conditional replace: deleted (e.g. by TTL) since it was read.
                if error.status_code in (409, 412) or (error.status_code == 404 and etag not in (None, "*")):
                    raise StateConflictError(f"state {key!r} changed since it was read") from error
                raise
            # Keep the new etag so a second save in the same turn is still conditional.
            if isinstance(value, dict):
                value[ETAG_KEY] = saved["_etag"]

    async def delete(self, keys: Iterable[str]) -> None:
        container = await self._container()
        for key in keys:
            doc_id = escape_key(key)
            self.counters.deletes += 1
            try:
                await container.delete_item(item=doc_id, partition_key=doc_id)
            except CosmosResourceNotFoundError:
                continue
