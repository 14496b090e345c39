"""Find the app's functions the way the Python worker indexes a v2-model app."""

from __future__ import annotations

import importlib
import inspect
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import azure.functions as func

from localdev.functions_host.settings import SettingsError

SUPPORTED_TRIGGERS = ("httpTrigger", "queueTrigger", "timerTrigger")


class IndexingError(Exception):
    """The app cannot be indexed; the real worker would refuse it too."""


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    user_function: Callable[..., Any]
    trigger: dict[str, Any]
    bindings: tuple[dict[str, Any], ...]
    # The trigger binding's declared name: the parameter the trigger value is passed as.
    trigger_param: str
    wants_context: bool
    is_async: bool

    @property
    def trigger_type(self) -> str:
        return str(self.trigger["type"])


def import_app_module(app_dir: Path, script_file: str = "function_app.py") -> Any:
    """Import the app's script with the app dir on sys.path, as the worker does."""
    script = app_dir / script_file
    if not script.is_file():
        raise IndexingError(f"{script} does not exist")
    module_name = Path(script_file).stem
    directory = str(app_dir.resolve())
    if directory not in sys.path:
        sys.path.insert(0, directory)
    loaded = sys.modules.get(module_name)
    if loaded is not None and Path(getattr(loaded, "__file__", "") or "").resolve() != script.resolve():
        # Another app's function_app was imported in this process (in-process tests): drop it.
        del sys.modules[module_name]
    importlib.invalidate_caches()
    return importlib.import_module(module_name)


def find_app(module: Any) -> func.FunctionRegister:
    """The single top-level FunctionApp/Blueprint-like register, as the worker requires."""
    apps = [value for value in vars(module).values() if isinstance(value, func.FunctionRegister)]
    if len(apps) > 1:
        raise IndexingError(f"More than one FunctionApp instance is defined in {module.__file__}.")
    if not apps:
        raise IndexingError(f"Could not find a top level FunctionApp instance in {module.__file__}.")
    return apps[0]


def index_functions(app: func.FunctionRegister) -> list[FunctionSpec]:
    specs: list[FunctionSpec] = []
    try:
        functions = app.get_functions()
    except ValueError as error:  # duplicate names, missing trigger: the library's own checks
        raise IndexingError(str(error)) from error
    for function in functions:
        # The same JSON the worker reports to the host (function.json equivalent).
        metadata = json.loads(function.get_function_json())
        specs.append(_spec(str(function.get_function_name()), function.get_user_function(), metadata["bindings"]))
    return specs


def _spec(name: str, user_function: Callable[..., Any], bindings: list[dict[str, Any]]) -> FunctionSpec:
    triggers = [b for b in bindings if str(b.get("type", "")).endswith("Trigger")]
    if len(triggers) != 1:
        raise IndexingError(f"Function '{name}' must have exactly one trigger")
    trigger = triggers[0]
    if trigger["type"] not in SUPPORTED_TRIGGERS:
        raise IndexingError(f"Function '{name}': trigger '{trigger['type']}' is not supported by the local host")
    others = [b for b in bindings if b is not trigger and not (b["type"] == "http" and b["name"] == "$return")]
    if others:
        kinds = ", ".join(sorted({f"{b['type']} ({b.get('direction', '').lower()})" for b in others}))
        raise IndexingError(f"Function '{name}': bindings {kinds} are not supported by the local host")

    # The worker's check: Python parameters and declared bindings must match; `context` is extra.
    parameters = set(inspect.signature(user_function).parameters)
    declared = {str(b["name"]) for b in bindings if b["name"] != "$return"}
    wants_context = "context" in parameters and "context" not in declared
    missing = declared - parameters
    if missing:
        raise IndexingError(
            f"Function '{name}': the following parameters are declared in function.json but not in Python: "
            f"{sorted(missing)!r}"
        )
    extra = parameters - declared - ({"context"} if wants_context else set())
    if extra:
        raise IndexingError(
            f"Function '{name}': the following parameters are declared in Python but not in function.json: "
            f"{sorted(extra)!r}"
        )
    return FunctionSpec(
        name=name,
        user_function=user_function,
        trigger=trigger,
        bindings=tuple(bindings),
        trigger_param=str(trigger["name"]),
        wants_context=wants_context,
        is_async=inspect.iscoroutinefunction(user_function),
    )


def load_functions(app_dir: Path, script_file: str = "function_app.py") -> list[FunctionSpec]:
    try:
        module = import_app_module(app_dir, script_file)
    except (IndexingError, SettingsError):
        raise
    except Exception as error:
        raise IndexingError(f"Importing {app_dir / script_file} failed: {error!r}") from error
    return index_functions(find_app(module))
