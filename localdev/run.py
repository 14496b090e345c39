"""`make run`: the whole bot on this machine — Azurite, the Cosmos DB stand-in, the Functions
app (with `func start` when Core Tools are installed, the local host otherwise; with --instances
N, N local hosts behind a round-robin balancer) and the local Direct Line with Web Chat, on fixed
ports, as localdev/stack.py starts them. This script checks the ports first, prints the banner,
and stops everything within a few seconds on Ctrl-C, SIGTERM or a closed terminal (SIGHUP), or
when a child dies; if this script is killed outright, its children die with it."""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import threading
from pathlib import Path
from typing import TextIO

from localdev.processes import PROJECT_ROOT
from localdev.settings_file import DEFAULT_SETTINGS_FILE, create_local_settings
from localdev.stack import LocalStack, PortInUseError, Ports, start_stack

LOG_DIR = PROJECT_ROOT / ".localdev" / "logs"
# Ctrl-C should stop everything within about 3 s: in-flight invocations get this long (a long
# operation is cut short; its queue message would come back, but Azurite keeps nothing anyway).
SHUTDOWN_TIMEOUT = 1.5
MAKE_VARIABLES = {
    "functions": "FUNCTIONS_PORT",
    "directline": "DIRECTLINE_PORT",
    "cosmos": "COSMOS_PORT",
    "azurite_queue": "AZURITE_QUEUE_PORT",
    "azurite_table": "AZURITE_TABLE_PORT",
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="make run", description=__doc__)
    parser.add_argument("--functions-port", type=int, default=7071)
    parser.add_argument("--directline-port", type=int, default=7072)
    parser.add_argument("--cosmos-port", type=int, default=8081)
    parser.add_argument("--azurite-queue-port", type=int, default=10001)
    parser.add_argument("--azurite-table-port", type=int, default=10002)
    parser.add_argument(
        "--instances", type=int, default=1, help="instances of the app behind a round-robin balancer (local host)"
    )
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
    if args.instances < 1:
        print("make run: INSTANCES must be 1 or more", file=sys.stderr)
        return 2
    use_func = (
        bool(shutil.which("func"))
        and not args.use_local_host
        and args.settings_file == DEFAULT_SETTINGS_FILE
        and args.instances == 1
    )
    if use_func:
        print("Azure Functions Core Tools found: starting `func start`.")
    elif args.instances > 1:
        print(f"Starting {args.instances} instances of the app in the project's local Functions host.")
    else:
        print("Azure Functions Core Tools not found: starting the project's local Functions host.")
    stop = threading.Event()
    # SIGHUP: the terminal was closed; stop in order as for Ctrl-C (were this script killed instead,
    # the children would still die with it: localdev/processes.py).
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda *_: stop.set())
    stack: LocalStack | None = None
    try:
        stack = start_stack(
            args.log_dir,
            settings_file=args.settings_file,
            use_func=use_func,
            ports=Ports(
                args.functions_port,
                args.directline_port,
                args.cosmos_port,
                args.azurite_queue_port,
                args.azurite_table_port,
            ),
            instances=args.instances,
            shutdown_timeout=SHUTDOWN_TIMEOUT,
        )
        print_banner(stack, args.log_dir)
        while not stop.wait(1.0):
            if (process := stack.exited()) is not None:
                say(f"{process.name} stopped (exit {process.popen.returncode}); see {process.log_path}")
                return 1
        return 0
    except PortInUseError as error:
        variable = MAKE_VARIABLES[error.part]
        say(
            f"make run: {error}; nothing was started. Stop what uses it, or choose another port: "
            f"make run {variable}=<port> (here: --{error.part.replace('_', '-')}-port).",
            sys.stderr,
        )
        return 1
    except (RuntimeError, TimeoutError) as error:
        say(f"make run: {error}\nLogs: {args.log_dir}", sys.stderr)
        return 1
    finally:
        if stack is not None:
            say("Stopping the local stack...")
            stack.stop()


def say(text: str, stream: TextIO = sys.stdout) -> None:
    """Print, unless the terminal is gone (SIGHUP): stopping must not fail for want of a screen."""
    try:
        print(text, file=stream, flush=True)
    except OSError:
        pass


def scale_out(stack: LocalStack) -> str:
    if stack.balancer is None:
        return ""
    ports = ", ".join(host.base_url.rsplit(":", 1)[1] for host in stack.hosts)
    return f" (round robin over {len(stack.hosts)} instances on ports {ports})"


def keyed_routes(stack: LocalStack) -> str:
    """How to call the functions that need a key (notifications from outside, transcripts)."""
    header = f' -H "x-functions-key: {stack.function_key}"' if stack.function_key else ""
    return (
        f"  Notify a user (outside event):     curl -X POST{header} -H 'Content-Type: application/json' "
        f"""-d '{{"userId": "<user id>", "text": "Your pizza is ready."}}' {stack.functions_url}/api/notify\n"""
        f"  A conversation's transcript:       curl{header} {stack.functions_url}/api/transcripts/<conversation id>\n"
    )


def print_banner(stack: LocalStack, log_dir: Path) -> None:
    say(
        "\n"
        "The bot is running.\n"
        f"  Chat in your browser (Web Chat):   {stack.directline.url}\n"
        f"  Chat in this terminal:             .venv/bin/python -m localdev.chat_cli "
        f"--directline {stack.directline.domain} --secret={stack.secret}\n"
        f"  Bot messaging endpoint:            {stack.messages_url}{scale_out(stack)}\n"
        f"  Direct Line (client API):          {stack.directline.domain}\n"
        f"  Agent console (human handoff):     {stack.directline.agent_console_url}\n"
        f"{keyed_routes(stack)}"
        f"  Logs:                              {log_dir}/\n"
        f"  Traces (a line per span):          grep ' trace ' {log_dir}/functions*.log\n"
        "Press Ctrl-C to stop everything.\n"
    )


if __name__ == "__main__":
    sys.exit(main())
