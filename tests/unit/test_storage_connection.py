"""AzureWebJobsStorage read as the Functions host reads it: a connection string locally (Azurite),
identity-based settings in Azure, where the account takes no key. The app's queue and table clients
are built from the same StorageConnection: with a connection string locally, with the account's
endpoints and the app's managed identity (no key anywhere) in Azure."""

from __future__ import annotations

import pytest
from azure.core.exceptions import HttpResponseError

from services.queues.storage_clients import queue_client, table_client
from services.queues.storage_queue import StorageQueue
from services.settings import SettingsError, StorageConnection, load_settings
from services.transcripts.store import TableTranscriptStore

BASE = {
    "CosmosDbEndpoint": "http://127.0.0.1:8081/",
    "DirectLineSecret": "secret",
    "OperationSigningKey": "k" * 32,
    "HandoffSigningKey": "h" * 32,
}
AZURITE = "UseDevelopmentStorage=true"


def test_a_connection_string_is_used_as_given_and_wins_over_identity_settings() -> None:
    settings = load_settings({**BASE, "AzureWebJobsStorage": AZURITE, "AzureWebJobsStorage__accountName": "stother"})
    assert settings.storage == StorageConnection(connection_string=AZURITE)
    assert not settings.storage.uses_identity


def test_an_account_name_gives_the_public_endpoints_and_the_system_assigned_identity() -> None:
    settings = load_settings(
        {**BASE, "AzureWebJobsStorage__accountName": "stbot123", "AzureWebJobsStorage__credential": "managedidentity"}
    )
    assert settings.storage == StorageConnection(
        queue_service_uri="https://stbot123.queue.core.windows.net",
        table_service_uri="https://stbot123.table.core.windows.net",
    )
    assert settings.storage.uses_identity and settings.storage_connection_string == ""


def test_service_uris_and_a_user_assigned_identity() -> None:
    settings = load_settings(
        {
            **BASE,
            "AzureWebJobsStorage__queueServiceUri": "https://st.queue.core.chinacloudapi.cn",
            "AzureWebJobsStorage__tableServiceUri": "https://st.table.core.chinacloudapi.cn",
            "AzureWebJobsStorage__credential": "managedidentity",
            "AzureWebJobsStorage__clientId": "00000000-0000-0000-0000-00000000000c",
        }
    )
    assert settings.storage.queue_service_uri == "https://st.queue.core.chinacloudapi.cn"
    assert settings.storage.table_service_uri == "https://st.table.core.chinacloudapi.cn"
    assert settings.storage.client_id == "00000000-0000-0000-0000-00000000000c"


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({}, "AzureWebJobsStorage"),
        ({"AzureWebJobsStorage__accountName": "Not_An_Account"}, "AzureWebJobsStorage__accountName"),
        ({"AzureWebJobsStorage__queueServiceUri": "https://st.queue.core.windows.net"}, "tableServiceUri"),
        (
            {
                "AzureWebJobsStorage__queueServiceUri": "http://st.queue.core.windows.net",
                "AzureWebJobsStorage__tableServiceUri": "https://st.table.core.windows.net",
            },
            "AzureWebJobsStorage__queueServiceUri",
        ),
        (
            {"AzureWebJobsStorage__accountName": "stbot123", "AzureWebJobsStorage__credential": "connectionstring"},
            "AzureWebJobsStorage__credential",
        ),
    ],
)
def test_a_missing_or_malformed_storage_setting_is_named(values: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        load_settings({**BASE, **values})


async def test_identity_based_clients_carry_a_token_credential_and_no_key() -> None:
    connection = StorageConnection(
        queue_service_uri="https://stbot123.queue.core.windows.net",
        table_service_uri="https://stbot123.table.core.windows.net",
        client_id="00000000-0000-0000-0000-00000000000c",
    )
    queue, queue_credential = queue_client(connection, "long-operations")
    table, table_credential = table_client(connection, "transcripts")
    try:
        assert queue.url == "https://stbot123.queue.core.windows.net/long-operations"
        assert table.url.startswith("https://stbot123.table.core.windows.net")
        for client, credential in ((queue, queue_credential), (table, table_credential)):
            assert credential is not None and client.credential is credential
            assert hasattr(credential, "get_token")  # an Entra ID token credential, not a shared key
            assert not hasattr(client.credential, "account_key")
    finally:
        for client, credential in ((queue, queue_credential), (table, table_credential)):
            await client.close()
            assert credential is not None
            await credential.close()


async def test_a_connection_string_builds_keyed_clients_without_a_token_credential() -> None:
    connection = StorageConnection.of(
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
        "QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;TableEndpoint=http://127.0.0.1:10002/devstoreaccount1"
    )
    queue, queue_credential = queue_client(connection, "long-operations")
    table, table_credential = table_client(connection, "transcripts")
    try:
        assert queue_credential is None and table_credential is None
        assert queue.url == "http://127.0.0.1:10001/devstoreaccount1/long-operations"
    finally:
        await queue.close()
        await table.close()


def test_the_services_accept_the_settings_connection_or_a_connection_string() -> None:
    connection = StorageConnection(queue_service_uri="https://s.queue.core.windows.net", table_service_uri="https://s")
    assert StorageQueue(connection, "q")._connection is connection
    assert TableTranscriptStore(AZURITE, "transcripts")._connection == StorageConnection(connection_string=AZURITE)


_SENT = (
    '<?xml version="1.0" encoding="utf-8"?><QueueMessagesList><QueueMessage><MessageId>m1</MessageId>'
    "<InsertionTime>Mon, 07 Dec 2026 00:00:00 GMT</InsertionTime>"
    "<ExpirationTime>Mon, 14 Dec 2026 00:00:00 GMT</ExpirationTime><PopReceipt>r</PopReceipt>"
    "<TimeNextVisible>Mon, 07 Dec 2026 00:00:00 GMT</TimeNextVisible></QueueMessage></QueueMessagesList>"
)


@pytest.mark.parametrize(("create_status", "sends"), [(403, True), (500, False)])
async def test_a_queue_the_app_may_not_create_is_used_as_the_template_made_it(create_status: int, sends: bool) -> None:
    """With roles scoped to each queue, creating it may be refused (403) although it exists: the
    sender carries on and sends. Any other failure to create still stops it."""
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    seen: list[str] = []

    async def create(request: web.Request) -> web.Response:
        seen.append("create")
        code = "AuthorizationPermissionMismatch" if create_status == 403 else "InternalError"
        return web.Response(status=create_status, headers={"x-ms-error-code": code})

    async def send(request: web.Request) -> web.Response:
        seen.append("send")
        return web.Response(status=201, body=_SENT, content_type="application/xml")

    app = web.Application()
    app.router.add_put("/devstoreaccount1/q", create)
    app.router.add_post("/devstoreaccount1/q/messages", send)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    connection = (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
        f"QueueEndpoint=http://127.0.0.1:{server.port}/devstoreaccount1"
    )
    queue = StorageQueue(connection, "q")
    try:
        if sends:
            await queue.send({"operation": "x"})
            assert seen[0] == "create" and seen[-1] == "send" and queue.sent == 1
        else:
            with pytest.raises(HttpResponseError):
                await queue.send({"operation": "x"})
            assert "send" not in seen
    finally:
        await queue.close()
        await server.close()
