"""What the turn runner needs of any state storage, whatever the store: optimistic concurrency.

A state read from storage carries its version under ETAG_KEY; writing it back is conditional on
that version, and a write that lost the race raises StateConflictError. A state without
ETAG_KEY is new (create; conflict if someone created it meanwhile); ETAG_KEY "*" overwrites.
A write the store could not take just now (throttled, unavailable, timed out: its outcome may be
unknown) raises StateUnavailableError, which is worth retrying after a short wait.
"""

from services.unavailable import ServiceUnavailable

ETAG_KEY = "e_tag"  # the name botbuilder's own storages use


class StateConflictError(Exception):
    """The stored state changed since it was read (HTTP 412, or 409 on a first write)."""


class StateUnavailableError(ServiceUnavailable):
    """The store did not take the write now (429, 5xx, timeout, connection lost); it may have applied it."""
