"""The HTTP transport the app's Azure SDK clients share in kind: aiohttp without environment lookups.

By default azure-core's aiohttp transport (trust_env) looks up ~/.netrc and the proxy variables, in a
worker thread, on every request: about 1 ms of CPU and two thread hand-offs per Cosmos DB, queue or
table call. The Function App reaches its Cosmos DB account and Storage account directly, so HTTP(S)_PROXY
and .netrc are not honoured by these clients (the sign-in to Microsoft Entra ID has its own transport).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from azure.core.pipeline.transport import AioHttpTransport


def direct_transport(connection_timeout: float | None = None, read_timeout: float | None = None) -> AioHttpTransport:
    """A transport for one client (the client closes it), with these timeouts in seconds (None: the SDK's)."""
    from azure.core.pipeline.transport import AioHttpTransport

    timeouts = {"connection_timeout": connection_timeout, "read_timeout": read_timeout}
    given = {name: seconds for name, seconds in timeouts.items() if seconds is not None}
    return AioHttpTransport(use_env_settings=False, **given)
