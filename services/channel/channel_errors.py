"""What a failed send through the Bot Framework Connector client means for whoever retries it.

botframework-connector 4.17 (msrest underneath) raises `ErrorResponseException`, a subclass of
msrest's `HttpOperationError`, for any non-2xx answer; its `.response` is the HTTP response, with
`.status_code` and case-insensitive `.headers` (a `ConnectorAnswer` for the bot's sends,
services/channel/connector_sender.py; a `requests.Response` for the SDK's other calls). msrest itself
does not retry a 429, so the bot must honour it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any

TOO_MANY_REQUESTS = 429
# A 429 without a (readable) Retry-After still asks for a back-off; the Direct Line documentation
# promises no header, so this is the bot's own guess.
DEFAULT_RETRY_AFTER_SECONDS = 5.0
# A Retry-After further out is treated as this (a queue message can be hidden for at most 7 days,
# and an absurd value should not park a notification for that long).
MAX_RETRY_AFTER_SECONDS = 3600.0
_MAX_CAUSE_DEPTH = 5  # the adapter may wrap the Connector's error; look a few causes deep


def retry_after_of(error: BaseException, now: Callable[[], float] = time.time) -> float | None:
    """Seconds the channel asked the bot to wait, when `error` is the Connector client's 429
    (Retry-After as seconds or as an HTTP-date, clamped to [0, MAX_RETRY_AFTER_SECONDS]);
    None for any other error."""
    from msrest.exceptions import HttpOperationError  # loaded with the SDK that raised it

    current: BaseException | None = error
    for _ in range(_MAX_CAUSE_DEPTH):
        if current is None:
            return None
        if isinstance(current, HttpOperationError):
            response = getattr(current, "response", None)
            if _status_of(response) != TOO_MANY_REQUESTS:
                return None
            return _seconds_of(_header(response, "Retry-After"), now)
        current = current.__cause__ or current.__context__
    return None


def is_permanent(error: BaseException) -> bool:
    """True when the channel refused the send for good: a 4xx answer other than 408 and 429 (the
    conversation is gone, the bot may not post there). Anything else (5xx, a timeout, a reset
    connection) may pass."""
    from msrest.exceptions import HttpOperationError

    current: BaseException | None = error
    for _ in range(_MAX_CAUSE_DEPTH):
        if current is None:
            return False
        if isinstance(current, HttpOperationError):
            status = _status_of(getattr(current, "response", None))
            return status is not None and 400 <= status < 500 and status not in (408, TOO_MANY_REQUESTS)
        current = current.__cause__ or current.__context__
    return False


def _status_of(response: Any) -> int | None:
    # requests' Response has status_code; aiohttp's ClientResponse (msrest's aiohttp pipeline) has status.
    status = getattr(response, "status_code", None) or getattr(response, "status", None)
    return status if isinstance(status, int) else None


def _header(response: Any, name: str) -> str | None:
    headers = getattr(response, "headers", None)
    if not isinstance(headers, Mapping):
        return None
    value = headers.get(name)  # both SDK response types have case-insensitive headers
    if value is None:  # a plain dict: look case-insensitively
        value = next((v for k, v in headers.items() if isinstance(k, str) and k.lower() == name.lower()), None)
    return value if isinstance(value, str) else None


def _seconds_of(value: str | None, now: Callable[[], float]) -> float:
    if value is None or not value.strip():
        return DEFAULT_RETRY_AFTER_SECONDS
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            moment = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return DEFAULT_RETRY_AFTER_SECONDS
        if moment.tzinfo is None:  # "-0000": UTC, by RFC 5322 (an HTTP-date says GMT)
            moment = moment.replace(tzinfo=UTC)
        seconds = moment.timestamp() - now()
    if seconds != seconds:  # NaN
        return DEFAULT_RETRY_AFTER_SECONDS
    return min(MAX_RETRY_AFTER_SECONDS, max(0.0, seconds))
