"""JSON errors shaped like the real service's, and the middleware that renders them (plus CORS).

CORS: only the Direct Line client API (/v3/directline/...) answers pages of other origins, as the
real service does (a Web Chat page is served from anywhere; every call carries its Bearer secret or
token, never a cookie). Everything else (the Web Chat page and its token, the agent console, the
Connector API the bot calls server-side) gets no CORS headers: only pages of this server's own
origin, which need none, can read it."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

log = logging.getLogger("localdev.directline")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Headers Microsoft's client and Web Chat send; preflight echoes whatever else is asked for.
_ALLOWED_HEADERS = "Authorization, Content-Type, Accept, x-ms-bot-agent, X-Requested-With"
_ALLOWED_METHODS = "GET, POST, PUT, DELETE, OPTIONS"
CLIENT_API_PREFIX = "/v3/directline/"


class ApiError(Exception):
    """An error answered as `{"error": {"code", "message"}}` with an HTTP status."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def error_response(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}, "httpStatusCode": status}, status=status)


def bad_argument(message: str) -> ApiError:
    return ApiError(400, "BadArgument", message)


def json_object(raw: bytes | bytearray, what: str = "The body") -> dict[str, Any]:
    """raw as a JSON object, or a 400 naming `what` is not one."""
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise ApiError(400, "BadSyntax", f"{what} is not valid JSON") from exc
    if not isinstance(value, dict):
        raise bad_argument(f"{what} must be a JSON object")
    return value


async def read_json_object(request: web.Request, optional: bool = False) -> dict[str, Any]:
    """The request's body as a JSON object; an empty body counts as {} where the body is optional."""
    raw = await request.read()
    if not raw.strip() and optional:
        return {}
    return json_object(raw)


def not_found(message: str = "Conversation not found") -> ApiError:
    return ApiError(404, "BadArgument", message)


def _cors_headers(request: web.Request) -> dict[str, str]:
    if not request.path.startswith(CLIENT_API_PREFIX):
        return {}
    origin = request.headers.get("Origin")
    headers = {
        # Echo the origin (not "*") because the client sends withCredentials on getsessionid.
        "Access-Control-Allow-Origin": origin or "*",
        "Access-Control-Allow-Methods": _ALLOWED_METHODS,
        "Access-Control-Allow-Headers": request.headers.get("Access-Control-Request-Headers", _ALLOWED_HEADERS),
        "Access-Control-Expose-Headers": "Retry-After",
        "Access-Control-Max-Age": "600",
    }
    if origin:
        headers["Access-Control-Allow-Credentials"] = "true"
        headers["Vary"] = "Origin"
    return headers


@web.middleware
async def cors_and_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method == "OPTIONS":
        return web.Response(status=200, headers=_cors_headers(request))
    try:
        response = await handler(request)
    except ApiError as exc:
        response = error_response(exc.status, exc.code, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "NotFound", 405: "MethodNotAllowed", 413: "RequestTooLarge"}.get(exc.status, "BadArgument")
        response = error_response(exc.status, code, exc.reason)
    except Exception:
        # Details go to the log, never to the client.
        log.exception("unhandled error on %s %s", request.method, request.path)
        response = error_response(500, "ServiceError", "Internal error")
    if not response.prepared:  # a WebSocket is already upgraded; headers are gone
        response.headers.update(_cors_headers(request))
    return response
