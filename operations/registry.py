"""The catalogue of long-running operations the bot offers.

Built-in operations live in one module each (listed in ``BUILTIN_MODULES``) and are
imported on first use, so ``import operations`` stays cheap at cold start.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

ProgressCallback = Callable[[float], Awaitable[None]]  # fraction done, 0.0..1.0

# Adding an operation: write ``operations/<module>.py`` exposing ``OPERATION``, then list it here.
# Order here is menu order.
BUILTIN_MODULES: tuple[str, ...] = (
    "prime_report",
    "sales_report",
    "risk_simulation",
    "route_report",
)


@dataclass(frozen=True)
class Parameter:
    name: str
    description: str
    default: int
    minimum: int
    maximum: int

    def __post_init__(self) -> None:
        if not self.minimum <= self.default <= self.maximum:
            raise ValueError(f"parameter {self.name!r}: default {self.default} outside {self.minimum}..{self.maximum}")


@dataclass(frozen=True)
class Operation:
    name: str  # short, lowercase words, shown in the bot's menu, e.g. "prime report"
    description: str  # one line, shown next to the choice
    parameters: tuple[Parameter, ...]
    # Given every parameter, already checked by resolve_parameters (the one place that validates
    # them); returns the result text for the user.
    run: Callable[[Mapping[str, int], ProgressCallback], Awaitable[str]]


class OperationFailed(Exception):
    """The operation could not produce a result; the message is meant for the user."""


class UnknownOperation(KeyError):
    """No operation has that name."""

    def __str__(self) -> str:  # KeyError would otherwise show the repr of its argument
        return str(self.args[0]) if self.args else "unknown operation"


class InvalidParameters(ValueError):
    """A parameter is unknown, not a whole number, or out of range; the message is meant for the user."""


_lock = threading.Lock()  # sync Functions handlers may run on worker threads
_operations: dict[str, Operation] = {}  # key: lowercased name; insertion order is menu order
_builtins_loaded = False


def _key(name: str) -> str:
    return " ".join(name.split()).lower()


def _ensure_builtins() -> None:
    global _builtins_loaded
    if _builtins_loaded:
        return
    with _lock:
        if _builtins_loaded:
            return
        package = __name__.rpartition(".")[0]
        for module_name in BUILTIN_MODULES:
            operation: Operation = importlib.import_module(f"{package}.{module_name}").OPERATION
            _operations[_key(operation.name)] = operation
        _builtins_loaded = True


def all_operations() -> tuple[Operation, ...]:
    """Every operation, in menu order."""
    _ensure_builtins()
    with _lock:
        return tuple(_operations.values())


def get_operation(name: str) -> Operation:
    """The operation called ``name`` (case and extra spaces ignored)."""
    _ensure_builtins()
    with _lock:
        operation = _operations.get(_key(name)) if isinstance(name, str) else None
    if operation is None:
        raise UnknownOperation(f"There is no operation called {name!r}.")
    return operation


def register(operation: Operation) -> Callable[[], None]:
    """Add an operation to the menu; returns a function that removes it again."""
    _ensure_builtins()  # first, so built-ins keep their place at the top of the menu
    key = _key(operation.name)
    if not key:
        raise ValueError("an operation needs a name")
    with _lock:
        if key in _operations:
            raise ValueError(f"an operation called {operation.name!r} is already registered")
        _operations[key] = operation

    def unregister() -> None:
        with _lock:
            # Only remove our own entry, and tolerate being called twice.
            if _operations.get(key) is operation:
                del _operations[key]

    return unregister


def _allowed(parameter: Parameter) -> str:
    return f"a whole number from {parameter.minimum:,} to {parameter.maximum:,} (default {parameter.default:,})"


def _as_int(parameter: Parameter, value: object) -> int:
    if isinstance(value, bool):  # bool is an int subclass, but True is not a count
        raise InvalidParameters(f"{parameter.name} must be {_allowed(parameter)}, not {value}.")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        # Chat users type "20,000,000" or "20 000 000".
        text = value.strip().replace(",", "").replace("_", "").replace(" ", "")
        if text.lstrip("+-").isdigit() and text.isascii():
            return int(text)
    if value == "":
        raise InvalidParameters(f"{parameter.name} needs a value: {_allowed(parameter)}.")
    raise InvalidParameters(f"{parameter.name} must be {_allowed(parameter)}, not {value!r}.")


def resolve_parameters(operation: Operation, given: Mapping[str, object] | None) -> dict[str, int]:
    """Every parameter of ``operation`` as an int in range, defaults filled in.

    Names are matched case-insensitively; unknown names, non-numbers and out-of-range
    values raise InvalidParameters with a message for the user.
    """
    by_key = {_key(p.name): p for p in operation.parameters}
    values = {p.name: p.default for p in operation.parameters}
    for raw_name, raw_value in (given or {}).items():
        parameter = by_key.get(_key(raw_name)) if isinstance(raw_name, str) else None
        if parameter is None:
            known = ", ".join(p.name for p in operation.parameters) or "none"
            raise InvalidParameters(f"{operation.name} has no parameter called {raw_name!r} (it takes: {known}).")
        value = _as_int(parameter, raw_value)
        if not parameter.minimum <= value <= parameter.maximum:
            raise InvalidParameters(f"{parameter.name} must be {_allowed(parameter)}, not {value:,}.")
        values[parameter.name] = value
    return values
