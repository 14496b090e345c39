"""CPU time of local processes, from /proc (psutil is not a dependency).

A process's CPU time is utime + stime of /proc/<pid>/stat (all its threads), plus cutime + cstime
(children it has waited for). Live children are found by walking the process tree, so a server
that forks workers is counted whole.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

CLOCK_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (which may hold spaces and parentheses)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # exited meanwhile
        return None
    return text[text.rindex(")") + 2 :].split()


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process on the machine."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat_fields(int(entry.name))) is not None:
            parents[int(entry.name)] = int(fields[1])  # field 4 of stat: ppid
    return parents


def process_tree(root: int) -> list[int]:
    """`root` and its live descendants."""
    children: dict[int, list[int]] = {}
    for pid, parent in _parents().items():
        children.setdefault(parent, []).append(pid)
    tree, pending = [], [root]
    while pending:
        pid = pending.pop()
        tree.append(pid)
        pending.extend(children.get(pid, []))
    return tree


def cpu_seconds(pid: int) -> float:
    """utime + stime + cutime + cstime of one process, in seconds (0 once it has exited)."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    # stat fields 14-17 (1-based, counting pid and comm): utime, stime, cutime, cstime.
    return sum(int(value) for value in fields[11:15]) / CLOCK_TICKS_PER_SECOND


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds of `root` and its live descendants (a child that exited and was waited for is in
    its parent's cutime/cstime, so the total stays continuous)."""
    return sum(cpu_seconds(pid) for pid in process_tree(root))


def trees(*roots: int) -> Callable[[], float]:
    """A reader of the CPU seconds of these process trees."""
    return lambda: sum(tree_cpu_seconds(root) for root in roots)


def this_process() -> float:
    """CPU seconds of this process alone (its children are the stack's servers, measured apart)."""
    times = os.times()
    return times.user + times.system


@dataclass
class CpuMeter:
    """CPU seconds used by named readers between start() and stop(), e.g.
    CpuMeter({"app": trees(host_pid), "client": this_process})."""

    readers: Mapping[str, Callable[[], float]]
    _started: dict[str, float] = field(default_factory=dict)

    def _read(self) -> dict[str, float]:
        return {name: read() for name, read in self.readers.items()}

    def start(self) -> None:
        self._started = self._read()

    def stop(self) -> dict[str, float]:
        """CPU seconds per reader since start()."""
        ended = self._read()
        return {name: max(0.0, ended[name] - self._started.get(name, 0.0)) for name in ended}


def ms_per_turn(cpu_s: float, turns: int) -> float | None:
    """CPU milliseconds per turn; None without turns (JSON stays finite)."""
    return round(cpu_s * 1000 / turns, 2) if turns else None
