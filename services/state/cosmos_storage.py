"""Bot state in Cosmos DB (azure-cosmos 4.x, async), with optimistic concurrency.

botbuilder-azure's storage cannot be installed beside azure-cosmos 4.8+ and blocks the
event loop, so the project has its own. One document per state key:

    {"id": <escaped key>, "realId": <key>, "document": <state>, "sweepAt"?, "ttl"?}

ConversationStorage lifts when a conversation is due for a sweep to the top level, where
Cosmos DB indexes it (the container's only indexed path), so the sweeper's query is served
by the index, and gives a conversation with an operation in flight a longer time-to-live.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from azure.core import MatchConditions
from azure.core.exceptions import ServiceRequestError, ServiceResponseError
from azure.cosmos.aio import ContainerProxy
from azure.cosmos.exceptions import CosmosHttpResponseError, CosmosResourceNotFoundError
from botbuilder.core import Storage

from services.state import state_codec
from services.state.cosmos import TRANSIENT_STATUSES, escape_id
from services.state.state_storage import ETAG_KEY, StateConflictError, StateUnavailableError
from services.turns import outbox

logger = logging.getLogger(__name__)


@dataclass
class StorageCounters:
    """Round trips made, counted (benchmarks report them)."""

    reads: int = 0
    writes: int = 0
    deletes: int = 0
    queries: int = 0


escape_key = escape_id  # a state key as its document's id


@dataclass
class StoredState:
    """A state as read, with the flattened document it was restored from (services/state/bot_states.py
    compares against it instead of flattening the state again to see whether a turn changed it)."""

    state: dict[str, Any]
    document: dict[str, Any]


def _stored_state_of(doc: Mapping[str, Any]) -> StoredState:
    # jsonpickle's format, as the SDK's own storages: dialog state holds SDK objects, not plain JSON.
    document = doc.get("document") or {}
    state = dict(state_codec.restore(document))
    state[ETAG_KEY] = doc["_etag"]
    return StoredState(state, document)


def _state_of(doc: Mapping[str, Any]) -> dict[str, Any]:
    return _stored_state_of(doc).state


def _refers(stored: Any) -> bool:
    """Whether a stored (flattened) value refers to an object stored elsewhere in its document."""
    if isinstance(stored, dict):
        return "py/id" in stored or "py/ref" in stored or any(_refers(value) for value in stored.values())
    if isinstance(stored, list):
        return any(_refers(value) for value in stored)
    return False


def flatten(state: Mapping[str, Any]) -> dict[str, Any]:
    """The stored form of a state (without its etag)."""
    return dict(state_codec.flatten({key: value for key, value in state.items() if key != ETAG_KEY}))


class CosmosStorage(Storage):
    """botbuilder Storage over one container with partition key /id."""

    def __init__(
        self, container: Callable[[], Awaitable[ContainerProxy]], counters: StorageCounters | None = None
    ) -> None:
        self._container = container
        self.counters = counters or StorageCounters()

    def _index_fields(self, state: Mapping[str, Any]) -> dict[str, Any]:
        """Top-level document fields derived from the state at each write (none here)."""
        return {}

    async def read(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        return {key: stored.state for key, stored in (await self.read_stored(keys)).items()}

    async def read_stored(self, keys: list[str]) -> dict[str, StoredState]:
        return {key: _stored_state_of(doc) for key, doc in (await self._read_documents(keys)).items()}

    async def read_properties(self, key: str, names: Iterable[str]) -> dict[str, Any] | None:
        """The stored state's top-level properties `names` (those it has), None if it is gone.

        For a reader that needs one small property of a large state (the worker asking whether its
        conversation still waits): a property whose stored form refers to nothing outside itself
        (no jsonpickle references) is restored on its own, without restoring the rest (the dialog
        stack's objects); otherwise the whole state is restored."""
        doc = (await self._read_documents([key])).get(key)
        if doc is None:
            return None
        document = doc.get("document") or {}
        wanted = [name for name in names if name in document]
        if any(_refers(document[name]) for name in wanted):
            state = _state_of(doc)
            return {name: state[name] for name in wanted}
        return {name: state_codec.restore(document[name]) for name in wanted}

    async def _read_documents(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        container = await self._container()
        items: dict[str, dict[str, Any]] = {}
        for key in keys:
            doc_id = escape_key(key)
            self.counters.reads += 1
            try:
                doc = await container.read_item(item=doc_id, partition_key=doc_id)
            except CosmosResourceNotFoundError:
                continue
            except CosmosHttpResponseError as error:
                if error.status_code in TRANSIENT_STATUSES:  # left over after the SDK's own retries
                    raise StateUnavailableError(f"state {key!r}: HTTP {error.status_code}") from error
                raise
            except (ServiceRequestError, ServiceResponseError) as error:
                raise StateUnavailableError(f"state {key!r}: {error}") from error
            items[key] = doc
        return items

    async def _query(self, query: str, parameters: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
        """(key, state) of the documents a query over the index fields finds; states carry their
        etags, so writing them back is conditional, as after read()."""
        container = await self._container()
        self.counters.queries += 1
        return [(doc["realId"], _state_of(doc)) async for doc in container.query_items(query, parameters=parameters)]

    async def write(self, changes: dict[str, Any]) -> None:
        for key, value in changes.items():
            state = value if isinstance(value, Mapping) else dict(vars(value))
            await self.write_flattened(key, state, flatten(state))

    async def write_flattened(self, key: str, value: Mapping[str, Any], document: dict[str, Any]) -> None:
        """Write `value` (a state with its etag, if it was read) whose flattened form the caller already
        has; conditional on the etag. A dict `value` gets the new etag."""
        container = await self._container()
        state = dict(value)
        etag = state.pop(ETAG_KEY, None)
        doc_id = escape_key(key)
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
            if error.status_code in TRANSIENT_STATUSES:  # left over after the SDK's own retries
                raise StateUnavailableError(f"state {key!r}: HTTP {error.status_code}") from error
            raise
        except (ServiceRequestError, ServiceResponseError) as error:
            raise StateUnavailableError(f"state {key!r}: {error}") from error
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


class SweepTimesOf(Protocol):
    def __call__(self, state: Mapping[str, Any], /) -> tuple[float | None, float | None]:
        """(when the sweeper must look at this conversation, the moment it must be kept until)."""
        ...


class ConversationStorage(CosmosStorage):
    """Conversation state, findable by when it is due for a sweep: when bot logic says so
    (`sweep_times`), or when an undelivered outbox entry is due for another attempt."""

    _DUE_QUERY = "SELECT TOP @limit * FROM c WHERE c.sweepAt <= @now ORDER BY c.sweepAt"

    def __init__(
        self,
        container: Callable[[], Awaitable[ContainerProxy]],
        sweep_times: SweepTimesOf,
        time_to_live: int,
        clock: Callable[[], float],
        counters: StorageCounters | None = None,
    ) -> None:
        super().__init__(container, counters)
        self._sweep_times = sweep_times
        self._time_to_live = time_to_live
        self._clock = clock

    def _index_fields(self, state: Mapping[str, Any]) -> dict[str, Any]:
        sweep_at, keep_until = self._sweep_times(state)
        sweep_at = _earliest(sweep_at, outbox.next_attempt_at(state))
        keep_until = _latest(keep_until, outbox.last_deadline(state))
        if sweep_at is None:
            return {}  # the container's default TTL removes it in time
        fields: dict[str, Any] = {"sweepAt": sweep_at}
        if keep_until is not None:
            # Past the container's TTL until that moment, plus the usual TTL, so the sweeper can
            # still tell the user about an operation that never reported, or deliver the outbox.
            fields["ttl"] = self._time_to_live + max(0, int(keep_until - self._clock()))
        return fields

    async def due_for_sweep(self, now: float, limit: int) -> list[tuple[str, dict[str, Any]]]:
        """Up to `limit` conversations whose sweep is due, earliest first (an indexed range query)."""
        parameters = [{"name": "@limit", "value": limit}, {"name": "@now", "value": now}]
        return await self._query(self._DUE_QUERY, parameters)


def _earliest(*moments: float | None) -> float | None:
    return min((m for m in moments if m is not None), default=None)


def _latest(*moments: float | None) -> float | None:
    return max((m for m in moments if m is not None), default=None)
