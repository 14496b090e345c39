"""Timer test app: every invocation is recorded as a JSON file under RECORD_DIR/<function>/."""

import json
import os
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import azure.functions as func

app = func.FunctionApp()


def record(function: str, timer: func.TimerRequest) -> None:
    folder = Path(os.environ["RECORD_DIR"]) / function
    folder.mkdir(parents=True, exist_ok=True)
    data = {
        "at": datetime.now(UTC).isoformat(),
        "past_due": timer.past_due,
        "schedule_status": timer.schedule_status,
        "schedule": timer.schedule,
        "is_timer_request": isinstance(timer, func.TimerRequest),
        "pid": os.getpid(),  # which instance ran it, when several share RECORD_DIR
    }
    temporary = folder / f".{uuid.uuid4().hex}.tmp"
    temporary.write_text(json.dumps(data))
    temporary.rename(folder / f"{uuid.uuid4().hex}.json")


@app.timer_trigger(schedule="%FastSchedule%", arg_name="timer")
def every_second(timer: func.TimerRequest) -> None:
    record("every_second", timer)


@app.timer_trigger(schedule="00:00:01", arg_name="timer", use_monitor=False)
def interval(timer: func.TimerRequest) -> None:
    record("interval", timer)
    time.sleep(float(os.environ.get("INTERVAL_SLEEP", "0")))  # a run that takes a while


@app.timer_trigger(schedule="0 0 0 1 1 *", arg_name="timer", run_on_startup=True, use_monitor=False)
def on_startup(timer: func.TimerRequest) -> None:
    record("on_startup", timer)
