"""The README and docs/ as a newcomer uses them: every file they name exists, every `make` target and
variable is the Makefile's, every `python -m` module runs (`--help`, offline), the README stays a short
front door, and no document tells how it came about."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", ROOT / "bench" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MAKEFILE = (ROOT / "Makefile").read_text()
TARGETS = set(re.findall(r"^([a-z][\w-]*):", MAKEFILE, flags=re.M))
VARIABLES = set(re.findall(r"^([A-Z][A-Z_]*) \??:?=", MAKEFILE, flags=re.M))
FOLDERS = "docs|tests|bench|localdev|bot_logic|handlers|services|operations|infra"
PATH = re.compile(rf"(?<![\w/.-])((?:{FOLDERS})/[\w./-]*\w)")
# Named on purpose though absent: what a run writes, and the example a guide has the reader create.
NOT_IN_THE_REPOSITORY = ("bench/results/", "operations/my_report.py")
MODULE = re.compile(r"python3? -m ([\w.]+)")


def ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(ROOT)) for p in paths]


@pytest.mark.parametrize("document", DOCUMENTS, ids=ids(DOCUMENTS))
def test_every_file_a_document_names_exists(document: Path) -> None:
    text = document.read_text()
    base = document.parent
    missing = []
    for name in set(PATH.findall(text)):
        if any(character in name for character in "<>*{}") or name.startswith(NOT_IN_THE_REPOSITORY):
            continue
        if not (ROOT / name).exists() and not (base / name).exists():
            missing.append(name)
    for link in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):
        if not (base / link).exists():
            missing.append(link)
    assert not missing, f"{document.name} names what does not exist: {sorted(set(missing))}"


@pytest.mark.parametrize("document", DOCUMENTS, ids=ids(DOCUMENTS))
def test_make_targets_and_variables_are_the_makefiles(document: Path) -> None:
    text = document.read_text()
    for command in re.findall(r"`(make [^`]+)`", text) + re.findall(r"^\s*(make [^#\n]+)", text, flags=re.M):
        for word in command.split()[1:]:
            if "=" in word:
                assert word.split("=")[0] in VARIABLES, f"{document.name}: `{command}` sets an unknown variable"
            elif re.fullmatch(r"[a-z][\w-]*", word):
                assert word in TARGETS, f"{document.name}: `{command}` names no Makefile target"


MODULES = sorted({m for d in DOCUMENTS for m in MODULE.findall(d.read_text())})


@pytest.mark.parametrize("module", MODULES)
def test_every_python_module_a_document_runs_starts(module: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert result.returncode == 0, f"python -m {module} --help failed:\n{result.stderr[-2000:]}"


def test_the_readme_is_a_short_front_door() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 250
    headings = [line for line in lines if line.startswith("## ")]
    assert {"## Quick start", "## Try it", "## Deploy", "## Troubleshooting", "## Documentation"} <= set(headings)


@pytest.mark.parametrize("document", DOCUMENTS, ids=ids(DOCUMENTS))
def test_documents_describe_the_product_not_its_history(document: Path) -> None:
    text = document.read_text()
    assert not re.search(r"\bissue \d+|\bthis session\b|\bearlier the same day\b", text, flags=re.I)
