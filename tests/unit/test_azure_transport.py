"""The app's Azure Storage clients (operations queue, transcript table) go straight to the account,
whatever proxy variables the process has; the transcript table gives up on a silent service after the
store's timeout, not azure-core's default of five minutes."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from localdev.emulators import DEV_ACCOUNT, DEV_ACCOUNT_KEY
from services.queues.storage_queue import StorageQueue
from services.transcripts.recorder import TranscriptStoreUnavailableError, transcript_entry
from services.transcripts.store import TableTranscriptStore
from tests.support.local_server import LocalServer


class Recorder(LocalServer):
    """An HTTP server that answers every request with `status` and remembers each path it saw."""

    def __init__(self, status: int) -> None:
        super().__init__()
        self.status = status
        self.paths: list[str] = []

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/{tail:.*}", self._any)

    async def _any(self, request: web.Request) -> web.Response:
        self.paths.append(request.path_qs)
        return web.Response(status=self.status)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _connection_string(queue_url: str, table_url: str) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_ACCOUNT_KEY};"
        f"QueueEndpoint={queue_url}/{DEV_ACCOUNT};TableEndpoint={table_url}/{DEV_ACCOUNT};"
    )


@pytest.fixture
async def silent_server() -> AsyncIterator[str]:
    """Accepts connections and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    for writer in held:
        writer.close()
    server.close()
    await server.wait_closed()


async def test_queue_and_table_requests_go_to_the_account_not_to_a_proxy_the_environment_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Neither answer is one the SDKs can read, so both calls fail: only where they went counts here.
    async with Recorder(500) as account, Recorder(502) as proxy:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            monkeypatch.setenv(name, proxy.url)
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        connection = _connection_string(account.url, account.url)
        queue = StorageQueue(connection, "operations")
        store = TableTranscriptStore(connection, "transcripts", request_timeout=2.0)
        try:
            with contextlib.suppress(Exception):
                await queue.send({"operation": "prime report"})
            with contextlib.suppress(Exception):
                await store.write("conversation-1", [transcript_entry(_activity(), lambda: 1)])
        finally:
            await queue.close()
            await store.close()
    assert proxy.paths == []
    assert any(path.startswith(f"/{DEV_ACCOUNT}/operations") for path in account.paths)
    assert any(path.startswith(f"/{DEV_ACCOUNT}/Tables") for path in account.paths)


async def test_a_table_that_never_answers_is_given_up_after_the_stores_request_timeout(silent_server: str) -> None:
    store = TableTranscriptStore(_connection_string(silent_server, silent_server), "transcripts", request_timeout=0.5)
    started = time.monotonic()
    try:
        with pytest.raises(TranscriptStoreUnavailableError):
            # The guard only keeps a regression from hanging the suite: azure-core's default is 300 s.
            await asyncio.wait_for(store.write("conversation-1", [transcript_entry(_activity(), lambda: 1)]), 20)
    finally:
        await store.close()
    assert time.monotonic() - started < 5


def _activity() -> dict[str, object]:
    return {"type": "message", "id": "a1", "text": "hello", "channelId": "directline", "from": {"id": "u1"}}
