"""HTTP test app for the local Functions host."""

import asyncio
import json
import os
import threading
import time
from pathlib import Path

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

_sync_barrier = threading.Barrier(2, timeout=10)
_async_arrivals = 0
_async_all_here: asyncio.Event | None = None


@app.route(route="hello/{name}", methods=["GET"])
def hello(req: func.HttpRequest) -> func.HttpResponse:
    greeting = req.params.get("greeting", "Hello")
    return func.HttpResponse(f"{greeting} {req.route_params['name']}")


@app.route(
    route="items/{id:int}", methods=["GET", "POST"], auth_level=func.AuthLevel.FUNCTION, trigger_arg_name="request"
)
async def items(request: func.HttpRequest) -> func.HttpResponse:
    payload = {
        "method": request.method,
        "url": request.url,
        "route": dict(request.route_params),
        "params": dict(request.params),
        "header": request.headers.get("x-test"),
        "body": request.get_body().decode(),
    }
    return func.HttpResponse(
        json.dumps(payload),
        status_code=201 if request.method == "POST" else 200,
        mimetype="application/json",
        headers={"X-Handled-By": "items"},
    )


@app.route(route="items/new", methods=["GET"])
def new_item(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("new item form")


@app.route(route="admin-only", auth_level=func.AuthLevel.ADMIN)
def admin_only(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("admin")


@app.route(route="opt/{x?}")
def optional(req: func.HttpRequest) -> str:
    return req.route_params.get("x", "none")


@app.route(route="boom")
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("secret-internal-detail")


@app.route(route="bad-return")
def bad_return(req: func.HttpRequest) -> func.HttpResponse:
    return 42  # type: ignore[return-value]


@app.route(route="html")
def html(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("<p>caf\u00e9</p>", mimetype="text/html", charset="latin-1", status_code=202)


@app.route(route="size", methods=["POST"])
def size(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(str(len(req.get_body())))


@app.route(route="context")
def context_info(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return func.HttpResponse(json.dumps({"name": context.function_name, "id": context.invocation_id}))


@app.route(route="rendezvous/sync")
def sync_rendezvous(req: func.HttpRequest) -> func.HttpResponse:
    # Both requests must be inside the function at once, or the barrier times out (500).
    _sync_barrier.wait()
    return func.HttpResponse("met")


@app.route(route="rendezvous/async")
async def async_rendezvous(req: func.HttpRequest) -> func.HttpResponse:
    global _async_arrivals, _async_all_here
    if _async_all_here is None:
        _async_all_here = asyncio.Event()
    _async_arrivals += 1
    if _async_arrivals >= 2:
        _async_all_here.set()
    await asyncio.wait_for(_async_all_here.wait(), 10)
    return func.HttpResponse("met")


@app.route(route="slow")
def slow(req: func.HttpRequest) -> func.HttpResponse:
    # For the shutdown test: tell the test we are running, then take a while.
    (Path(os.environ["RECORD_DIR"]) / "slow-started").write_text("started")
    time.sleep(1.0)
    return func.HttpResponse("finished")
