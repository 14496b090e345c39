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
needs the app only once a client writes. A port of 0 means a free one; a fixed port already taken
is reported (PortInUseError, naming it) before anything starts.

Scale-out: with `instances=N` (N > 1) the app runs in N local hosts, each on a free port with its
own queue and timer listeners, behind a round-robin balancer (functions_host/balancer.py) on the
functions port, the one the Direct Line and the user know. Each timer function runs on one
instance at a time (functions_host/singleton.py: a lock file per function in a folder the
instances share); when its instance dies, another takes it over.

Stopping: in reverse order, in three steps, each step's children at once (the app's instances and
the balancer; the Direct Line; the emulators), each given a bounded time and then killed, so a stop
takes at most about `shutdown_timeout` + 5 s, and usually well under a second. Emulators that were
given are left running. Every child also dies with this process if it is killed (processes.py).

App settings: with a settings file (make run's local.settings.json) the app reads that file, and
the stack only points the local addresses in it at what it started; without one (tests,
benchmarks) the app gets fresh settings against the stack (localdev.app_settings: a new database,
queue and secrets). `settings` is applied last, over both.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import urlparse

from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient

from localdev.app_settings import app_settings
from localdev.directline import DirectLineProcess, start_directline_process
from localdev.emulators import Emulators, start_emulators
from localdev.functions_host import HostProcess, spawn_host
from localdev.functions_host.balancer import spawn_balancer
from localdev.functions_host.settings import SettingsError as LocalSettingsError
from localdev.functions_host.settings import read_local_settings
from localdev.processes import (
    PROJECT_ROOT,
    ManagedProcess,
    Stoppable,
    free_ports,
    port_in_use,
    spawn,
    stop_all,
    wait_for_port,
)
from localdev.settings_file import read_values

# The bot's display name in the local channel (in Azure: the Azure Bot resource's display name).
BOT_NAME = "Long Operations Bot"
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
READY_TIMEOUT = 90.0  # seconds for the Functions app to listen; a first start compiles the app's modules
DEFAULT_SHUTDOWN_TIMEOUT = 10.0  # seconds the app's in-flight invocations get at stop (the host's default)
SERVICE_STOP_TIMEOUT = 2.0  # seconds the Direct Line and the emulators get at stop before they are killed


@dataclass(frozen=True)
class Ports:
    """Where each part listens; 0 means a free port."""

    functions: int = 0
    directline: int = 0
    cosmos: int = 0
    azurite_queue: int = 0
    azurite_table: int = 0


PORT_NAMES = {
    "functions": "the Functions app",
    "directline": "the local Direct Line",
    "cosmos": "the Cosmos DB stand-in",
    "azurite_queue": "Azurite's queue service",
    "azurite_table": "Azurite's table service",
}


class PortInUseError(RuntimeError):
    """A fixed port of the stack is taken; `part` is the Ports field (functions, directline, ...)."""

    def __init__(self, part: str, port: int) -> None:
        super().__init__(f"port {port} ({PORT_NAMES[part]}) is already in use")
        self.part = part
        self.port = port


def check_ports(ports: Ports, emulators_given: bool) -> None:
    """Raise PortInUseError for the first fixed port something already listens on."""
    for item in fields(ports):
        port = getattr(ports, item.name)
        if emulators_given and item.name in ("cosmos", "azurite_queue", "azurite_table"):
            continue  # the given emulators' business
        if port and port_in_use(port):
            raise PortInUseError(item.name, port)


@dataclass
class LocalStack(Stoppable):
    emulators: Emulators
    directline: DirectLineProcess
    functions: ManagedProcess  # the local Functions host or `func start`
    functions_url: str  # http://127.0.0.1:PORT
    settings: dict[str, str]  # every app setting the app runs with
    started: list[ManagedProcess]  # the children this stack started (and stops), in start order
    local_host: HostProcess | None = None  # None under `func start`; the first instance when several
    hosts: list[HostProcess] = field(default_factory=list)  # every instance of the app, in the local host
    balancer: ManagedProcess | None = None  # in front of the instances when there are several
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT
    lock_dir: Path | None = None  # the instances' shared singleton lock folder (removed at stop)
    function_key: str | None = None  # for authLevel FUNCTION routes; None under `func start` (no keys locally)

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
        """The app's instances and the balancer, then the Direct Line, then the emulators (see the module)."""
        app = [host.process for host in self.hosts] or [self.functions]
        if self.balancer is not None:
            app.append(self.balancer)
        _stop_in_steps(self.started, app, self.shutdown_timeout)
        if self.lock_dir is not None:
            shutil.rmtree(self.lock_dir, ignore_errors=True)


def _stop_in_steps(started: list[ManagedProcess], app: list[ManagedProcess], shutdown_timeout: float) -> None:
    # One second over the host's own bound: it stops taking work, then waits that long for invocations.
    stop_all([process for process in app if process in started], shutdown_timeout + 1.0)
    rest = [process for process in started if process not in app]
    emulators = [process for process in rest if process.name in ("azurite", "azurite-table", "cosmos")]
    stop_all([process for process in rest if process not in emulators], SERVICE_STOP_TIMEOUT)
    stop_all(emulators, SERVICE_STOP_TIMEOUT)


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
    instances: int = 1,
    host_args: Sequence[str] = (),
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
) -> LocalStack:
    """Start the stack and return once everything listens (see the module's docstring).

    Logs go to log_dir: azurite.log, azurite-table.log, cosmos.log, then <name>-directline.log and <name>-functions.log
    (without a name: directline.log, functions.log; with several instances functions-1.log, ...
    and balancer.log). `directline_args` go to `python -m localdev.directline` (e.g. its limits),
    `host_args` to each `python -m localdev.functions_host` (e.g. --singleton-recovery-interval 1).
    `use_func` runs `func start` instead of the local host; it reads app_dir/local.settings.json,
    so settings_file must be that file or None, and it runs one instance only. `shutdown_timeout`:
    how long the app's in-flight invocations may finish at stop.
    """
    func_settings = (app_dir / "local.settings.json").resolve()
    if use_func and settings_file is not None and settings_file.resolve() != func_settings:
        raise ValueError("`func start` reads local.settings.json from the app's folder, not another settings file")
    if instances < 1 or (use_func and instances > 1):
        raise ValueError("instances: 1 or more, and only 1 under `func start` (its timers need Azure storage locks)")
    check_ports(ports, emulators_given=emulators is not None)
    prefix = f"{name}-" if name else ""
    started: list[ManagedProcess] = []
    hosts: list[HostProcess] = []
    balancer = None
    lock_dir = None
    try:
        if emulators is None:
            emulators = start_emulators(
                log_dir, ports.azurite_queue or None, ports.cosmos or None, ports.azurite_table or None, blobs=use_func
            )
            started += [*emulators.azurite.processes, emulators.cosmos.process]
        free = iter(free_ports(2))
        functions_port, directline_port = ports.functions or next(free), ports.directline or next(free)
        functions_url = f"http://127.0.0.1:{functions_port}"
        domain = f"http://127.0.0.1:{directline_port}/v3/directline"
        values, passed = _app_settings(settings_file, dict(settings or {}), emulators, domain)
        create_queues(values, emulators)

        # The Web Chat page gets its token from the app's token function, as a production page does.
        token_endpoint = f"{functions_url}/api/directline/token"
        directline = start_directline_process(
            f"{functions_url}/api/messages",
            values["DirectLineSecret"],
            port=directline_port,
            log_dir=log_dir,
            extra_args=["--token-endpoint", token_endpoint, "--bot-name", BOT_NAME, *directline_args],
            timeout=30.0,
            name=f"{prefix}directline",
            handoff_signing_key=values.get("HandoffSigningKey"),
        )
        started.append(directline.process)

        host_argv = ["--shutdown-timeout", str(shutdown_timeout), *host_args]
        if settings_file is None and not use_func:
            # The stack's settings only: not the project's local.settings.json, which the local host
            # (like func start) reads by default and which may hold a developer's own values.
            settings_file = _empty_settings_file(log_dir, prefix)
        cors = ["--cors", web_chat_cors(settings_file or func_settings, directline_port)]
        host_argv += cors
        # One key for every instance, so a keyed request works whichever instance the balancer picks.
        function_key = None if use_func else secrets.token_urlsafe(24)
        if use_func:
            func = shutil.which("func")
            if func is None:
                raise RuntimeError("`func` (Azure Functions Core Tools) is not installed")
            argv = [func, "start", "--port", str(functions_port), *cors]
            functions = spawn(f"{prefix}functions", argv, log_dir, env={**os.environ, **passed}, cwd=app_dir)
            started.append(functions)
            wait_for_port("127.0.0.1", functions_port, READY_TIMEOUT, functions.popen)
        elif instances == 1:
            hosts.append(
                spawn_host(
                    app_dir,
                    port=functions_port,
                    settings=passed,
                    settings_file=settings_file,
                    extra_args=host_argv,
                    ready_timeout=READY_TIMEOUT,
                    log_path=log_dir / f"{prefix}functions.log",
                    function_key=function_key,
                )
            )
            started.append(hosts[0].process)
            functions = hosts[0].process
        else:
            lock_dir = Path(tempfile.mkdtemp(prefix="localdev-singleton-locks-"))
            host_argv += ["--singleton-lock-dir", str(lock_dir)]
            log_name = f"{prefix}functions"
            hosts = _spawn_instances(
                instances, app_dir, passed, settings_file, host_argv, log_dir, log_name, started, function_key
            )
            functions = hosts[0].process
            balancer = spawn_balancer(functions_port, [h.base_url for h in hosts], log_dir, f"{prefix}balancer")
            started.append(balancer)
    except BaseException:
        app = [host.process for host in hosts] + ([balancer] if balancer is not None else [])
        _stop_in_steps(started, app, 0.0)  # nothing ran yet: no in-flight work to wait for
        if lock_dir is not None:
            shutil.rmtree(lock_dir, ignore_errors=True)
        raise
    return LocalStack(
        emulators,
        directline,
        functions,
        functions_url,
        values,
        started,
        hosts[0] if hosts else None,
        hosts=hosts,
        balancer=balancer,
        shutdown_timeout=shutdown_timeout,
        lock_dir=lock_dir,
        function_key=function_key,
    )


def _spawn_instances(
    count: int,
    app_dir: Path,
    settings: dict[str, str],
    settings_file: Path | None,
    host_argv: list[str],
    log_dir: Path,
    log_name: str,
    started: list[ManagedProcess],
    function_key: str | None,
) -> list[HostProcess]:
    """`count` local hosts on free ports (each reports the port it bound), started side by side:
    a start is mostly importing the app, and one instance need not wait for another."""

    def one(number: int) -> HostProcess:
        return spawn_host(
            app_dir,
            settings=settings,
            settings_file=settings_file,
            extra_args=host_argv,
            ready_timeout=READY_TIMEOUT,
            log_path=log_dir / f"{log_name}-{number}.log",
            name=f"functions-host-{number}",
            function_key=function_key,
        )

    with ThreadPoolExecutor(count) as pool:
        futures = [pool.submit(one, number) for number in range(1, count + 1)]
    hosts: list[HostProcess] = []
    errors: list[BaseException] = []
    for future in futures:
        try:
            hosts.append(future.result())
        except BaseException as error:  # every instance that did start must be stopped
            errors.append(error)
    started += [host.process for host in hosts]
    if errors:
        raise errors[0]
    return hosts


def web_chat_cors(settings_file: Path, directline_port: int) -> str:
    """`--cors` for the app (func start's option, which replaces Host.CORS): the settings file's own
    origins plus the local Web Chat page's, which calls the app's /api/directline/token."""
    try:
        origins = list(read_local_settings(settings_file).cors_origins)
    except LocalSettingsError:
        origins = []  # the host reports what is wrong with the file
    page = [f"http://{host}:{directline_port}" for host in ("127.0.0.1", "localhost")]
    return ",".join(dict.fromkeys([*origins, *page]))


def _empty_settings_file(log_dir: Path, prefix: str) -> Path:
    path = log_dir / f"{prefix}local.settings.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"IsEncrypted": false, "Values": {}}\n')
    return path


# The queues infra/main.bicep creates in Azure, by the setting that names them; each with its poison
# queue. Queue triggers do not create their queues (nor does the real host), so the stack does.
APP_QUEUES = ("OperationsQueueName", "ExternalEventsQueueName")


def create_queues(values: Mapping[str, str], emulators: Emulators) -> list[str]:
    """Create the app's queues in the stack's Azurite, as the template does in Azure; returns their names."""
    if values.get("AzureWebJobsStorage") != emulators.azurite.connection_string:
        return []  # the settings name another storage account: provisioning it is not ours to do
    names = [name for setting in APP_QUEUES if (name := values.get(setting))]
    names += [f"{name}-poison" for name in names]
    for name in names:
        queue = QueueClient.from_connection_string(values["AzureWebJobsStorage"], name)
        with queue:
            try:
                queue.create_queue()
            except ResourceExistsError:
                pass
    return names


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
