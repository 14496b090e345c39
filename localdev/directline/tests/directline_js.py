"""Microsoft's Direct Line client (botframework-directlinejs) in a Node subprocess, for tests that chat.

    client = DirectLineJsClient().start(domain, secret=SECRET, mode="websocket", user_id="alice")
    mark = client.mark()
    client.send("hello")
    reply = client.wait_for_activity(lambda a: a.get("from", {}).get("role") == "bot", since=mark)
    client.close()

Everything is synchronous: each wait blocks on the driver's stdout with a deadline (never a bare
sleep), so the servers under test must run in another thread or process (see
localdev.directline.start_directline_process). The protocol of the driver is described at the
top of directline_driver.js, beside this file.
"""

from __future__ import annotations

import itertools
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

DRIVER = Path(__file__).resolve().parent / "directline_driver.js"
ONLINE = 2  # ConnectionStatus.Online in botframework-directlinejs

Activity = dict[str, Any]
_EOF: dict[str, Any] = {"event": "eof"}


class DirectLineJsError(AssertionError):
    """The driver reported an error, exited, or a wait ran out of time."""


class DirectLineJsClient:
    """A running driver. Read state through `activities`, `statuses`, `posted` and `errors`.

    All state is updated in the caller's thread, while it waits: the reader threads only queue lines.
    """

    def __init__(self, node: str = "node", driver: Path = DRIVER) -> None:
        self.node = node
        self.driver = driver
        self.activities: list[Activity] = []  # every activity from activity$, in arrival order
        self.statuses: list[int] = []  # connectionStatus$ values
        self.posted: dict[str, str] = {}  # ref -> activity id answered by postActivity
        self.errors: list[dict[str, Any]] = []  # error events, as emitted
        self.sockets: list[dict[str, Any]] = []  # WebSocket opens and closes (code, reason), in order
        self._process: subprocess.Popen[str] | None = None
        self._events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._stderr: deque[str] = deque(maxlen=50)
        self._refs = itertools.count(1)

    # --- life cycle ------------------------------------------------------------------------------
    def start(
        self,
        domain: str,
        secret: str | None = None,
        mode: str = "websocket",
        user_id: str = "user1",
        *,
        token: str | None = None,
        user_name: str | None = None,
        polling_interval_ms: int = 200,
        conversation_id: str | None = None,
        retry_delay_ms: int | None = None,
        wait_online: bool = True,
        timeout: float = 20.0,
    ) -> Self:
        """Launch the client against `domain` (…/v3/directline) with a secret or a token.

        mode is "websocket" or "polling". conversation_id resumes that conversation (a second tab);
        retry_delay_ms replaces the client's 3-15 s wait before reconnecting a closed WebSocket.
        With wait_online the call returns once the client reports Online (it has started the conversation).
        """
        if (secret is None) == (token is None):
            raise ValueError("pass exactly one of secret and token")
        argv = [self.node, str(self.driver), "--domain", domain, "--mode", mode, "--user-id", user_id]
        argv += ["--secret", secret] if secret is not None else ["--token", str(token)]
        argv += ["--polling-interval", str(polling_interval_ms)]
        if user_name:
            argv += ["--user-name", user_name]
        if conversation_id:
            argv += ["--conversation-id", conversation_id]
        if retry_delay_ms is not None:
            argv += ["--retry-delay-ms", str(retry_delay_ms)]
        self._process = subprocess.Popen(
            argv,
            cwd=PROJECT_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        if wait_online:
            self.wait_for_status(ONLINE, timeout)
        return self

    def close(self, timeout: float = 5.0) -> None:
        """End the client (`end` command) and wait for the process; kill it if it lingers."""
        process = self._process
        if process is None:
            return
        self._process = None
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

    # --- sending -------------------------------------------------------------------------------------
    def send(self, text: str, wait: bool = True, timeout: float = 20.0, **extra: Any) -> str:
        """Post a message (extra: channelData, locale). Returns the ref; with wait, the id the server gave.

        postActivity answers after the bot's turn, so with wait the bot's replies are already stored.
        """
        return self._command({"cmd": "send", "text": text, **extra}, wait, timeout)

    def send_event(self, name: str, value: Any = None, wait: bool = True, timeout: float = 20.0) -> str:
        """Post an event activity (type "event", `name`, `value`)."""
        return self._command({"cmd": "sendEvent", "name": name, "value": value}, wait, timeout)

    def send_activity(self, activity: Activity, wait: bool = True, timeout: float = 20.0) -> str:
        """Post any activity; `from` defaults to this client's user."""
        return self._command({"cmd": "sendActivity", "activity": activity}, wait, timeout)

    def _command(self, command: dict[str, Any], wait: bool, timeout: float) -> str:
        process = self._require_process()
        ref = f"r{next(self._refs)}"
        assert process.stdin is not None
        process.stdin.write(json.dumps({**command, "ref": ref}) + "\n")
        process.stdin.flush()
        if not wait:
            return ref
        self._wait(lambda: ref in self.posted or any(e.get("ref") == ref for e in self.errors), timeout, f"post {ref}")
        if ref not in self.posted:
            raise DirectLineJsError(f"post failed: {[e for e in self.errors if e.get('ref') == ref]}")
        return self.posted[ref]

    # --- waiting -------------------------------------------------------------------------------------
    def mark(self) -> int:
        """Position in `activities`; pass it as `since` to wait only for activities that arrive later."""
        return len(self.activities)

    def wait_for_activity(
        self, predicate: Callable[[Activity], bool], timeout: float = 10.0, since: int = 0
    ) -> Activity:
        """The first activity at or after index `since` that satisfies `predicate`, waiting up to `timeout` s."""
        found: list[Activity] = []

        def check() -> bool:
            found.extend(a for a in self.activities[since:] if predicate(a))
            return bool(found)

        self._wait(check, timeout, "a matching activity")
        return found[0]

    def wait_for_text(self, text: str, timeout: float = 10.0, since: int = 0) -> Activity:
        """A bot message whose text contains `text`."""
        return self.wait_for_activity(
            lambda a: (
                a.get("type") == "message"
                and (a.get("from") or {}).get("role") == "bot"
                and text in (a.get("text") or "")
            ),
            timeout,
            since,
        )

    def wait_for_status(self, status: int, timeout: float = 10.0) -> None:
        self._wait(lambda: status in self.statuses, timeout, f"connection status {status}")

    def wait_for_socket_close(self, reason: str, timeout: float = 10.0, since: int = 0) -> dict[str, Any]:
        """The first WebSocket close at or after index `since` of `sockets` with this reason."""

        def closed() -> list[dict[str, Any]]:
            return [s for s in self.sockets[since:] if s.get("state") == "close" and s.get("reason") == reason]

        self._wait(lambda: bool(closed()), timeout, f"a WebSocket closed with reason {reason!r}")
        return closed()[0]

    def bot_messages(self) -> list[Activity]:
        return [a for a in self.activities if a.get("type") == "message" and (a.get("from") or {}).get("role") == "bot"]

    def _wait(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DirectLineJsError(f"timed out after {timeout}s waiting for {what}; {self._diagnostics()}")
            try:
                event = self._events.get(timeout=remaining)
            except queue.Empty:
                continue
            if event is _EOF:
                self._events.put(_EOF)  # keep reporting the exit to later waits
                if not condition():
                    raise DirectLineJsError(f"the driver exited while waiting for {what}; {self._diagnostics()}")
                return
            self._apply(event)

    def _apply(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "activity":
            self.activities.append(event["activity"])
        elif kind == "status":
            self.statuses.append(int(event["status"]))
        elif kind == "posted":
            self.posted[str(event.get("ref"))] = str(event.get("id"))
        elif kind == "error":
            self.errors.append(event)
        elif kind == "socket":
            self.sockets.append(event)

    def _diagnostics(self) -> str:
        code = self._process.poll() if self._process else None
        return (
            f"exit code {code}, statuses {self.statuses}, errors {self.errors[-5:]}, "
            f"{len(self.activities)} activities, stderr tail: {list(self._stderr)[-10:]}"
        )

    def _require_process(self) -> subprocess.Popen[str]:
        if self._process is None or self._process.poll() is not None:
            raise DirectLineJsError(f"the driver is not running; {self._diagnostics()}")
        return self._process

    # --- reader threads: they only queue ---------------------------------------------------------
    def _read_stdout(self) -> None:
        process = self._process
        assert process is not None and process.stdout is not None
        for line in process.stdout:
            try:
                self._events.put(json.loads(line))
            except ValueError:
                self._stderr.append(f"(stdout, not JSON) {line.rstrip()}")
        self._events.put(_EOF)

    def _read_stderr(self) -> None:
        process = self._process
        assert process is not None and process.stderr is not None
        for line in process.stderr:
            self._stderr.append(line.rstrip())
