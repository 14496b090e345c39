"""`make run`: the whole bot on this machine — Azurite, the Cosmos DB stand-in, the Functions
app (with `func start` when Core Tools are installed, the local host otherwise) and the local
Direct Line with Web Chat. Ctrl-C (or SIGTERM to the process group) stops all of it."""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import threading
from pathlib import Path
from urllib.parse import urlparse

from localdev.emulators import Azurite, CosmosStandIn, start_azurite, start_cosmos
from localdev.processes import PROJECT_ROOT, ManagedProcess, spawn, wait_for_port
from localdev.settings_file import DEFAULT_SETTINGS_FILE, create_local_settings, read_values

LOG_DIR = PROJECT_ROOT / ".localdev" / "logs"
LOCAL_HOSTS = {"127.0.0.1", "localhost"}


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


def local_overrides(values: dict[str, str], azurite: Azurite, cosmos: CosmosStandIn, directline: str) -> dict[str, str]:
    """Point the app at the stack this command started, unless local.settings.json names remote services."""
    overrides: dict[str, str] = {}
    if values.get("AzureWebJobsStorage", "").startswith("UseDevelopmentStorage") or "127.0.0.1" in values.get(
        "AzureWebJobsStorage", ""
    ):
        overrides["AzureWebJobsStorage"] = azurite.connection_string
    if urlparse(values.get("CosmosDbEndpoint", "")).hostname in LOCAL_HOSTS:
        overrides["CosmosDbEndpoint"] = cosmos.endpoint
    if urlparse(values.get("DirectLineEndpoint", "")).hostname in LOCAL_HOSTS:
        overrides["DirectLineEndpoint"] = directline
    return overrides


def start_functions(
    port: int, overrides: dict[str, str], use_local_host: bool, settings_file: Path, log_dir: Path
) -> ManagedProcess:
    func = shutil.which("func")
    if func and not use_local_host and settings_file == DEFAULT_SETTINGS_FILE:
        import os

        print("Azure Functions Core Tools found: starting `func start`.")
        process = spawn("functions", [func, "start", "--port", str(port)], log_dir, env={**os.environ, **overrides})
    else:
        print("Azure Functions Core Tools not found: starting the project's local Functions host.")
        argv = [sys.executable, "-u", "-m", "localdev.functions_host"]
        argv += ["--app-dir", str(PROJECT_ROOT), "--port", str(port), "--settings-file", str(settings_file)]
        for name, value in overrides.items():
            argv += ["--setting", f"{name}={value}"]
        process = spawn("functions", argv, log_dir)
    wait_for_port("127.0.0.1", port, 90, process.popen)
    return process


def main() -> int:
    args = parse_args()
    create_local_settings(args.settings_file)
    values = read_values(args.settings_file)
    log_dir: Path = args.log_dir
    started: list[ManagedProcess] = []
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        azurite = start_azurite(args.azurite_queue_port, log_dir)
        started.append(azurite.process)
        cosmos = start_cosmos(args.cosmos_port, log_dir)
        started.append(cosmos.process)
        directline_base = f"http://127.0.0.1:{args.directline_port}"
        overrides = local_overrides(values, azurite, cosmos, f"{directline_base}/v3/directline")
        started.append(
            start_functions(args.functions_port, overrides, args.use_local_host, args.settings_file, log_dir)
        )
        directline = spawn(
            "directline",
            [
                sys.executable, "-u", "-m", "localdev.directline",
                "--port", str(args.directline_port),
                "--bot-endpoint", f"http://127.0.0.1:{args.functions_port}/api/messages",
                f"--secret={values['DirectLineSecret']}",  # one token: a secret may start with "-"
            ],
            log_dir,
        )  # fmt: skip
        started.append(directline)
        wait_for_port("127.0.0.1", args.directline_port, 30, directline.popen)
        print_banner(args, log_dir, values["DirectLineSecret"])
        while not stop.wait(1.0):
            for process in started:
                if process.popen.poll() is not None:
                    print(f"{process.name} stopped (exit {process.popen.returncode}); see {process.log_path}")
                    return 1
        return 0
    except (RuntimeError, TimeoutError) as error:
        print(f"make run: {error}", file=sys.stderr)
        print(f"Logs: {log_dir}", file=sys.stderr)
        return 1
    finally:
        print("Stopping the local stack...")
        for process in reversed(started):
            process.stop()


def print_banner(args: argparse.Namespace, log_dir: Path, secret: str) -> None:
    web_chat = f"http://127.0.0.1:{args.directline_port}/"
    print(
        "\n"
        "The bot is running.\n"
        f"  Chat in your browser (Web Chat):   {web_chat}\n"
        f"  Chat in this terminal:             .venv/bin/python -m localdev.chat_cli "
        f"--directline http://127.0.0.1:{args.directline_port}/v3/directline --secret={secret}\n"
        f"  Bot messaging endpoint:            http://127.0.0.1:{args.functions_port}/api/messages\n"
        f"  Direct Line (client API):          http://127.0.0.1:{args.directline_port}/v3/directline\n"
        f"  Logs:                              {log_dir}/\n"
        "Press Ctrl-C to stop everything.\n",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
