"""The mutation score per core file, from mutmut's results in mutants/ (`make mutation` prints it).

Score = killed / (mutants - equivalent). Killed counts a failing test, a timeout (a mutant that hangs
the turn) and a crash. Equivalent mutants (they change no behaviour anyone can notice) are listed,
each with why, in mutation/equivalents.md; one listed there that the tests now kill is reported, so
the list stays true. Exits 1 when a file scores under the bar (90 %) or was not run.
"""

from __future__ import annotations

import json
import re
import sys
import tomllib
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EQUIVALENTS = Path(__file__).with_name("equivalents.md")
BAR = 90.0
KILLED = "killed"
# mutmut's exit codes (mutmut/stats.py): 1 and 3 a failing test run, 36/24/152/255/-24 a timeout, -11/-9 a crash.
STATUS_BY_EXIT_CODE = {1: KILLED, 3: KILLED, 36: KILLED, 24: KILLED, -24: KILLED, 152: KILLED, 255: KILLED,
                       -11: KILLED, -9: KILLED, 37: KILLED, 0: "survived", 5: "no tests", 33: "no tests",
                       34: "skipped", None: "not checked"}  # fmt: skip


def core_files() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]
    return list(config["only_mutate"])


def equivalent_mutants() -> set[str]:
    """The names listed in equivalents.md: a line starting with a mutant's name in backticks."""
    return set(re.findall(r"^- `([^`]+__mutmut_\d+)`", EQUIVALENTS.read_text(), flags=re.MULTILINE))


def main() -> int:
    equivalents = equivalent_mutants()
    failing = []
    print(f"{'file':36} {'killed':>6} {'survived':>8} {'no test':>7} {'equiv.':>6} {'score':>7}")
    for path in core_files():
        meta = ROOT / "mutants" / f"{path}.meta"
        if not meta.exists():
            print(f"{path:36} not run")
            failing.append(path)
            continue
        exit_codes: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"]
        counts: Counter[str] = Counter()
        for name, code in exit_codes.items():
            status = STATUS_BY_EXIT_CODE.get(code, "suspicious")
            if name in equivalents:
                counts["equivalent"] += 1
                if status == KILLED:
                    print(f"  listed as equivalent but killed (take it off the list): {name}")
            else:
                counts[status] += 1
        counted = len(exit_codes) - counts["equivalent"]
        score = 100.0 * counts[KILLED] / counted if counted else 100.0
        print(f"{path:36} {counts[KILLED]:6} {counts['survived']:8} {counts['no tests']:7} "
              f"{counts['equivalent']:6} {score:6.1f}%")  # fmt: skip
        unfinished = counts["not checked"] + counts["skipped"] + counts["suspicious"]
        if unfinished:
            print(f"  {unfinished} mutants not checked or suspicious")
        if score < BAR or unfinished:
            failing.append(path)
    if failing:
        print(f"under {BAR:.0f} % or not fully run: {', '.join(failing)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
