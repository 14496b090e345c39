"""Registry behaviour: lookup, parameter validation, the register/unregister extension point."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

import operations
from operations import (
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

ROOT = Path(__file__).resolve().parents[3]


async def _always_fails(parameters: Mapping[str, int], progress: ProgressCallback) -> str:
    await progress(0.0)
    raise OperationFailed("This operation always fails.")


FAILING = Operation(
    name="Always Fails",
    description="Fails on purpose (tests only).",
    parameters=(Parameter("tries", "How many times", default=1, minimum=1, maximum=3),),
    run=_always_fails,
)


CONTRACT = (
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
)


def test_package_reexports_the_contract() -> None:
    """An operation author imports the whole contract from ``operations``, and it is the registry's own."""
    assert sorted(operations.__all__) == sorted(CONTRACT)
    reexported = {name: getattr(operations, name) for name in CONTRACT}
    assert reexported == {name: getattr(operations.registry, name) for name in CONTRACT}


def test_at_least_three_builtin_operations_in_menu_order() -> None:
    ops = all_operations()
    names = [op.name for op in ops]
    assert len(ops) >= 3
    assert names[:4] == ["prime report", "sales report", "risk simulation", "route report"]
    assert len(set(names)) == len(names)
    for op in ops:
        assert op.name == op.name.lower().strip() and op.name
        assert op.description and "\n" not in op.description
        for p in op.parameters:
            assert p.minimum <= p.default <= p.maximum


def test_lookup_is_case_and_space_insensitive() -> None:
    prime = get_operation("prime report")
    assert get_operation("PRIME Report") is prime
    assert get_operation("  prime   report ") is prime


def test_unknown_operation() -> None:
    with pytest.raises(UnknownOperation) as caught:
        get_operation("tea report")
    assert isinstance(caught.value, KeyError)
    assert "tea report" in str(caught.value)
    assert not str(caught.value).startswith('"')  # plain words, not a KeyError repr


def test_defaults_filled_in() -> None:
    op = get_operation("risk simulation")
    defaults = {p.name: p.default for p in op.parameters}
    assert resolve_parameters(op, None) == defaults
    assert resolve_parameters(op, {}) == defaults
    assert resolve_parameters(op, {"days": 5}) == {**defaults, "days": 5}


def test_values_converted_to_int() -> None:
    op = get_operation("prime report")
    assert resolve_parameters(op, {"END": "20,000,000", "Start": 3.0}) == {"start": 3, "end": 20_000_000}
    assert resolve_parameters(op, {"end": " 1 000 "})["end"] == 1000
    assert resolve_parameters(op, {"end": "1_000_000"})["end"] == 1_000_000


@pytest.mark.parametrize("value", [True, 2.5, "ten", "", None, [1], "1e6", "X12"])
def test_non_integers_rejected(value: object) -> None:
    with pytest.raises(InvalidParameters, match="whole number"):
        resolve_parameters(get_operation("prime report"), {"end": value})


@pytest.mark.parametrize("value", [0, -5, 5_000_000_001])
def test_out_of_range_rejected(value: int) -> None:
    with pytest.raises(InvalidParameters) as refusal:
        resolve_parameters(get_operation("prime report"), {"end": value})
    allowed = "a whole number from 1 to 5,000,000,000 (default 500,000,000)"
    assert str(refusal.value) == f"end must be {allowed}, not {value:,}."


def test_a_typed_negative_number_is_told_its_range_not_called_a_non_number() -> None:
    with pytest.raises(InvalidParameters) as refusal:
        resolve_parameters(get_operation("prime report"), {"end": "-5"})
    assert str(refusal.value) == "end must be a whole number from 1 to 5,000,000,000 (default 500,000,000), not -5."


def test_a_name_that_is_not_text_is_an_unknown_operation() -> None:
    """A queued request's name is JSON: a number or a list is refused by name, not a crash of the worker."""
    for name in (5, None, ["prime report"]):
        with pytest.raises(UnknownOperation, match="There is no operation called"):
            get_operation(name)  # type: ignore[arg-type]


def test_a_parameter_given_to_an_operation_that_takes_none_is_refused_saying_so() -> None:
    plain = Operation(name="plain", description="No parameters.", parameters=(), run=_always_fails)
    with pytest.raises(InvalidParameters) as refusal:
        resolve_parameters(plain, {"size": 3})
    assert str(refusal.value) == "plain has no parameter called 'size' (it takes: none)."


def test_an_operation_without_a_name_is_not_registered() -> None:
    before = all_operations()
    with pytest.raises(ValueError) as refusal:
        register(Operation(name="  ", description="Nameless.", parameters=(), run=_always_fails))
    assert str(refusal.value) == "an operation needs a name"
    assert all_operations() == before


def test_a_value_that_is_not_a_number_is_named_with_what_is_allowed() -> None:
    with pytest.raises(InvalidParameters) as refusal:
        resolve_parameters(get_operation("prime report"), {"end": "abc"})
    assert str(refusal.value) == "end must be a whole number from 1 to 5,000,000,000 (default 500,000,000), not 'abc'."
    with pytest.raises(InvalidParameters, match="end needs a value: a whole number from 1"):
        resolve_parameters(get_operation("prime report"), {"end": ""})


def test_range_bounds_are_inclusive() -> None:
    op = get_operation("risk simulation")
    assert resolve_parameters(op, {"days": 1})["days"] == 1
    assert resolve_parameters(op, {"days": 252})["days"] == 252


def test_unknown_parameter_rejected() -> None:
    with pytest.raises(InvalidParameters, match=r"no parameter called 'size'.*start, end"):
        resolve_parameters(get_operation("prime report"), {"size": 3})


def test_parameter_default_must_be_in_range() -> None:
    with pytest.raises(ValueError, match="outside"):
        Parameter("n", "a count", default=0, minimum=1, maximum=10)
    # Either bound is a fine default (an author's "from 1" or "at most 10").
    assert Parameter("n", "a count", default=1, minimum=1, maximum=10).default == 1
    assert Parameter("n", "a count", default=10, minimum=1, maximum=10).default == 10


async def test_register_and_unregister() -> None:
    before = all_operations()
    unregister = register(FAILING)
    try:
        assert all_operations() == (*before, FAILING)
        assert get_operation("always fails") is FAILING
        assert resolve_parameters(FAILING, None) == {"tries": 1}

        async def progress(fraction: float) -> None:
            pass

        with pytest.raises(OperationFailed, match="always fails"):
            await get_operation("always fails").run({"tries": 1}, progress)
        with pytest.raises(ValueError, match="already registered"):
            register(FAILING)
        with pytest.raises(ValueError, match="already registered"):
            register(get_operation("prime report"))
    finally:
        unregister()
    assert all_operations() == before
    with pytest.raises(UnknownOperation):
        get_operation("always fails")
    unregister()  # a second call is harmless
    assert all_operations() == before


def _modules_loaded_by(statement: str) -> list[str]:
    code = (
        f"import sys; before = set(sys.modules); {statement}; "
        "new = sorted(set(sys.modules) - before); print('\\n'.join(new))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return result.stdout.split()


def test_a_fresh_process_loads_the_builtin_menu_on_first_use() -> None:
    """A cold start (a new host process): the first lookup loads the built-ins, in menu order.
    In a fresh process, since this one loaded them long ago (under mutmut too: each mutant's tests
    run in a fork of a process that ran them all once)."""
    code = (
        "import operations; print(operations.get_operation('Prime Report').name); "
        "print('\\n'.join(op.name for op in operations.all_operations()))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    first, *menu = result.stdout.splitlines()
    assert first == "prime report"
    assert menu[:4] == ["prime report", "sales report", "risk simulation", "route report"]
    assert menu == [op.name for op in all_operations()]  # the same menu as a process that has served for a while


def test_import_is_cheap() -> None:
    """Importing the package loads no operation module and nothing outside the stdlib."""
    loaded = _modules_loaded_by("import operations")
    if "mutmut" in loaded:  # under mutation testing the mutated copy imports the tester's trampoline
        harness = set(_modules_loaded_by("import mutmut.mutation.trampoline"))
        loaded = [m for m in loaded if m not in harness]
    ours = [m for m in loaded if m == "operations" or m.startswith("operations.")]
    assert ours == ["operations", "operations.registry"]
    foreign = [m for m in loaded if m not in ours and m.split(".")[0] not in sys.stdlib_module_names]
    assert foreign == []
