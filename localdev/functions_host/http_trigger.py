"""HTTP triggers: an aiohttp server that routes, checks keys, and converts requests and responses."""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass
from typing import Any

import azure.functions as func
from aiohttp import web
from azure.functions.http import HttpRequest as WorkerHttpRequest
from multidict import CIMultiDict

from localdev.functions_host.indexing import FunctionSpec
from localdev.functions_host.invocation import Invoker
from localdev.functions_host.routing import RouteTemplate

log = logging.getLogger("localdev.functions_host")

# The Functions host accepts request bodies up to 100 MB (Kestrel's limit there is 104857600 bytes).
MAX_REQUEST_BODY = 104_857_600
_HOP_BY_HOP = {"content-length", "transfer-encoding", "connection", "keep-alive"}


@dataclass(frozen=True)
class HttpRoute:
    spec: FunctionSpec
    template: RouteTemplate
    methods: frozenset[str] | None  # None: every method
    auth_level: str  # anonymous | function | admin

    @property
    def method_label(self) -> str:
        return ",".join(sorted(self.methods)) if self.methods else "GET,POST,PUT,DELETE,PATCH,HEAD,OPTIONS"


def build_routes(specs: list[FunctionSpec], route_prefix: str) -> list[HttpRoute]:
    routes = []
    for spec in specs:
        if spec.trigger_type != "httpTrigger":
            continue
        trigger = spec.trigger
        methods = trigger.get("methods")
        routes.append(
            HttpRoute(
                spec=spec,
                template=RouteTemplate.compile(route_prefix, str(trigger.get("route") or spec.name)),
                methods=frozenset(str(m).upper() for m in methods) if methods else None,
                auth_level=str(trigger.get("authLevel") or "FUNCTION").lower(),
            )
        )
    # More specific templates first, so `items/new` wins over `items/{id}` as in ASP.NET routing.
    routes.sort(key=lambda r: (r.template.precedence, r.template.template.lower()))
    return routes


def _joined(pairs: Any, separator: str) -> dict[str, str]:
    """Repeated headers/query parameters become one comma-joined value, as ASP.NET presents them."""
    values: dict[str, list[str]] = {}
    for name, value in pairs:
        values.setdefault(name, []).append(value)
    return {name: separator.join(items) for name, items in values.items()}


def worker_query(pairs: Any) -> dict[str, str]:
    """req.params as the Python worker gets it: repeated names joined with ",", and a name whose value
    is empty (`?flag` or `?flag=`) left out (the host drops empty values for workers, like Python's,
    that do not ask for nullable values: GrpcMessageConversionExtensions.ToRpcHttp)."""
    return {name: value for name, value in _joined(pairs, ",").items() if value}


class Cors:
    """Core Tools' CORS (local.settings.json Host.CORS and CORSCredentials): ASP.NET Core's policy
    WithOrigins(...).AllowAnyHeader().AllowAnyMethod() [.AllowCredentials()]. Azure has its own,
    set on the app (az functionapp cors), not in local.settings.json."""

    def __init__(self, origins: tuple[str, ...], credentials: bool) -> None:
        self.any_origin = "*" in origins
        self.origins = {origin.rstrip("/").lower() for origin in origins}
        self.credentials = credentials  # never with any origin (read_local_settings refuses that)

    def _allowed(self, origin: str) -> bool:
        return self.any_origin or origin.rstrip("/").lower() in self.origins

    def preflight(self, request: web.Request) -> web.Response | None:
        """The answer to a CORS preflight (which the middleware ends itself, with 204), else None."""
        origin = request.headers.get("Origin")
        method = request.headers.get("Access-Control-Request-Method")
        if request.method != "OPTIONS" or origin is None or method is None:
            return None
        response = web.Response(status=204)
        if self._allowed(origin):
            self._allow(response, origin)
            response.headers["Access-Control-Allow-Methods"] = method
            requested = request.headers.get("Access-Control-Request-Headers")
            if requested:
                response.headers["Access-Control-Allow-Headers"] = requested
        return response

    def decorate(self, request: web.Request, response: web.StreamResponse) -> None:
        origin = request.headers.get("Origin")
        if origin is not None and self._allowed(origin):
            self._allow(response, origin)

    def _allow(self, response: web.StreamResponse, origin: str) -> None:
        if self.any_origin:
            response.headers["Access-Control-Allow-Origin"] = "*"
        else:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"
        if self.credentials:
            response.headers["Access-Control-Allow-Credentials"] = "true"


class HttpTriggerServer:
    def __init__(
        self,
        routes: list[HttpRoute],
        invoker: Invoker,
        function_key: str,
        cors_origins: tuple[str, ...] = (),
        cors_credentials: bool = False,
    ) -> None:
        self._routes = routes
        self._invoker = invoker
        self._key = function_key
        self._cors = Cors(cors_origins, cors_credentials) if cors_origins else None

    def application(self) -> web.Application:
        app = web.Application(client_max_size=MAX_REQUEST_BODY)
        app.router.add_route("*", "/{tail:.*}", self._handle_with_cors if self._cors else self._handle)
        return app

    async def _handle_with_cors(self, request: web.Request) -> web.StreamResponse:
        assert self._cors is not None
        preflight = self._cors.preflight(request)
        if preflight is not None:
            return preflight
        response = await self._handle(request)
        self._cors.decorate(request, response)
        return response

    def _authorized(self, request: web.Request, level: str) -> bool:
        if level == "anonymous":
            return True
        # One key stands for both function and host (master) keys here.
        given = request.headers.get("x-functions-key") or request.query.get("code") or ""
        return hmac.compare_digest(given.encode(), self._key.encode())

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path_matched = False
        for route in self._routes:
            values = route.template.match(request.path)
            if values is None:
                continue
            path_matched = True
            if route.methods is not None and request.method.upper() not in route.methods:
                continue
            if not self._authorized(request, route.auth_level):
                return web.Response(status=401)
            return await self._invoke(route, request, values)
        if path_matched:
            # As the real host (azure-functions-host#10098): a route matched with another method is a
            # 404, so a client tested here behaves the same in Azure.
            return web.Response(status=404)
        if request.path == "/" and request.method in ("GET", "HEAD"):
            return web.Response(text="Your Functions app is up and running (local host).")
        return web.Response(status=404)

    async def _invoke(self, route: HttpRoute, request: web.Request, values: dict[str, str]) -> web.StreamResponse:
        body = await request.read()  # raises 413 past client_max_size
        http_request = WorkerHttpRequest(
            method=request.method,
            url=str(request.url),
            # The host hands the worker ASP.NET's StringValues.ToString(): repeated values joined by ",".
            headers=_joined(request.headers.items(), ","),
            params=worker_query(request.query.items()),
            route_params=values,
            body_type="bytes",
            body=body,
        )
        result = await self._invoker.invoke(
            route.spec, http_request, "This function was programmatically called via the host APIs."
        )
        if not result.succeeded:
            return web.Response(status=500)  # no internals: the traceback is in the host's log only
        try:
            return to_aiohttp_response(result.value)
        except TypeError:
            log.exception("Function '%s' returned a value the HTTP output binding cannot send", route.spec.name)
            return web.Response(status=500)


def to_aiohttp_response(value: Any) -> web.Response:
    """The HTTP output binding: func.HttpResponse or str, as the worker's converter accepts."""
    if value is None:
        return web.Response(status=204)
    if isinstance(value, str):
        return web.Response(status=200, body=value.encode(), content_type="text/plain", charset="utf-8")
    if not isinstance(value, func.HttpResponse):
        raise TypeError(f"unsupported HTTP return type {type(value).__name__}")
    headers: CIMultiDict[str] = CIMultiDict()
    for name, header_value in value.headers.items():
        if name.lower() not in _HOP_BY_HOP:
            headers.add(name, header_value)
    if "content-type" not in headers:
        mimetype = value.mimetype
        headers["Content-Type"] = f"{mimetype}; charset={value.charset}" if mimetype.startswith("text/") else mimetype
    return web.Response(status=value.status_code, headers=headers, body=value.get_body())
