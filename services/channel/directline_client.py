"""The app's side of Direct Line (REST API 3.0, with requests): the worker starts a conversation
with the secret and posts event activities to the bot; the token function exchanges the secret
for a token bound to a user id. 429, 5xx and network errors are retried with backoff, honouring
Retry-After, a bounded number of times.

Posting the result twice is safe (a timeout after the service took it makes the worker
post again): the bot accepts one result per operation id and ignores the rest. Progress
posts get one short attempt. The loop is written out here rather than left to urllib3's
Retry mounted on the session, which would be no shorter: Retry waits nothing before the
first retry unless the answer carries Retry-After, sleeps with time.sleep (the `sleep`
argument would go unused), cannot give progress one attempt on a session whose result
posts get five, and logs retried statuses only at debug level."""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from typing import Any

import requests

logger = logging.getLogger(__name__)

RETRYABLE = {429, 500, 502, 503, 504}


class DirectLineError(Exception):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status  # the HTTP status that ended the request; None for network errors and bad answers


@dataclass(frozen=True)
class GeneratedToken:
    """A conversation token from POST /tokens/generate, bound to the user id it was asked for."""

    token: str
    expires_in: int  # seconds
    conversation_id: str | None


class DirectLineClient:
    def __init__(
        self,
        endpoint: str,
        secret: str,
        session: requests.Session | None = None,
        max_attempts: int = 5,
        base_delay: float = 0.5,
        max_delay: float = 20.0,
        sleep: Callable[[float], None] = time.sleep,
        timeout: float = 30.0,
    ) -> None:
        self._endpoint = endpoint.rstrip("/")
        self._secret = secret
        self._session = session or requests.Session()
        self._max_attempts = max_attempts
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._sleep = sleep
        self._timeout = timeout

    def _request(
        self,
        method: str,
        path: str,
        token: str,
        body: dict[str, Any] | None = None,
        attempts: int | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        url = f"{self._endpoint}{path}"
        max_attempts = attempts or self._max_attempts
        for attempt in range(1, max_attempts + 1):
            try:
                response = self._session.request(
                    method,
                    url,
                    json=body,
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=timeout or self._timeout,
                )
            except requests.RequestException as error:
                status, retry_after, reason = None, None, str(error)
            else:
                if response.status_code < 400:
                    return _json_object(response, method, path)
                status, retry_after, reason = response.status_code, response.headers.get("Retry-After"), response.text
                if status not in RETRYABLE:
                    raise DirectLineError(f"{method} {path}: HTTP {status}: {reason[:200]}", status)
            if attempt == max_attempts:
                break
            delay = self._delay(attempt, retry_after)
            logger.warning("Direct Line %s %s failed (%s); retrying in %.1fs", method, path, status or reason, delay)
            self._sleep(delay)
        raise DirectLineError(f"{method} {path}: gave up after {max_attempts} attempts ({status or reason})", status)

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        asked = _retry_after_seconds(retry_after)
        if asked is not None:  # never sooner than asked, unless that is past max_delay (the queue's time runs too)
            return float(min(self._max_delay, asked))
        return float(min(self._max_delay, self._base_delay * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0))

    def start_conversation(self) -> tuple[str, str]:
        """A new conversation; returns (conversation id, its token)."""
        opened = self.open_conversation()
        return str(opened.conversation_id), opened.token

    def open_conversation(self) -> GeneratedToken:
        """A new conversation with its token and the token's lifetime (seconds; 0 when the service
        gave no token, so the secret, which does not expire, stands in)."""
        answer = self._request("POST", "/conversations", self._secret, {})
        conversation_id, token, expires_in = answer.get("conversationId"), answer.get("token"), answer.get("expires_in")
        if not isinstance(conversation_id, str) or not conversation_id:
            raise DirectLineError("POST /conversations: the answer holds no conversation id")
        if not isinstance(token, str) or not token:
            return GeneratedToken(self._secret, 0, conversation_id)
        lifetime = expires_in if isinstance(expires_in, int) and not isinstance(expires_in, bool) else 0
        return GeneratedToken(token, lifetime, conversation_id)

    def refresh_token(self, token: str) -> GeneratedToken:
        """A fresh token for the conversation `token` is bound to (POST /tokens/refresh), before it expires."""
        answer = self._request("POST", "/tokens/refresh", token, {})
        fresh, expires_in, conversation_id = answer.get("token"), answer.get("expires_in"), answer.get("conversationId")
        if not isinstance(fresh, str) or not fresh or not isinstance(expires_in, int) or isinstance(expires_in, bool):
            raise DirectLineError("POST /tokens/refresh: the answer holds no token and lifetime")
        return GeneratedToken(fresh, expires_in, conversation_id if isinstance(conversation_id, str) else None)

    def generate_token(self, user_id: str) -> GeneratedToken:
        """A token for a new conversation, carrying `user_id`: with enhanced authentication on, the
        service makes it the `from.id` of whatever the token's holder posts. The bot hears nothing yet."""
        answer = self._request("POST", "/tokens/generate", self._secret, {"user": {"id": user_id}})
        token, expires_in, conversation_id = answer.get("token"), answer.get("expires_in"), answer.get("conversationId")
        if not isinstance(token, str) or not token or not isinstance(expires_in, int) or isinstance(expires_in, bool):
            raise DirectLineError("POST /tokens/generate: the answer holds no token and lifetime")
        return GeneratedToken(token, expires_in, conversation_id if isinstance(conversation_id, str) else None)

    def post_event(
        self, conversation_id: str, token: str, name: str, value: Any, sender_id: str, best_effort: bool = False
    ) -> str:
        """Post an event; best_effort (progress) means one short attempt, no retries."""
        activity = {"type": "event", "name": name, "value": value, "from": {"id": sender_id, "name": sender_id}}
        path = f"/conversations/{conversation_id}/activities"
        answer = (
            self._request("POST", path, token, activity, attempts=1, timeout=5.0)
            if best_effort
            else self._request("POST", path, token, activity)
        )
        return str(answer.get("id", ""))


def _json_object(response: requests.Response, method: str, path: str) -> dict[str, Any]:
    if not response.content:
        return {}
    try:
        answer = response.json()
    except ValueError:
        raise DirectLineError(f"{method} {path}: the answer is not JSON") from None
    if not isinstance(answer, dict):
        raise DirectLineError(f"{method} {path}: the answer is not a JSON object")
    return answer


def _retry_after_seconds(value: str | None) -> float | None:
    """Retry-After in seconds: delta-seconds or an HTTP date (RFC 9110); None if absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000": a time in UTC
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - time.time())
