"""python -m localdev.directline: run the local Direct Line until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from collections.abc import Sequence

from localdev.directline.server import DirectLineServer


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m localdev.directline", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7072, help="0 picks a free port")
    parser.add_argument("--bot-endpoint", default="http://127.0.0.1:7071/api/messages")
    parser.add_argument("--secret", required=True, help="the Direct Line secret clients authenticate with")
    parser.add_argument(
        "--handoff-signing-key", help="the bot's HandoffSigningKey: the agent console signs handoff.status with it"
    )
    parser.add_argument("--console-key", help="the agent console's key (default: a random one, printed)")
    parser.add_argument("--public-url", help="base URL clients and the bot use (default http://HOST:PORT/)")
    parser.add_argument("--bot-id", default="bot")
    parser.add_argument("--bot-name", default="Bot")
    parser.add_argument("--token-ttl", type=int, default=1800, help="token lifetime, seconds")
    parser.add_argument("--bot-timeout", type=float, default=15.0, help="seconds to wait for the bot's answer")
    parser.add_argument("--max-activities", type=int, default=1000, help="kept per conversation")
    parser.add_argument(
        "--max-stored-activities",
        type=int,
        default=200_000,
        help="all conversations together; beyond it the least recently used idle ones go early",
    )
    parser.add_argument("--idle-minutes", type=float, default=120.0, help="minutes before an idle conversation goes")
    parser.add_argument(
        "--token-endpoint",
        help="where the Web Chat page gets a token: POST {} or {userId, userProof} -> {token, userId, userProof} "
        "(the app's /api/directline/token)",
    )
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    server = DirectLineServer(
        args.bot_endpoint,
        args.secret,
        args.host,
        args.port,
        public_url=args.public_url,
        bot_id=args.bot_id,
        bot_name=args.bot_name,
        token_ttl=args.token_ttl,
        bot_timeout=args.bot_timeout,
        max_activities=args.max_activities,
        max_stored_activities=args.max_stored_activities,
        idle_ttl=args.idle_minutes * 60,
        token_endpoint=args.token_endpoint,
        handoff_signing_key=args.handoff_signing_key,
        console_key=args.console_key,
    )
    await server.start()
    print(f"Direct Line listening on {server.domain}", flush=True)
    print(f"Web Chat: {server.url}", flush=True)
    # A line of its own, after the two above (scripts read those by position); it carries the console key.
    print(f"Agent console: {server.agent_console_url}", flush=True)
    if not args.handoff_signing_key:
        print("No --handoff-signing-key: the agent console cannot send handoff.status to the bot.", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await server.stop()


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
