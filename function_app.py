"""The Azure Functions app (Python v2 model). A thin face: each function turns its binding
into plain data and calls a handler with the dependencies bootstrap.py built for it. Heavy SDKs
are imported on first use, not here, to keep cold starts short."""

import azure.functions as func

from bootstrap import composition
from handlers.http_types import HttpRequestData, HttpResponseData

# Read the settings now: a missing or malformed one stops the app at start-up, naming it.
composition()

# A new HTTP function needs a function key unless it says otherwise: only the routes that authenticate
# their callers another way (the Bot Framework JWT, the browser's token exchange) or say nothing
# private (health) are anonymous.
app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


def _request_data(req: func.HttpRequest) -> HttpRequestData:
    return HttpRequestData(
        method=req.method,
        headers={name.lower(): value for name, value in req.headers.items()},
        body=req.get_body(),
    )


def _http_response(response: HttpResponseData) -> func.HttpResponse:
    return func.HttpResponse(
        body=response.body_bytes(),
        status_code=response.status,
        headers=response.headers,
        mimetype="application/json",
    )


@app.function_name("messages")
@app.route(route="messages", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
async def messages(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    # Anonymous at the Functions level: the Bot Framework JWT is the authentication. The host's trace
    # context parents the turn's span (services/telemetry.py).
    from handlers.messages import handle_messages

    trace_parent = context.trace_context.trace_parent
    return _http_response(await handle_messages(_request_data(req), composition().messages, trace_parent))


@app.function_name("operations_worker")
@app.queue_trigger(arg_name="message", queue_name="%OperationsQueueName%", connection="AzureWebJobsStorage")
async def operations_worker(message: func.QueueMessage, context: func.Context) -> None:
    # Raising (RetryOperation) leaves the message to the queue's retries and, at the end, its poison queue.
    from handlers.operations_worker import handle_operation_message
    from handlers.queue_types import QueueMessageData

    data = QueueMessageData(id=message.id or "", body=message.get_body(), dequeue_count=message.dequeue_count or 1)
    await handle_operation_message(data, composition().worker, context.trace_context.trace_parent)


@app.function_name("sweeper")
@app.timer_trigger(arg_name="timer", schedule="%SweepSchedule%", run_on_startup=False, use_monitor=True)
async def sweeper(timer: func.TimerRequest) -> None:
    from handlers.sweeper import handle_sweep

    await handle_sweep(composition().sweeper)


@app.function_name("transcripts")
@app.route(route="transcripts/{conversationId}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
async def transcripts(req: func.HttpRequest) -> func.HttpResponse:
    # A function key is required: transcripts hold what users wrote.
    from handlers.transcripts import handle_get_transcript

    conversation_id = req.route_params.get("conversationId", "")
    query = dict(req.params)  # pageSize, continuationToken
    return _http_response(await handle_get_transcript(conversation_id, composition().transcript_reading, query))


@app.function_name("transcript_cleanup")
@app.timer_trigger(arg_name="timer", schedule="0 17 * * * *", run_on_startup=False, use_monitor=True)
async def transcript_cleanup(timer: func.TimerRequest) -> None:
    # Hourly: deletes transcript entries older than TranscriptRetentionDays.
    from handlers.transcripts import handle_transcript_cleanup

    await handle_transcript_cleanup(composition().transcript_cleanup)


@app.function_name("notify")
@app.route(route="notify", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
async def notify(req: func.HttpRequest) -> func.HttpResponse:
    # An outside system tells users something (the pizza is ready); the function key authenticates it.
    from handlers.notifications import handle_notify_request

    return _http_response(await handle_notify_request(_request_data(req), composition().notify))


@app.function_name("external_events")
@app.queue_trigger(arg_name="message", queue_name="%ExternalEventsQueueName%", connection="AzureWebJobsStorage")
async def external_events(message: func.QueueMessage) -> None:
    # Notifications from outside events, put on the queue directly or by `notify`; raising leaves the
    # message to the queue's retries and, at the end, its poison queue.
    from handlers.notifications import handle_external_event
    from handlers.queue_types import QueueMessageData

    data = QueueMessageData(id=message.id or "", body=message.get_body(), dequeue_count=message.dequeue_count or 1)
    await handle_external_event(data, composition().external_events)


@app.function_name("directline_token")
@app.route(route="directline/token", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
async def directline_token(req: func.HttpRequest) -> func.HttpResponse:
    # Anonymous: a browser page (Web Chat) calls it; its token is bound to a user id the caller cannot
    # choose (a new one, or one it proves it was given). The app's CORS origins decide which pages may.
    from handlers.directline_token import handle_directline_token

    return _http_response(await handle_directline_token(_request_data(req), composition().directline_token))


@app.function_name("health")
@app.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def health(req: func.HttpRequest) -> func.HttpResponse:
    # Anonymous, for uptime probes: it says only whether Cosmos DB and the queue answer.
    from handlers.health import handle_health

    return _http_response(await handle_health(composition().health))
