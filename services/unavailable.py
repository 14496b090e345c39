"""The one kind of error for a backing service that cannot serve now."""


class ServiceUnavailable(ConnectionError):
    """A backing service (Cosmos DB, Table storage, the token signing keys' source) did not serve the
    request now: throttled, unavailable, timed out, or its outcome unknown. Worth trying again shortly.
    A ConnectionError, so bot logic and handlers can catch it without importing services."""
