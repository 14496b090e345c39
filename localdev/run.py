"""`make run`: the whole bot on this machine — Azurite, the Cosmos DB stand-in, the Functions
app (with `func start` when Core Tools are installed, the local host otherwise) and the local
Direct Line with Web Chat, on fixed ports, as localdev/stack.py starts them. This script adds the
banner and stops everything on Ctrl-C (or SIGTERM to the process group) or when a child dies."""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import threading
from pathlib import Path

from localdev.processes import PROJECT_ROOT
from localdev.settings_file import DEFAULT_SETTINGS_FILE, create_local_settings
from localdev.stack import LocalStack, Ports, start_stack

LOG_DIR = PROJECT_ROOT / ".localdev" / "logs"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="make run", description=__doc__)
    parser.add_argument("--functions-port", type=int, default=7071)
    parser.add_argument("--directline-port", type=int, default=7072)
    parser.add_argument("--cosmos-port", type=int, default=8081)
    parser.add_argument("--azurite-queue-port", type=int, default=10001)
    parser.add_argument("--use-local-host", action="store_true", help="even when `func` is installed")
    parser.add_argument(
        "--settings-file", type=Path, default=DEFAULT_SETTINGS_FILE, help="created from the sample if missing"
    )
    parser.add_argument("--log-dir", type=Path, default=LOG_DIR)
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    create_local_settings(args.settings_file)
    # `func start` reads local.settings.json from the project root: only that file goes with it.
    use_func = bool(shutil.which("func")) and not args.use_local_host and args.settings_file == DEFAULT_SETTINGS_FILE
    if use_func:
        print("Azure Functions Core Tools found: starting `func start`.")
    else:
        print("Azure Functions Core Tools not found: starting the project's local Functions host.")
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stack: LocalStack | None = None
    try:
        stack = start_stack(
            args.log_dir,
            settings_file=args.settings_file,
            use_func=use_func,
            ports=Ports(args.functions_port, args.directline_port, args.cosmos_port, args.azurite_queue_port),
        )
        print_banner(stack, args.log_dir)
        while not stop.wait(1.0):
            if (process := stack.exited()) is not None:
                print(f"{process.name} stopped (exit {process.popen.returncode}); see {process.log_path}")
                return 1
        return 0
    except (RuntimeError, TimeoutError) as error:
        print(f"make run: {error}", file=sys.stderr)
        print(f"Logs: {args.log_dir}", file=sys.stderr)
        return 1
    finally:
        if stack is not None:
            print("Stopping the local stack...")
            stack.stop()


def print_banner(stack: LocalStack, log_dir: Path) -> None:
    print(
        "\n"
        "The bot is running.\n"
        f"  Chat in your browser (Web Chat):   {stack.directline.url}\n"
        f"  Chat in this terminal:             .venv/bin/python -m localdev.chat_cli "
        f"--directline {stack.directline.domain} --secret={stack.secret}\n"
        f"  Bot messaging endpoint:            {stack.messages_url}\n"
        f"  Direct Line (client API):          {stack.directline.domain}\n"
        f"  Logs:                              {log_dir}/\n"
        "Press Ctrl-C to stop everything.\n",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
