"""Plain data for queue-triggered handlers, so tests call them without the Functions runtime (and a
queue function imports only what it needs: not another function's handler)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class QueueMessageData:
    id: str
    body: bytes  # already decoded per host.json's messageEncoding
    dequeue_count: int
