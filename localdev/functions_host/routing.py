"""ASP.NET-style route templates as HTTP triggers declare them: `items/{id:int}`, `{name?}`, `{*rest}`."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

_PARAMETER = re.compile(r"\{([^{}]+)\}")
_CONSTRAINT = re.compile(r"^(\w+)(?:\((.*)\))?$")


def _is_int(value: str, bits: int) -> bool:
    if not re.fullmatch(r"-?\d+", value):
        return False
    return -(2 ** (bits - 1)) <= int(value) < 2 ** (bits - 1)


def _is_float(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def _is_guid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _is_datetime(value: str) -> bool:
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _constraint(text: str) -> Callable[[str], bool]:
    match = _CONSTRAINT.match(text)
    if match is None:
        raise ValueError(f"unsupported route constraint '{text}'")
    name, argument = match.group(1).lower(), match.group(2)
    numbers = [int(n) for n in argument.split(",")] if argument and name != "regex" else []
    checks: dict[str, Callable[[str], bool]] = {
        "int": lambda v: _is_int(v, 32),
        "long": lambda v: _is_int(v, 64),
        "bool": lambda v: v.lower() in ("true", "false"),
        "alpha": lambda v: bool(re.fullmatch(r"[A-Za-z]+", v)),
        "guid": _is_guid,
        "datetime": _is_datetime,
        "double": _is_float,
        "float": _is_float,
        "decimal": _is_float,
    }
    if name in checks:
        return checks[name]
    if name == "regex" and argument is not None:
        pattern = re.compile(argument, re.IGNORECASE)
        return lambda v: pattern.search(v) is not None
    if name == "minlength" and len(numbers) == 1:
        return lambda v: len(v) >= numbers[0]
    if name == "maxlength" and len(numbers) == 1:
        return lambda v: len(v) <= numbers[0]
    if name == "length" and len(numbers) in (1, 2):
        low, high = (numbers[0], numbers[0]) if len(numbers) == 1 else (numbers[0], numbers[1])
        return lambda v: low <= len(v) <= high
    if name in ("min", "max", "range") and numbers:
        low = numbers[0] if name in ("min", "range") else None
        high = numbers[-1] if name in ("max", "range") else None
        return lambda v: _is_int(v, 64) and (low is None or int(v) >= low) and (high is None or int(v) <= high)
    raise ValueError(f"unsupported route constraint '{text}'")


@dataclass
class _Parameter:
    name: str
    group: str
    optional: bool
    default: str | None
    catch_all: bool
    checks: list[Callable[[str], bool]] = field(default_factory=list)


@dataclass
class RouteTemplate:
    """One compiled template; `match` returns the route values or None."""

    template: str
    regex: re.Pattern[str]
    parameters: list[_Parameter]
    # Sort key: literal segments before parameters, constrained before unconstrained, catch-all last.
    precedence: tuple[int, ...]

    @classmethod
    def compile(cls, prefix: str, route: str) -> RouteTemplate:
        template = "/".join(part for part in (prefix.strip("/"), route.strip("/")) if part)
        parameters: list[_Parameter] = []
        pattern = ""
        precedence: list[int] = []
        for segment in template.split("/") if template else []:
            pieces = _PARAMETER.split(segment)  # literal, param, literal, param, ...
            segment_regex = ""
            rank = 0
            only_optional = len(pieces) == 3 and not pieces[0] and not pieces[2]
            optional_segment = False
            for index, piece in enumerate(pieces):
                if index % 2 == 0:
                    segment_regex += re.escape(piece)
                    continue
                parameter = _parse_parameter(piece, f"p{len(parameters)}")
                parameters.append(parameter)
                value_regex = ".*" if parameter.catch_all else "[^/]+"
                rank = max(rank, 4 if parameter.catch_all else 2 if not parameter.checks else 1)
                if parameter.optional or parameter.catch_all:
                    if not only_optional:
                        raise ValueError(f"route '{route}': an optional parameter must be a whole segment")
                    optional_segment = True
                    rank = 4 if parameter.catch_all else 3
                segment_regex += f"(?P<{parameter.group}>{value_regex})"
            pattern += f"(?:/{segment_regex})?" if optional_segment else f"/{segment_regex}"
            precedence.append(rank)
        regex = re.compile(f"^{pattern}/?$", re.IGNORECASE)
        return cls(template, regex, parameters, tuple(precedence))

    def match(self, path: str) -> dict[str, str] | None:
        found = self.regex.match(path if path.startswith("/") else "/" + path)
        if found is None:
            return None
        values: dict[str, str] = {}
        for parameter in self.parameters:
            value = found.group(parameter.group)
            if value is None or value == "":
                if parameter.default is not None:
                    values[parameter.name] = parameter.default
                continue
            if not all(check(value) for check in parameter.checks):
                return None
            values[parameter.name] = value
        return values


def _parse_parameter(text: str, group: str) -> _Parameter:
    catch_all = text.startswith("*")
    text = text.lstrip("*")
    default: str | None = None
    if "=" in text:
        text, default = text.split("=", 1)
    optional = text.endswith("?")
    text = text.rstrip("?")
    name, *constraints = text.split(":")
    if not re.fullmatch(r"\w+", name):
        raise ValueError(f"invalid route parameter '{{{text}}}'")
    return _Parameter(
        name=name,
        group=group,
        optional=optional or default is not None,
        default=default,
        catch_all=catch_all,
        checks=[_constraint(c) for c in constraints],
    )
