"""A local Azure Functions host for Python v2-model apps (Core Tools cannot be installed here).

CLI: `python -m localdev.functions_host --app-dir DIR [--port 7071] ...` (see __main__.py).
In process: `host = await start_host(app_dir, port=0)` ... `await host.stop()`, or
`async with FunctionsHost(HostOptions(app_dir=...)) as host:`.
As a child process: `spawn_host(app_dir, settings={...})` returns once the host listens.
"""

from localdev.functions_host.child import HostProcess, spawn_host
from localdev.functions_host.host import READY_LINE, FunctionsHost, HostOptions, HostStartupError, start_host

__all__ = ["READY_LINE", "FunctionsHost", "HostOptions", "HostProcess", "HostStartupError", "spawn_host", "start_host"]
