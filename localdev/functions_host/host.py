"""The host: settings, indexing, HTTP server, queue and timer listeners, start and stop."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import socket
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from aiohttp import web
from azure.core.pipeline.transport import AioHttpTransport
from azure.storage.queue.aio import QueueServiceClient

from localdev.functions_host.hostjson import HostConfig, load_host_config
from localdev.functions_host.http_trigger import HttpRoute, HttpTriggerServer, build_routes
from localdev.functions_host.indexing import FunctionSpec, IndexingError, load_functions
from localdev.functions_host.invocation import Invoker
from localdev.functions_host.ncrontab import parse_schedule
from localdev.functions_host.queue_trigger import DEFAULT_MESSAGE_LEASE, QueueListener, poison_queue_name
from localdev.functions_host.settings import (
    AppliedSettings,
    LocalSettings,
    SettingsError,
    apply_settings,
    read_local_settings,
    resolve,
    storage_connection_string,
)
from localdev.functions_host.singleton import DEFAULT_RECOVERY_INTERVAL, SingletonListener
from localdev.functions_host.timer_trigger import ScheduleMonitor, TimerListener

log = logging.getLogger("localdev.functions_host")

READY_LINE = "Functions host listening on"
DEFAULT_PORT = 7071  # func start's, unless local.settings.json Host.LocalHttpPort says otherwise
_QUEUE_NAME_RULES = "3-63 characters: lowercase letters, digits and single hyphens, starting and ending alphanumeric"


class HostStartupError(Exception):
    """The app cannot be hosted as configured (bad settings, bindings or host.json)."""


@dataclass
class HostOptions:
    app_dir: Path
    host: str = "127.0.0.1"
    # 0: any free port (see FunctionsHost.port once started); None: Host.LocalHttpPort or 7071.
    port: int | None = None
    settings_file: Path | None = None  # default: app_dir/local.settings.json
    settings: Mapping[str, str] = field(default_factory=dict)  # applied after the file, winning over all
    function_key: str | None = None  # generated when None
    shutdown_timeout: float = 10.0  # how long in-flight invocations may finish at stop
    message_lease: int = DEFAULT_MESSAGE_LEASE  # seconds a received queue message stays invisible
    restore_environment: bool = False  # put os.environ back at stop (in-process tests)
    # Instances sharing this folder run each timer function on one instance at a time (singleton.py);
    # None: no lock, every timer runs here (one instance).
    singleton_lock_dir: Path | None = None
    singleton_recovery_interval: float = DEFAULT_RECOVERY_INTERVAL  # how often a non-holder retries
    # Where timers with useMonitor keep their schedule status across restarts (the real host: in
    # AzureWebJobsStorage); None: in memory, so no run is ever past due after a restart.
    timer_status_dir: Path | None = None
    # func start's --cors: comma-separated origins replacing local.settings.json Host.CORS; None: that.
    cors: str | None = None


def _valid_queue_name(name: str) -> bool:
    return bool(re.fullmatch(r"[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]", name))


class FunctionsHost:
    """`async with FunctionsHost(HostOptions(app_dir=...)) as host:` or start()/stop()."""

    def __init__(self, options: HostOptions) -> None:
        self.options = options
        self.app_dir = options.app_dir.resolve()
        self.function_key = options.function_key or secrets.token_urlsafe(32)
        self.functions: list[FunctionSpec] = []
        self.config = HostConfig()
        self.http_routes: list[HttpRoute] = []
        self.port = options.port or 0
        self.local_settings = LocalSettings()
        self._socket: socket.socket | None = None
        self._applied: AppliedSettings | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._invoker: Invoker | None = None
        self._runner: web.AppRunner | None = None
        self._queue_services: list[QueueServiceClient] = []
        self._queue_listeners: list[QueueListener] = []
        self._timers: list[TimerListener | SingletonListener] = []

    @property
    def base_url(self) -> str:
        return f"http://{self.options.host}:{self.port}"

    @property
    def in_flight(self) -> int:
        return self._invoker.in_flight if self._invoker else 0

    async def __aenter__(self) -> FunctionsHost:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        options = self.options
        settings_file = options.settings_file or self.app_dir / "local.settings.json"
        try:
            self.local_settings = read_local_settings(settings_file)
            # Bound before the app is imported, so WEBSITE_HOSTNAME can name the port.
            port = options.port if options.port is not None else self.local_settings.http_port or DEFAULT_PORT
            try:
                self._socket = socket.create_server((options.host, port))
            except OSError as error:
                raise HostStartupError(f"Cannot listen on {options.host}:{port}: {error}") from error
            self.port = int(self._socket.getsockname()[1])
            # Settings go into the environment BEFORE the app is imported: module-level code reads them.
            self._applied = apply_settings(
                {**self.local_settings.environment(), **self._core_tools_settings()}, options.settings
            )
            self.config = load_host_config(self.app_dir, os.environ)
            script = os.environ.get("PYTHON_SCRIPT_FILE_NAME") or "function_app.py"
            self.functions = load_functions(self.app_dir, script)
        except (SettingsError, IndexingError) as error:
            raise HostStartupError(str(error)) from error

        # The worker's default pool for sync functions (PYTHON_THREADPOOL_THREAD_COUNT overrides it).
        threads = os.environ.get("PYTHON_THREADPOOL_THREAD_COUNT")
        self._executor = ThreadPoolExecutor(
            max_workers=int(threads) if threads else None, thread_name_prefix="function"
        )
        self._invoker = Invoker(self.app_dir, self._executor, self.config.function_timeout)
        try:
            self._build_triggers()
        except (SettingsError, ValueError) as error:
            raise HostStartupError(str(error)) from error

        server = HttpTriggerServer(
            self.http_routes,
            self._invoker,
            self.function_key,
            cors_origins=self._cors_origins(),
            cors_credentials=self.local_settings.cors_credentials,
        )
        self._runner = web.AppRunner(server.application(), access_log=None, shutdown_timeout=options.shutdown_timeout)
        await self._runner.setup()
        site = web.SockSite(self._runner, self._socket)
        await site.start()

        for listener in self._queue_listeners:
            listener.start()
        for timer in self._timers:
            timer.start()
        self._announce()

    def _cors_origins(self) -> tuple[str, ...]:
        if self.options.cors is None:
            return self.local_settings.cors_origins
        origins = tuple(origin for origin in self.options.cors.split(",") if origin)
        if "*" in origins and self.local_settings.cors_credentials:
            raise HostStartupError("--cors '*' with Host.CORSCredentials: list the origins instead")
        return origins

    def _core_tools_settings(self) -> dict[str, str | None]:
        """What func start adds to the app's settings (StartHostAction.GetConfigurationSettings)."""
        local_names = ("127.0.0.1", "0.0.0.0", "localhost", "::1", "::")
        hostname = "localhost" if self.options.host in local_names else self.options.host
        if self.local_settings.values.get("AZURE_FUNCTIONS_ENVIRONMENT") not in (None, "Development"):
            log.warning("AZURE_FUNCTIONS_ENVIRONMENT from local settings becomes 'Development', as with func start.")
        return {
            "WEBSITE_HOSTNAME": f"{hostname}:{self.port}",
            "AzureWebJobsScriptRoot": str(self.app_dir),
            "AZURE_FUNCTIONS_ENVIRONMENT": "Development",
        }

    def _build_triggers(self) -> None:
        assert self._invoker is not None
        self.http_routes = build_routes(self.functions, self.config.route_prefix)
        services: dict[str, QueueServiceClient] = {}
        monitor = ScheduleMonitor(self.options.timer_status_dir)
        for spec in self.functions:
            trigger = spec.trigger
            if spec.trigger_type == "queueTrigger":
                if self.config.extension_bundle is None:
                    # The queue trigger lives in the storage extension, which comes with the bundle.
                    raise SettingsError(
                        f"Function '{spec.name}': The binding type(s) 'queueTrigger' are not registered. "
                        "Please ensure the type is correct and the binding extension is installed. "
                        '(host.json needs "extensionBundle": {"id": "Microsoft.Azure.Functions.ExtensionBundle", '
                        '"version": "[4.*, 5.0.0)"})'
                    )
                # The storage extension lower-cases the resolved name, then validates it.
                queue_name = resolve(str(trigger["queueName"])).lower()
                if not _valid_queue_name(queue_name):
                    raise SettingsError(
                        f"Function '{spec.name}': queue name '{queue_name}' is invalid ({_QUEUE_NAME_RULES})"
                    )
                connection = storage_connection_string(trigger.get("connection"))
                if connection not in services:
                    # Without aiohttp's .netrc and proxy lookups on every poll (a worker thread each):
                    # the real host's listeners are not Python, so their cost should not look like the app's.
                    transport = AioHttpTransport(use_env_settings=False)
                    services[connection] = QueueServiceClient.from_connection_string(connection, transport=transport)
                service = services[connection]
                poison_name = poison_queue_name(queue_name)
                if poison_name is None:
                    log.warning(
                        "Queue '%s' has no poison queue (it is one, or '-poison' would make its name too long): "
                        "a failing message is retried after its lease, forever.",
                        queue_name,
                    )
                self._queue_listeners.append(
                    QueueListener(
                        spec,
                        service.get_queue_client(queue_name),
                        service.get_queue_client(poison_name) if poison_name else None,
                        self.config.queues,
                        self._invoker,
                        self.options.message_lease,
                    )
                )
            elif spec.trigger_type == "timerTrigger":
                expression = resolve(str(trigger["schedule"]))
                try:
                    schedule = parse_schedule(expression)
                except ValueError as error:
                    raise SettingsError(f"Function '{spec.name}': invalid schedule '{expression}': {error}") from error
                use_monitor = trigger.get("useMonitor")
                timer = TimerListener(
                    spec,
                    schedule,
                    self._invoker,
                    run_on_startup=bool(trigger.get("runOnStartup", False)),
                    use_monitor=True if use_monitor is None else bool(use_monitor),
                    monitor=monitor,
                )
                if timer.use_monitor and not os.environ.get("AzureWebJobsStorage"):
                    # The host keeps the schedule status in AzureWebJobsStorage: without it the listener fails.
                    raise SettingsError(
                        f"The listener for function 'Functions.{spec.name}' was unable to start: Could not create "
                        "BlobContainerClient for ScheduleMonitor. Set AzureWebJobsStorage (the host keeps the "
                        "schedule status there when useMonitor is on), or use_monitor=False."
                    )
                lock_dir = self.options.singleton_lock_dir
                self._timers.append(
                    timer
                    if lock_dir is None
                    else SingletonListener(spec.name, timer, lock_dir, self.options.singleton_recovery_interval)
                )
        self._queue_services = list(services.values())

    def _announce(self) -> None:
        """The function list, then the line tests and `make run` wait for (stdout, flushed)."""
        lines = ["", "Functions:", ""]
        for route in self.http_routes:
            lines.append(f"\t{route.spec.name}: [{route.method_label}] {self.base_url}/{route.template.template}")
            lines.append(f"\t\tauthLevel: {route.auth_level}")
        for listener in self._queue_listeners:
            lines.append(
                f"\t{listener.spec.name}: queueTrigger (queue '{listener.queue_name}', "
                f"encoding {listener.options.message_encoding})"
            )
        for listener in self._timers:
            timer = listener.inner if isinstance(listener, SingletonListener) else listener
            where = f"next {timer.next_run.isoformat()}"
            if isinstance(listener, SingletonListener) and not listener.listening:
                where = "singleton: runs on another instance for now"
            lines.append(f"\t{timer.spec.name}: timerTrigger (schedule '{timer.schedule.expression}', {where})")
        lines.append("")
        if any(route.auth_level != "anonymous" for route in self.http_routes):
            lines.append(f"Function key (code= or x-functions-key): {self.function_key}")
        lines.append(f"{READY_LINE} {self.base_url}")
        print("\n".join(lines), flush=True)

    async def stop(self, timeout: float | None = None) -> None:
        """Stop taking work, let in-flight invocations finish for up to `timeout` seconds (default:
        shutdown_timeout), abandon the rest (their queue messages are released), release everything."""
        timeout = self.options.shutdown_timeout if timeout is None else timeout
        runner, self._runner = self._runner, None
        # Stops listening at once, then waits (up to shutdown_timeout) for running requests; a shorter
        # stop does not wait for it past `timeout` (the process is about to end).
        cleanup = asyncio.ensure_future(runner.cleanup()) if runner is not None else None
        await asyncio.gather(
            *(listener.stop(timeout) for listener in self._queue_listeners),
            *(timer.stop(timeout) for timer in self._timers),
        )
        if cleanup is not None:
            if timeout >= self.options.shutdown_timeout:
                await cleanup
            else:
                await asyncio.wait({cleanup}, timeout=max(timeout, 0.1))
        if self._socket is not None and runner is None:
            self._socket.close()  # bound, but the server never started
        self._socket = None
        if self._invoker is not None and not await self._invoker.drain(timeout):
            log.warning("%d invocation(s) still running after %.0fs; not waiting longer", self.in_flight, timeout)
        for service in self._queue_services:
            await service.close()
        self._queue_services.clear()
        self._queue_listeners.clear()
        self._timers.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        if self._applied is not None and self.options.restore_environment:
            self._applied.restore()
            self._applied = None


async def start_host(
    app_dir: Path,
    *,
    port: int = 0,
    host: str = "127.0.0.1",
    settings_file: Path | None = None,
    settings: Mapping[str, str] | None = None,
    function_key: str | None = None,
    shutdown_timeout: float = 10.0,
    message_lease: int = DEFAULT_MESSAGE_LEASE,
    restore_environment: bool = True,
    cors: str | None = None,
) -> FunctionsHost:
    """Start a host in this process and event loop; `await host.stop()` when done."""
    functions_host = FunctionsHost(
        HostOptions(
            app_dir=app_dir,
            host=host,
            port=port,
            settings_file=settings_file,
            settings=dict(settings or {}),
            function_key=function_key,
            shutdown_timeout=shutdown_timeout,
            message_lease=message_lease,
            restore_environment=restore_environment,
            cors=cors,
        )
    )
    await functions_host.start()
    return functions_host
