"""The app's Azure Storage clients (queues, the transcript table), built from a StorageConnection.

Locally a connection string (Azurite). In Azure the account refuses shared keys: the clients sign in
with the app's managed identity (DefaultAzureCredential picks it, as services/state/cosmos.py does), at the
endpoints the identity-based AzureWebJobsStorage__* settings name. Each caller owns the credential it
gets and closes it with the client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from azure.core.exceptions import HttpResponseError

from services.azure_transport import direct_transport
from services.settings import StorageConnection

if TYPE_CHECKING:
    from azure.data.tables.aio import TableClient
    from azure.identity.aio import DefaultAzureCredential
    from azure.storage.queue.aio import QueueClient


def _credential(connection: StorageConnection) -> DefaultAzureCredential:
    from azure.identity.aio import DefaultAzureCredential

    # A user-assigned identity is named by its client id; none: the system-assigned identity.
    return DefaultAzureCredential(managed_identity_client_id=connection.client_id or None)


def _with_transport(options: dict[str, Any]) -> dict[str, Any]:
    """The client's options with its own direct transport, which takes the connection timeouts (every
    caller gives both: a transport given to a client does not get the client's timeout options)."""
    timeouts = {name: options.pop(name, None) for name in ("connection_timeout", "read_timeout")}
    return {**options, "transport": direct_transport(**timeouts)}


def queue_client(
    connection: StorageConnection, queue_name: str, **options: Any
) -> tuple[QueueClient, DefaultAzureCredential | None]:
    """An async QueueClient for `queue_name`, and the credential to close after it (None locally)."""
    from azure.storage.queue.aio import QueueClient

    options = _with_transport(options)
    if not connection.uses_identity:
        return QueueClient.from_connection_string(connection.connection_string, queue_name, **options), None
    credential = _credential(connection)
    client = QueueClient(connection.queue_service_uri, queue_name, credential=credential, **options)
    return client, credential


def table_client(
    connection: StorageConnection, table_name: str, **options: Any
) -> tuple[TableClient, DefaultAzureCredential | None]:
    """An async TableClient for `table_name`, and the credential to close after it (None locally)."""
    from azure.data.tables.aio import TableClient

    options = _with_transport(options)
    if not connection.uses_identity:
        return TableClient.from_connection_string(connection.connection_string, table_name, **options), None
    credential = _credential(connection)
    client = TableClient(connection.table_service_uri, table_name, credential=credential, **options)
    return client, credential


def is_not_allowed_to_create(error: HttpResponseError) -> bool:
    """A 403 on creating a queue or table: in Azure the template creates them and the app's roles are
    scoped to each one, which may not include creating it again; the first real call tells."""
    return error.status_code == 403
