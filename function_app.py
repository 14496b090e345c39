"""The Azure Functions app (Python v2 model). A thin face: each function turns its binding
into plain data and calls a handler; everything else lives in handlers/, bot_logic/,
operations/ and services/. Heavy SDKs are imported on first use, not here, to keep
cold starts short."""

import logging

import azure.functions as func

from bot_logic.expiry import check_expiry_settings
from handlers.http_types import HttpRequestData
from services.settings import load_settings

# Fail at start-up, naming the setting, rather than on the first message.
_settings = load_settings()
_expiry_warning = check_expiry_settings(
    _settings.expire_after_seconds, _settings.cosmos_time_to_live, _settings.sweep_schedule
)
if _expiry_warning:
    logging.getLogger(__name__).warning(_expiry_warning)
if _settings.local_mode:
    logging.getLogger(__name__).warning(
        "MicrosoftAppId is empty: Bot Framework authentication is off. Fine locally; never deploy so."
    )

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.function_name("messages")
@app.route(route="messages", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
async def messages(req: func.HttpRequest) -> func.HttpResponse:
    # Anonymous at the Functions level: the Bot Framework JWT is the authentication.
    from handlers.messages import handle_messages
    from services.runtime import get_runtime

    request = HttpRequestData(
        method=req.method,
        headers={name.lower(): value for name, value in req.headers.items()},
        body=req.get_body(),
    )
    response = await handle_messages(request, await get_runtime())
    return func.HttpResponse(
        body=response.body_bytes(),
        status_code=response.status,
        headers=response.headers,
        mimetype="application/json",
    )


@app.function_name("operations_worker")
@app.queue_trigger(arg_name="message", queue_name="%OperationsQueueName%", connection="AzureWebJobsStorage")
async def operations_worker(message: func.QueueMessage) -> None:
    # Raising (RetryOperation) leaves the message to the queue's retries and, at the end, its poison queue.
    from handlers.operations_worker import QueueMessageData, handle_operation_message
    from services.runtime import get_worker_dependencies

    data = QueueMessageData(id=message.id or "", body=message.get_body(), dequeue_count=message.dequeue_count or 1)
    await handle_operation_message(data, await get_worker_dependencies())


@app.function_name("sweeper")
@app.timer_trigger(arg_name="timer", schedule="%SweepSchedule%", run_on_startup=False, use_monitor=True)
async def sweeper(timer: func.TimerRequest) -> None:
    from handlers.sweeper import handle_sweep
    from services.runtime import build_sweeper_dependencies, get_runtime

    await handle_sweep(build_sweeper_dependencies(await get_runtime()))
