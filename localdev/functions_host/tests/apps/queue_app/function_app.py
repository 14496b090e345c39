"""Queue test app: every invocation is recorded as a JSON file under RECORD_DIR/<function>/."""

import asyncio
import json
import os
import threading
import uuid
from pathlib import Path

import azure.functions as func

# Read at import time on purpose: the host must load settings before importing the app.
RECORD_DIR = Path(os.environ["RECORD_DIR"])
_batch_barrier = threading.Barrier(int(os.environ.get("BATCH_SIZE", "4")), timeout=10)

app = func.FunctionApp()


def record(function: str, msg: func.QueueMessage, **extra: object) -> None:
    folder = RECORD_DIR / function
    folder.mkdir(parents=True, exist_ok=True)
    data = {
        "id": msg.id,
        "body": msg.get_body().decode("utf-8", errors="replace"),
        "dequeue_count": msg.dequeue_count,
        "insertion_time": msg.insertion_time.isoformat() if msg.insertion_time else None,
        "expiration_time": msg.expiration_time.isoformat() if msg.expiration_time else None,
        "pop_receipt": msg.pop_receipt,
        "type": type(msg).__name__,
        "is_func_queue_message": isinstance(msg, func.QueueMessage),
        **extra,
    }
    temporary = folder / f".{uuid.uuid4().hex}.tmp"
    temporary.write_text(json.dumps(data))
    temporary.rename(folder / f"{uuid.uuid4().hex}.json")  # atomic: readers never see half a file


@app.queue_trigger(arg_name="msg", queue_name="%OrdersQueue%", connection="AzureWebJobsStorage")
def orders(msg: func.QueueMessage) -> None:
    record("orders", msg)


@app.queue_trigger(arg_name="message", queue_name="%FailQueue%", connection="AzureWebJobsStorage")
async def always_fails(message: func.QueueMessage) -> None:
    record("always_fails", message)
    raise RuntimeError("this function always fails")


@app.queue_trigger(arg_name="msg", queue_name="%BatchQueue%", connection="Storage")
def batch(msg: func.QueueMessage) -> None:
    # All messages of one batch must be processed at once, or the barrier breaks.
    _batch_barrier.wait()
    record("batch", msg)


@app.queue_trigger(arg_name="msg", queue_name="%SlowQueue%", connection="AzureWebJobsStorage")
async def slow(msg: func.QueueMessage) -> None:
    record("slow_started", msg)
    await asyncio.sleep(float(os.environ.get("SLOW_SECONDS", "3")))
    record("slow_done", msg)
