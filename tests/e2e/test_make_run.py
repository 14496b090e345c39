"""`make run`'s script: starts the whole stack on the given ports, a Direct Line client can chat
with the bot, and SIGTERM to its process group stops everything it started."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from localdev.processes import PROJECT_ROOT, free_port
from localdev.settings_file import create_local_settings, read_values

pytestmark = pytest.mark.emulators


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_run_starts_everything_answers_and_stops_on_sigterm(tmp_path: Path) -> None:
    settings_file = create_local_settings(tmp_path / "local.settings.json")
    secret = read_values(settings_file)["DirectLineSecret"]
    ports = {name: free_port() for name in ("functions", "directline", "cosmos", "azurite-queue")}
    argv = [sys.executable, "-u", "-m", "localdev.run", "--use-local-host", "--settings-file", str(settings_file)]
    argv += ["--log-dir", str(tmp_path / "logs")]
    for name, port in ports.items():
        argv += [f"--{name}-port", str(port)]
    process = subprocess.Popen(
        argv, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if "Press Ctrl-C to stop everything." in line:
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        assert ready.wait(120), "".join(lines)
        banner = "".join(lines)
        assert f"http://127.0.0.1:{ports['directline']}/" in banner  # where to chat

        base = f"http://127.0.0.1:{ports['directline']}/v3/directline"
        auth = {"Authorization": f"Bearer {secret}"}
        conversation = requests.post(f"{base}/conversations", json={"user": {"id": "u1"}}, headers=auth, timeout=10)
        assert conversation.status_code == 201
        conversation_id, token = conversation.json()["conversationId"], conversation.json()["token"]
        sent = requests.post(
            f"{base}/conversations/{conversation_id}/activities",
            json={"type": "message", "from": {"id": "u1"}, "text": "Ada"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        assert sent.status_code == 200
        # The bot answered within its turn, so its replies are stored by the time the send returns.
        polled = requests.get(
            f"{base}/conversations/{conversation_id}/activities",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        ).json()
        texts = [a.get("text", "") for a in polled["activities"] if a.get("from", {}).get("role") == "bot"]
        assert "Nice to meet you, Ada! I'll remember your name." in texts
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        assert process.wait(60) == 0
    deadline = time.monotonic() + 10
    while any(listening(port) for port in ports.values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [name for name, port in ports.items() if listening(port)], "something it started still listens"
