"""Chat with the bot from a terminal through a Direct Line service (the local one or Azure's).

    python -m localdev.chat_cli --directline http://127.0.0.1:7072/v3/directline --secret SECRET
    python -m localdev.chat_cli --directline URL --token TOKEN [--polling] [--user-id dl_alice]

Type a line to send it; bot messages print as they arrive (over the WebSocket, or by polling).
Each person is a user of their own: without --user-id, the first run makes a `dl_` id and keeps it
in ~/.config/long-operation-bot/chat-user-id (or under $XDG_CONFIG_HOME), so later runs are the same
user and the bot still knows their name.
EOF (Ctrl-D) or Ctrl-C quits; after EOF, replies still on their way are printed first.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, TextIO

import aiohttp

Activity = dict[str, Any]
TYPING_SHOWN_FOR = 3.0  # seconds a "typing" line stays when no message follows


def describe_event(activity: Activity) -> str:
    """An event in words, not its JSON: the handoff events a user's conversation carries, by name."""
    value = activity.get("value") if isinstance(activity.get("value"), dict) else {}
    name = activity.get("name") or "event"
    if name == "handoff.initiate":
        reason = value.get("reason")
        return "asked for a person to take over" + (f": {reason}" if isinstance(reason, str) and reason else "")
    if name == "handoff.status":
        payload = value.get("payload")
        if isinstance(payload, str):  # a hub's signed status: its fields are in the signed JSON text
            with contextlib.suppress(ValueError):
                signed = json.loads(payload)
                value = signed if isinstance(signed, dict) else value
        state = value.get("state")
        return f"handoff {state}" if isinstance(state, str) else "handoff status"
    return f"event {name}"


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "long-operation-bot"


def own_user_id() -> str:
    """This person's user id, made once and kept between runs."""
    path = config_dir() / "chat-user-id"
    with contextlib.suppress(OSError):
        saved = path.read_text().strip()
        if saved.startswith("dl_"):
            return saved
    user_id = f"dl_{secrets.token_hex(16)}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(user_id + "\n")
    return user_id


class Console:
    """Prints bot activities; on a terminal a typing indicator is a transient status line."""

    def __init__(self, user_id: str, out: TextIO = sys.stdout) -> None:
        self.user_id = user_id
        self.out = out
        self.tty = out.isatty()
        self._typing_clear: asyncio.TimerHandle | None = None
        self.arrived = asyncio.Event()  # set whenever an activity arrives

    def show(self, activity: Activity) -> None:
        self.arrived.set()
        if (activity.get("from") or {}).get("id") == self.user_id:
            return  # our own echo
        name = (activity.get("from") or {}).get("name") or (activity.get("from") or {}).get("id") or "bot"
        kind = activity.get("type")
        if kind == "typing":
            self._show_typing(name)
            return
        self._clear_typing()
        if kind == "message":
            text = activity.get("text") or ""
            extras = [f"[{a.get('contentType', 'attachment')}]" for a in activity.get("attachments") or []]
            actions = (activity.get("suggestedActions") or {}).get("actions") or []
            if actions:
                extras.append("options: " + " | ".join(str(a.get("title") or a.get("value")) for a in actions))
            self._print(f"{name}> " + " ".join(part for part in [text, *extras] if part))
        elif kind == "event":
            self._print(f"{name}> ({describe_event(activity)})")

    def _show_typing(self, name: str) -> None:
        if self.tty:
            self.out.write(f"\r\033[K({name} is typing…)")
            self.out.flush()
        else:
            self._print(f"({name} is typing…)")
        if self._typing_clear is not None:
            self._typing_clear.cancel()
        self._typing_clear = asyncio.get_running_loop().call_later(TYPING_SHOWN_FOR, self._clear_typing)

    def _clear_typing(self) -> None:
        if self._typing_clear is not None:
            self._typing_clear.cancel()
            self._typing_clear = None
            if self.tty:
                self.out.write("\r\033[K")
                self.out.flush()

    def _print(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()


class DirectLineChat:
    def __init__(self, session: aiohttp.ClientSession, domain: str, credential: str, user_id: str) -> None:
        self.session = session
        self.domain = domain.rstrip("/")
        self.headers = {"Authorization": f"Bearer {credential}"}
        self.user_id = user_id
        self.conversation: dict[str, Any] = {}
        self.watermark = ""

    async def start(self) -> None:
        async with self.session.post(
            f"{self.domain}/conversations", headers=self.headers, json={"user": {"id": self.user_id}}
        ) as response:
            response.raise_for_status()
            self.conversation = await response.json()
        # From here on use the conversation's token (it also works when we started with a token).
        self.headers = {"Authorization": f"Bearer {self.conversation['token']}"}

    async def send(self, text: str) -> None:
        activity = {"type": "message", "text": text, "from": {"id": self.user_id, "role": "user"}}
        url = f"{self.domain}/conversations/{self.conversation['conversationId']}/activities"
        async with self.session.post(url, headers=self.headers, json=activity) as response:
            if response.status >= 400:
                body = await response.text()
                print(f"! send failed ({response.status}): {body}", file=sys.stderr)

    async def stream(self, console: Console) -> None:
        async with self.session.ws_connect(self.conversation["streamUrl"], heartbeat=20.0) as socket:
            async for message in socket:
                if message.type == aiohttp.WSMsgType.TEXT and message.data:
                    for activity in json.loads(message.data).get("activities") or []:
                        console.show(activity)

    async def poll(self, console: Console, interval: float) -> None:
        url = f"{self.domain}/conversations/{self.conversation['conversationId']}/activities"
        while True:
            async with self.session.get(url, headers=self.headers, params={"watermark": self.watermark}) as response:
                response.raise_for_status()
                page = await response.json()
            self.watermark = page.get("watermark") or self.watermark
            for activity in page.get("activities") or []:
                console.show(activity)
            await asyncio.sleep(interval)


async def read_lines(stream: TextIO) -> AsyncIterator[str]:
    """stdin lines without blocking the loop (a thread read works for terminals, pipes and files)."""
    while line := await asyncio.to_thread(stream.readline):
        yield line.rstrip("\n")


async def chat(args: argparse.Namespace) -> None:
    async with aiohttp.ClientSession() as session:
        client = DirectLineChat(session, args.directline, args.secret or args.token, args.user_id)
        await client.start()
        console = Console(args.user_id)
        print(f"Connected: conversation {client.conversation['conversationId']}. Type to chat, Ctrl-D to quit.",
              file=sys.stderr)  # fmt: skip
        receiving = client.poll(console, args.poll_interval) if args.polling else client.stream(console)
        receiver = asyncio.create_task(receiving)
        try:
            async for line in read_lines(sys.stdin):
                if line.strip():
                    await client.send(line)
            # EOF: replies to the last line are already stored; print them until it has been quiet for --linger s.
            while not receiver.done():
                console.arrived.clear()
                try:
                    await asyncio.wait_for(console.arrived.wait(), args.linger)
                except TimeoutError:
                    break
        finally:
            receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await receiver


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m localdev.chat_cli", description=__doc__.split("\n\n")[0])
    parser.add_argument("--directline", default="http://127.0.0.1:7072/v3/directline", help="the client API base URL")
    credential = parser.add_mutually_exclusive_group(required=True)
    credential.add_argument("--secret")
    credential.add_argument("--token")
    parser.add_argument("--user-id", help="default: this person's own id, made on the first run and kept")
    parser.add_argument("--polling", action="store_true", help="poll instead of using the WebSocket")
    parser.add_argument("--poll-interval", type=float, default=1.0)
    parser.add_argument("--linger", type=float, default=1.5, help="after EOF, seconds of quiet before exiting")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    args.user_id = args.user_id or own_user_id()
    try:
        asyncio.run(chat(args))
    except KeyboardInterrupt:
        return 130
    except aiohttp.ClientError as exc:
        print(f"Direct Line error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
