"""Long-running operations the bot can run on the queue-triggered worker.

Importing this package is cheap: the built-in operations load on first lookup.
"""

from .registry import (
    InvalidParameters,
    Operation,
    OperationFailed,
    Parameter,
    ProgressCallback,
    UnknownOperation,
    all_operations,
    get_operation,
    register,
    resolve_parameters,
)

__all__ = [
    "InvalidParameters",
    "Operation",
    "OperationFailed",
    "Parameter",
    "ProgressCallback",
    "UnknownOperation",
    "all_operations",
    "get_operation",
    "register",
    "resolve_parameters",
]
