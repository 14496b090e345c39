"""The whole bot on this machine, started one way by everyone: `make run` (localdev/run.py), the
end-to-end tests (tests/support/local_bot.py) and the benchmarks (bench/stack.py).

    with start_stack(log_dir, settings={"ExpireAfterSeconds": "2"}) as stack:
        stack.directline.domain   # where a Direct Line client connects (.../v3/directline)
        stack.messages_url        # the bot's messaging endpoint
        stack.host.output         # what the local Functions host has printed so far
        stack.settings            # every app setting the app runs with

In order: Azurite and the Cosmos DB stand-in (unless running ones are given), the local Direct
Line (a child process), then the Functions app: the project's local host, or `func start` when
asked for. The Direct Line comes first because the app posts operation results to it, while it
needs the app only once a client writes. Everything is stopped in reverse order, each child with
whatever it started; emulators that were given are left running. A port of 0 means a free one.

App settings: with a settings file (make run's local.settings.json) the app reads that file, and
the stack only points the local addresses in it at what it started; without one (tests,
benchmarks) the app gets fresh settings against the stack (localdev.app_settings: a new database,
queue and secrets). `settings` is applied last, over both.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from localdev.app_settings import app_settings
from localdev.directline import DirectLineProcess, start_directline_process
from localdev.emulators import Emulators, start_emulators
from localdev.functions_host import HostProcess, spawn_host
from localdev.processes import PROJECT_ROOT, ManagedProcess, Stoppable, free_ports, spawn, wait_for_port
from localdev.settings_file import read_values

LOCAL_HOSTS = {"127.0.0.1", "localhost"}
READY_TIMEOUT = 90.0  # seconds for the Functions app to listen; a first start compiles the app's modules


@dataclass(frozen=True)
class Ports:
    """Where each part listens; 0 means a free port."""

    functions: int = 0
    directline: int = 0
    cosmos: int = 0
    azurite_queue: int = 0


@dataclass
class LocalStack(Stoppable):
    emulators: Emulators
    directline: DirectLineProcess
    functions: ManagedProcess  # the local Functions host or `func start`
    functions_url: str  # http://127.0.0.1:PORT
    settings: dict[str, str]  # every app setting the app runs with
    started: list[ManagedProcess]  # the children this stack started (and stops), in start order
    local_host: HostProcess | None = None  # None under `func start`

    @property
    def messages_url(self) -> str:
        return f"{self.functions_url}/api/messages"

    @property
    def secret(self) -> str:
        return self.settings["DirectLineSecret"]

    @property
    def host(self) -> HostProcess:
        """The local Functions host (its output, pid); not available under `func start`."""
        if self.local_host is None:
            raise RuntimeError(f"the app runs in `func start`: its output is in {self.functions.log_path}")
        return self.local_host

    def exited(self) -> ManagedProcess | None:
        """A child of the stack that is no longer running, if any."""
        return next((process for process in self.started if process.popen.poll() is not None), None)

    def stop(self) -> None:
        for process in reversed(self.started):
            process.stop()


def start_stack(
    log_dir: Path,
    *,
    emulators: Emulators | None = None,
    app_dir: Path = PROJECT_ROOT,
    settings_file: Path | None = None,
    settings: Mapping[str, str] | None = None,
    use_func: bool = False,
    ports: Ports = Ports(),
    directline_args: Sequence[str] = (),
    name: str = "",
) -> LocalStack:
    """Start the stack and return once everything listens (see the module's docstring).

    Logs go to log_dir: azurite.log, cosmos.log, then <name>-directline.log and <name>-functions.log
    (without a name: directline.log, functions.log). `directline_args` go to `python -m
    localdev.directline` (e.g. its limits). `use_func` runs `func start` instead of the local host;
    it reads app_dir/local.settings.json, so settings_file must be that file or None.
    """
    func_settings = (app_dir / "local.settings.json").resolve()
    if use_func and settings_file is not None and settings_file.resolve() != func_settings:
        raise ValueError("`func start` reads local.settings.json from the app's folder, not another settings file")
    prefix = f"{name}-" if name else ""
    started: list[ManagedProcess] = []
    try:
        if emulators is None:
            emulators = start_emulators(log_dir, ports.azurite_queue or None, ports.cosmos or None)
            started += [emulators.azurite.process, emulators.cosmos.process]
        free = iter(free_ports(2))
        functions_port, directline_port = ports.functions or next(free), ports.directline or next(free)
        functions_url = f"http://127.0.0.1:{functions_port}"
        domain = f"http://127.0.0.1:{directline_port}/v3/directline"
        values, passed = _app_settings(settings_file, dict(settings or {}), emulators, domain)

        directline = start_directline_process(
            f"{functions_url}/api/messages",
            values["DirectLineSecret"],
            port=directline_port,
            log_dir=log_dir,
            extra_args=directline_args,
            timeout=30.0,
            name=f"{prefix}directline",
        )
        started.append(directline.process)

        host = None
        if use_func:
            func = shutil.which("func")
            if func is None:
                raise RuntimeError("`func` (Azure Functions Core Tools) is not installed")
            argv = [func, "start", "--port", str(functions_port)]
            functions = spawn(f"{prefix}functions", argv, log_dir, env={**os.environ, **passed}, cwd=app_dir)
            started.append(functions)
            wait_for_port("127.0.0.1", functions_port, READY_TIMEOUT, functions.popen)
        else:
            host = spawn_host(
                app_dir,
                port=functions_port,
                settings=passed,
                settings_file=settings_file,
                ready_timeout=READY_TIMEOUT,
                log_path=log_dir / f"{prefix}functions.log",
            )
            functions = host.process
            started.append(functions)
    except BaseException:
        for process in reversed(started):
            process.stop()
        raise
    return LocalStack(emulators, directline, functions, functions_url, values, started, host)


def _app_settings(
    settings_file: Path | None, overrides: dict[str, str], emulators: Emulators, directline_domain: str
) -> tuple[dict[str, str], dict[str, str]]:
    """(every setting the app runs with, those the stack passes on top of the settings file)."""
    if settings_file is None:
        values = {
            **app_settings(emulators.azurite, emulators.cosmos),
            "DirectLineEndpoint": directline_domain,
            **overrides,
        }
        return values, values
    from_file = read_values(settings_file)
    passed = {**_local_endpoints(from_file, emulators, directline_domain), **overrides}
    return {**from_file, **passed}, passed


def _local_endpoints(values: Mapping[str, str], emulators: Emulators, directline_domain: str) -> dict[str, str]:
    """Point the app at the stack's services, unless the settings name remote ones."""
    endpoints: dict[str, str] = {}
    storage = values.get("AzureWebJobsStorage", "")
    if storage.startswith("UseDevelopmentStorage") or "127.0.0.1" in storage:
        endpoints["AzureWebJobsStorage"] = emulators.azurite.connection_string
    if urlparse(values.get("CosmosDbEndpoint", "")).hostname in LOCAL_HOSTS:
        endpoints["CosmosDbEndpoint"] = emulators.cosmos.endpoint
    if urlparse(values.get("DirectLineEndpoint", "")).hostname in LOCAL_HOSTS:
        endpoints["DirectLineEndpoint"] = directline_domain
    return endpoints
