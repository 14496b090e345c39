"""The app as shipped, plus timestamps on the result-delivery path (benchmarks only).

The delivery benchmark copies this file next to a copy of host.json and points the local
Functions host at it (PYTHON_SCRIPT_FILE_NAME), so no project file changes. It wraps a few
functions and prints one line per event on the host's stdout,
`BENCHMARK <event> <operation id or conversation id> <time.time()> [<conversation id>]`.
Ordinary message turns print nothing.
"""

from __future__ import annotations

import contextvars
import dataclasses
import inspect
import json
import time
from collections.abc import Callable
from typing import Any

import bot_logic.operation_protocol as operation_protocol
import bot_logic.turn_routing as turn_routing
import handlers.messages as messages
import handlers.operations_worker as worker
import services.channel.directline_client as directline_client
import services.queues.storage_queue as operation_queue
import services.turns.bot_adapter as bot_adapter
import services.turns.unit_of_work as unit_of_work

PREFIX = "BENCHMARK"
_operation: contextvars.ContextVar[str | None] = contextvars.ContextVar("bench_operation", default=None)


def mark(event: str, key: str | None, extra: str = "") -> None:
    print(f"{PREFIX} {event} {key or '-'} {time.time():.6f} {extra}".rstrip(), flush=True)


# --- the messages function: the choice turn's queue message, the resumed turn, its reply ----------
def _argument(function: Callable[..., Any], name: str) -> Callable[[tuple[Any, ...], dict[str, Any]], Any]:
    """Reads argument `name` of a call to `function`, however it was passed (wrappers keep any signature)."""
    signature = inspect.signature(function)

    def read(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return signature.bind_partial(*args, **kwargs).arguments.get(name)

    return read


_send = operation_queue.StorageQueue.send


async def _timed_send(*args: Any, **kwargs: Any) -> None:
    await _send(*args, **kwargs)
    message = args[1] if len(args) > 1 else kwargs.get("message")
    mark("enqueued", message.get("operationId") if isinstance(message, dict) else None)


operation_queue.StorageQueue.send = _timed_send  # type: ignore[method-assign]

_resume = turn_routing.TurnRouter._resume


def _operation_id(value: Any) -> str | None:
    """The operation id in an event's value: plain, or inside a signed {"payload": <JSON text>, ...}."""
    if not isinstance(value, dict):
        return None
    if "operationId" in value:
        return str(value["operationId"])
    try:
        payload = json.loads(value.get("payload") or "{}")
    except (TypeError, ValueError):
        return None
    return str(payload.get("operationId")) if isinstance(payload, dict) and payload.get("operationId") else None


async def _timed_resume(router: Any, activity: Any) -> None:
    if activity.name != operation_protocol.RESULT_EVENT:
        await _resume(router, activity)
        return
    operation_id = _operation_id(activity.value)
    mark("event_at_bot", operation_id)
    token = _operation.set(operation_id)
    try:
        await _resume(router, activity)
    finally:
        _operation.reset(token)


turn_routing.TurnRouter._resume = _timed_resume  # type: ignore[method-assign]

_process_proactive = bot_adapter.FunctionsBotAdapter.process_proactive


async def _timed_process_proactive(adapter: Any, claims: Any, continuation: Any, audience: Any, logic: Any) -> Any:
    operation_id = _operation.get()
    if operation_id is None:  # not a resumed result (e.g. the sweeper's notice)
        return await _process_proactive(adapter, claims, continuation, audience, logic)

    async def timed_turn(turn_context: Any) -> None:
        mark("turn_start", operation_id)
        await logic(turn_context)
        mark("turn_end", operation_id)

    return await _process_proactive(adapter, claims, continuation, audience, timed_turn)


bot_adapter.FunctionsBotAdapter.process_proactive = _timed_process_proactive  # type: ignore[method-assign]

_send_activities = bot_adapter.FunctionsBotAdapter.send_activities


async def _timed_send_activities(*args: Any, **kwargs: Any) -> Any:
    operation_id = _operation.get()
    context = args[1] if len(args) > 1 else kwargs.get("context")
    sends = unit_of_work.sends_of(context)
    sending = operation_id is not None and (sends is None or not sends.holding)
    if sending:
        mark("reply_send_start", operation_id)
    result = await _send_activities(*args, **kwargs)
    if sending:
        mark("reply_sent", operation_id)
    return result


bot_adapter.FunctionsBotAdapter.send_activities = _timed_send_activities  # type: ignore[method-assign]

_handle_messages = messages.handle_messages


async def _timed_handle_messages(request: Any, *args: Any, **kwargs: Any) -> Any:
    # conversationUpdate turns, by conversation: the delivery benchmark picks those of the
    # worker's conversations (the channel announces the bot, then the worker, before its event).
    conversation_id = None
    if b"conversationUpdate" in request.body:
        conversation_id = (json.loads(request.body).get("conversation") or {}).get("id")
        mark("update_start", conversation_id)
    response = await _handle_messages(request, *args, **kwargs)
    if conversation_id:
        mark("update_end", conversation_id)
    return response


messages.handle_messages = _timed_handle_messages

# --- the operations_worker function ---------------------------------------------------------------
_parse = worker.parse_operation_request


def _timed_parse(*args: Any, **kwargs: Any) -> dict[str, Any]:
    request = _parse(*args, **kwargs)
    _operation.set(request.get("operationId"))
    mark("picked", request.get("operationId"))
    return request


worker.parse_operation_request = _timed_parse
_get_operation = worker.get_operation


def _timed_get_operation(*args: Any, **kwargs: Any) -> Any:
    operation = _get_operation(*args, **kwargs)
    run = operation.run

    async def timed_run(*run_args: Any, **run_kwargs: Any) -> str:
        mark("run_start", _operation.get())
        text = await run(*run_args, **run_kwargs)
        mark("run_end", _operation.get())
        return str(text)

    return dataclasses.replace(operation, run=timed_run)


worker.get_operation = _timed_get_operation
_current_conversation = worker.WorkerConversation.current
_post_event = directline_client.DirectLineClient.post_event


_event_name = _argument(_post_event, "name")


def _timed_current_conversation(*args: Any, **kwargs: Any) -> Any:
    """The worker's Direct Line conversation is ready for a post (opened once per instance, then reused)."""
    answer = _current_conversation(*args, **kwargs)
    mark("dl_started", _operation.get(), str(answer[0]))
    return answer


def _timed_post_event(*args: Any, **kwargs: Any) -> Any:
    answer = _post_event(*args, **kwargs)
    if _event_name(args, kwargs) == operation_protocol.RESULT_EVENT:
        mark("event_posted", _operation.get())
    return answer


worker.WorkerConversation.current = _timed_current_conversation  # type: ignore[method-assign]
directline_client.DirectLineClient.post_event = _timed_post_event  # type: ignore[method-assign]

_handle_operation = worker.handle_operation_message


async def _timed_handle_operation(*args: Any, **kwargs: Any) -> Any:
    outcome = await _handle_operation(*args, **kwargs)
    mark("worker_done", _operation.get())
    return outcome


worker.handle_operation_message = _timed_handle_operation

# The one FunctionApp the host indexes: the project's own (imported last, after the wrappers).
from function_app import app  # noqa: E402

__all__ = ["app"]
