"""`python -m localdev.functions_host --app-dir DIR`: a local stand-in for `func start`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
from pathlib import Path

from localdev.functions_host.host import FunctionsHost, HostOptions, HostStartupError
from localdev.functions_host.queue_trigger import DEFAULT_MESSAGE_LEASE
from localdev.functions_host.singleton import DEFAULT_RECOVERY_INTERVAL
from localdev.functions_host.telemetry import install_span_lines

log = logging.getLogger("localdev.functions_host")

# Ctrl-C: `func start` is gone within a second or two, since the terminal's SIGINT also ends its
# Python worker, failing whatever runs; give running invocations this long at most.
INTERRUPT_GRACE = 1.0


def _setting(text: str) -> tuple[str, str]:
    name, separator, value = text.partition("=")
    if not separator or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got '{text}'")
    return name, value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m localdev.functions_host", description=__doc__)
    parser.add_argument("--app-dir", type=Path, required=True, help="folder with function_app.py and host.json")
    parser.add_argument(
        "--port",
        type=int,
        help="HTTP port (0: any free port); default local.settings.json Host.LocalHttpPort, else 7071",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on; default 127.0.0.1")
    parser.add_argument("--settings-file", type=Path, help="default: APP_DIR/local.settings.json")
    parser.add_argument(
        "--setting",
        type=_setting,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="app setting applied after the settings file, overriding it and the environment (repeatable)",
    )
    parser.add_argument(
        "--cors",
        help="comma-separated CORS origins, no spaces, as func start's --cors (replaces local.settings.json Host.CORS)",
    )
    parser.add_argument("--function-key", help="key for function/admin-level HTTP functions (default: generated)")
    parser.add_argument(
        "--shutdown-timeout",
        type=float,
        default=10.0,
        help=f"seconds in-flight work may finish on SIGTERM (on Ctrl-C: at most {INTERRUPT_GRACE:g}); default 10",
    )
    parser.add_argument(
        "--queue-message-lease",
        type=int,
        default=DEFAULT_MESSAGE_LEASE,
        help="seconds a received queue message stays invisible (renewed at half); default 600 as the host",
    )
    parser.add_argument(
        "--singleton-lock-dir",
        type=Path,
        help="a folder shared by the app's instances: each timer function runs on one of them at a time",
    )
    parser.add_argument(
        "--singleton-recovery-interval",
        type=float,
        default=DEFAULT_RECOVERY_INTERVAL,
        help="seconds between an instance's attempts to take over a timer another instance holds; default 60",
    )
    parser.add_argument(
        "--timer-status-dir",
        type=Path,
        help="where timers with useMonitor keep their schedule status, so a run missed while the host was "
        "down runs as past due at the next start (the real host keeps it in AzureWebJobsStorage); "
        "default: in memory",
    )
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    return parser.parse_args(argv)


class _UtcFormatter(logging.Formatter):
    converter = time.gmtime

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S", self.converter(record.created)) + f".{int(record.msecs):03d}Z"


def configure_logging(verbose: bool) -> None:
    # One stream (stdout), like func start: host lines and the app's own log records interleave in order.
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(_UtcFormatter("[%(asctime)s] %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    # The storage SDK logs every HTTP request at INFO.
    logging.getLogger("azure").setLevel(logging.WARNING)


async def serve(options: HostOptions) -> int:
    stop = asyncio.Event()
    received: list[int] = []
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if received:  # a second Ctrl-C or SIGTERM: no more waiting
            sys.stdout.flush()
            os._exit(128 + signum)
        received.append(signum)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    host = FunctionsHost(options)
    try:
        await host.start()
    except HostStartupError as error:
        # An exception from the app's own import deserves its traceback, as the worker prints it.
        cause = error.__cause__
        app_error = cause.__cause__ if cause is not None and cause.__cause__ is not None else None
        log.error("The host could not start: %s", error, exc_info=app_error)
        return 1
    await stop.wait()
    grace = options.shutdown_timeout
    if received[0] == signal.SIGINT:
        grace = min(grace, INTERRUPT_GRACE)
    log.info("Stopping the host (in-flight invocations get up to %gs)", grace)
    await host.stop(grace)
    log.info("Host stopped")
    return 0


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    configure_logging(args.verbose)
    install_span_lines()  # the app's spans, a line each (telemetry.py); before the app is imported
    app_dir = args.app_dir.resolve()
    settings_file = args.settings_file.resolve() if args.settings_file else None
    # The worker runs in the app's folder; relative paths in the app resolve against it.
    os.chdir(app_dir)
    options = HostOptions(
        app_dir=app_dir,
        host=args.host,
        port=args.port,
        settings_file=settings_file,
        settings=dict(args.setting),
        function_key=args.function_key,
        shutdown_timeout=args.shutdown_timeout,
        message_lease=args.queue_message_lease,
        singleton_lock_dir=args.singleton_lock_dir.resolve() if args.singleton_lock_dir else None,
        singleton_recovery_interval=args.singleton_recovery_interval,
        timer_status_dir=args.timer_status_dir.resolve() if args.timer_status_dir else None,
        cors=args.cors,
    )
    code = asyncio.run(serve(options))
    sys.stdout.flush()
    # A sync function still running in a worker thread would block interpreter exit: do not wait.
    os._exit(code)


if __name__ == "__main__":
    main()
