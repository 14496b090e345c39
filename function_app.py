"""The Azure Functions app (Python v2 model). A thin face: each function turns its binding
into plain data and calls a handler with the dependencies bootstrap.py built for it. Heavy SDKs
are imported on first use, not here, to keep cold starts short."""

import azure.functions as func

from bootstrap import composition
from handlers.http_types import HttpRequestData

# Read the settings now: a missing or malformed one stops the app at start-up, naming it.
composition()

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.function_name("messages")
@app.route(route="messages", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
async def messages(req: func.HttpRequest) -> func.HttpResponse:
    # Anonymous at the Functions level: the Bot Framework JWT is the authentication.
    from handlers.messages import handle_messages

    request = HttpRequestData(
        method=req.method,
        headers={name.lower(): value for name, value in req.headers.items()},
        body=req.get_body(),
    )
    response = await handle_messages(request, composition().messages)
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

    data = QueueMessageData(id=message.id or "", body=message.get_body(), dequeue_count=message.dequeue_count or 1)
    await handle_operation_message(data, composition().worker)


@app.function_name("sweeper")
@app.timer_trigger(arg_name="timer", schedule="%SweepSchedule%", run_on_startup=False, use_monitor=True)
async def sweeper(timer: func.TimerRequest) -> None:
    from handlers.sweeper import handle_sweep

    await handle_sweep(composition().sweeper)
