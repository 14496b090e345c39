"""The agent console page's own script, run in Node against a stand-in DOM (agent_console_driver.js).

    with AgentConsolePage().start(stack.url) as page:
        page.wait_for(lambda p: p["lists"]["waiting"])
        page.set("agent-name", "Ada")
        page.click("accept")

Each wait blocks on the driver's snapshots with a deadline (never a bare sleep): the driver sends one
whenever what the page shows changes.
"""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from localdev.processes import PROJECT_ROOT

DRIVER = Path(__file__).resolve().parent / "agent_console_driver.js"

Snapshot = dict[str, Any]


class AgentConsolePage:
    def __init__(self, node: str = "node") -> None:
        self.node = node
        self.snapshot: Snapshot = {}  # the latest one
        self.errors: list[str] = []
        self._process: subprocess.Popen[str] | None = None
        self._events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._stderr: deque[str] = deque(maxlen=50)

    def start(self, url: str, console_key: str, timeout: float = 20.0) -> Self:
        """Load <url>agent?key=<console_key> and run its script; returns once the page has drawn its first
        list of handoffs."""
        self._process = subprocess.Popen(
            [self.node, str(DRIVER), "--url", url, "--key", console_key],
            cwd=PROJECT_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        self.wait_for(lambda page: "handoff(s)" in page["elements"]["connection"]["text"], timeout)
        return self

    def close(self, timeout: float = 5.0) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            try:
                assert process.stdin is not None
                process.stdin.write(json.dumps({"cmd": "end"}) + "\n")
                process.stdin.close()
            except (BrokenPipeError, OSError):
                pass
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    # --- acting on the page ----------------------------------------------------------------------------
    def set(self, element_id: str, value: str) -> None:
        self._command({"cmd": "set", "id": element_id, "value": value})

    def click(self, element_id: str) -> None:
        self._command({"cmd": "click", "id": element_id})

    def submit(self, element_id: str) -> None:
        self._command({"cmd": "submit", "id": element_id})

    def select(self, conversation_id: str) -> None:
        self._command({"cmd": "select", "conversationId": conversation_id})

    def element(self, element_id: str) -> dict[str, Any]:
        element: dict[str, Any] = self.snapshot["elements"][element_id]
        return element

    def _command(self, command: dict[str, Any]) -> None:
        process = self._process
        if process is None or process.poll() is not None or process.stdin is None:
            raise AssertionError(f"the page driver is not running; {self._diagnostics()}")
        process.stdin.write(json.dumps(command) + "\n")
        process.stdin.flush()

    # --- waiting ---------------------------------------------------------------------------------------
    def wait_for(self, predicate: Callable[[Snapshot], bool], timeout: float = 10.0) -> Snapshot:
        """The first snapshot (the latest one included) that satisfies `predicate`."""
        deadline = time.monotonic() + timeout
        while not (self.snapshot and predicate(self.snapshot)):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"the page did not get there in {timeout}s; {self._diagnostics()}")
            try:
                event = self._events.get(timeout=remaining)
            except queue.Empty:
                continue
            if event is None:
                self._events.put(None)
                raise AssertionError(f"the page driver exited; {self._diagnostics()}")
            if event.get("event") == "snapshot":
                self.snapshot = event["page"]
            elif event.get("event") == "error":
                self.errors.append(str(event.get("message")))
        return self.snapshot

    def _diagnostics(self) -> str:
        code = self._process.poll() if self._process else None
        latest = json.dumps(self.snapshot)[:2000]
        return f"exit code {code}, errors {self.errors}, stderr {list(self._stderr)[-10:]}, latest snapshot {latest}"

    def _read_stdout(self) -> None:
        process = self._process
        assert process is not None and process.stdout is not None
        for line in process.stdout:
            try:
                self._events.put(json.loads(line))
            except ValueError:
                self._stderr.append(f"(stdout, not JSON) {line.rstrip()}")
        self._events.put(None)

    def _read_stderr(self) -> None:
        process = self._process
        assert process is not None and process.stderr is not None
        for line in process.stderr:
            self._stderr.append(line.rstrip())
