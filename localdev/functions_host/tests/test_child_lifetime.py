"""Children of the local stack (this host among them, localdev/processes.py) die with the process
that started them, even when it is killed outright, and not before: a child started from a
short-lived thread outlives that thread."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from localdev.processes import PROJECT_ROOT, wait_until

PARENT = textwrap.dedent(
    """
    import sys, threading, time
    from localdev.processes import spawn

    started = []
    # Started from a thread that ends at once, as asyncio.to_thread does it.
    thread = threading.Thread(target=lambda: started.append(spawn("sleeper", ["sleep", "300"])))
    thread.start()
    thread.join()
    print(started[0].popen.pid, flush=True)
    time.sleep(300)
    """
)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie is dead, waiting to be reaped


def test_a_child_outlives_the_thread_that_started_it_and_dies_with_its_killed_parent() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT], cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert alive(child)  # the thread that asked for it has ended; the child runs on
        assert os.getsid(child) == child  # its own session: a terminal's Ctrl-C does not reach it
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        wait_until(lambda: not alive(child), timeout=10, message="the child to die with its parent")
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
