"""The import rules the layout promises, checked on every production module (lazy imports too).

  function_app (the face) -> bootstrap (the composition root) -> handlers -> bot_logic -> operations
                                                                        \\-> services

* bot_logic decides; it knows nothing of services (storage, queues, the adapter): what it
  needs of them is a port it defines (bot_logic/effects.py) or a plain callable.
* services talk to the outside world and know nothing of the bot.
* operations are self-contained; bot_logic reads their registry for the menu.
* Nothing below bootstrap imports it; production code never imports localdev, tests or bench.
* Packages installed for the benchmarks only (the Microsoft 365 Agents SDK baseline) stay out of production.
* Only services/settings.py reads the environment.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from localdev.processes import PROJECT_ROOT

PRODUCTION = ("function_app", "bootstrap", "handlers", "bot_logic", "operations", "services")
NEVER = ("localdev", "tests", "bench")
# What each part may import of the project's own code (itself always).
ALLOWED: dict[str, set[str]] = {
    "function_app": {"bootstrap", "handlers"},
    "bootstrap": {"handlers", "bot_logic", "operations", "services"},
    "handlers": {"bot_logic", "operations", "services"},
    "bot_logic": {"operations"},
    "operations": set(),
    "services": set(),
}
# Single modules a part may import beyond those (none today: the clock bot logic names is its own).
ALLOWED_MODULES: dict[str, set[str]] = {}
SETTINGS_MODULE = PROJECT_ROOT / "services" / "settings.py"
BENCH_ONLY_PACKAGES = {"microsoft_agents"}  # requirements-dev.txt: bench/agents_baseline


def production_files() -> list[Path]:
    files = [PROJECT_ROOT / "function_app.py", PROJECT_ROOT / "bootstrap.py"]
    for package in PRODUCTION[2:]:
        files += sorted((PROJECT_ROOT / package).rglob("*.py"))
    return files


def part_of(path: Path) -> str:
    return path.relative_to(PROJECT_ROOT).parts[0].removesuffix(".py")


def imported_modules(path: Path) -> set[str]:
    """Every module the module imports, anywhere in it; relative imports stay inside."""
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module)
    return modules


def imported_parts(path: Path) -> set[str]:
    """Top-level names of everything the module imports, but for the single modules ALLOWED_MODULES lets it."""
    allowed = ALLOWED_MODULES.get(part_of(path), set())
    return {module.split(".")[0] for module in imported_modules(path) - allowed}


@pytest.mark.parametrize("path", production_files(), ids=lambda p: str(p.relative_to(PROJECT_ROOT)))
def test_imports_run_one_way(path: Path) -> None:
    part = part_of(path)
    project = set(PRODUCTION) | set(NEVER)
    upward = {name for name in imported_parts(path) & project if name != part and name not in ALLOWED[part]}
    assert not upward, f"{path.relative_to(PROJECT_ROOT)} ({part}) may not import {sorted(upward)}"


@pytest.mark.parametrize("path", production_files(), ids=lambda p: str(p.relative_to(PROJECT_ROOT)))
def test_production_never_imports_bench_only_packages(path: Path) -> None:
    bench_only = imported_parts(path) & BENCH_ONLY_PACKAGES
    assert not bench_only, f"{path.relative_to(PROJECT_ROOT)} imports bench-only {sorted(bench_only)}"


@pytest.mark.parametrize("path", production_files(), ids=lambda p: str(p.relative_to(PROJECT_ROOT)))
def test_only_the_settings_module_reads_the_environment(path: Path) -> None:
    if path == SETTINGS_MODULE:
        return
    text = path.read_text()
    assert "os.environ" not in text and "getenv" not in text, f"{path.relative_to(PROJECT_ROOT)} reads the environment"


def test_the_rules_are_checked_on_real_code() -> None:
    """The check itself can fail: the composition root does import every layer."""
    assert {"handlers", "bot_logic", "services"} <= imported_parts(PROJECT_ROOT / "bootstrap.py")
    assert "bootstrap" in imported_parts(PROJECT_ROOT / "function_app.py")
    assert BENCH_ONLY_PACKAGES <= imported_parts(PROJECT_ROOT / "bench" / "agents_baseline" / "app.py")


def test_every_handlers_error_code_is_pascal_case_as_the_bot_frameworks() -> None:
    """One style for the `code` of every error answer ({"error": {"code", "message"}}): the Bot
    Framework's (BadRequest, Unauthorized, ...), so a client matches codes one way."""
    codes = {
        match.group(1)
        for path in sorted((PROJECT_ROOT / "handlers").glob("*.py"))
        for match in re.finditer(r"\b(?:error\(\s*\d{3},|code: str =)\s*\"([^\"]+)\"", path.read_text())
    }
    assert {"BadRequest", "MethodNotAllowed", "InvalidNotification"} <= codes
    assert [code for code in codes if not re.fullmatch(r"(?:[A-Z][a-z0-9]+)+", code)] == []
