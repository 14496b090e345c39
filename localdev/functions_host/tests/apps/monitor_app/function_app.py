"""Timers with useMonitor: every invocation is recorded as a JSON file under RECORD_DIR/<function>/."""

import json
import os
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
    }
    temporary = folder / f".{uuid.uuid4().hex}.tmp"
    temporary.write_text(json.dumps(data))
    temporary.rename(folder / f"{uuid.uuid4().hex}.json")


@app.timer_trigger(schedule="0 0 0 1 1 *", arg_name="timer")  # useMonitor is on by default
def yearly(timer: func.TimerRequest) -> None:
    record("yearly", timer)


@app.timer_trigger(schedule="0 0 0 1 1 *", arg_name="timer", run_on_startup=True)
def yearly_on_startup(timer: func.TimerRequest) -> None:
    record("yearly_on_startup", timer)
