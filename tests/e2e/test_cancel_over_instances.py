"""Cancel reaches the work, whichever instance runs it: two instances of the app behind the balancer,
a long operation cancelled through Microsoft's Direct Line client; the worker's CPU stops."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from localdev.directline.tests.directline_js import DirectLineJsClient
from localdev.emulators import Azurite, CosmosStandIn
from localdev.functions_host.child import HostProcess
from localdev.stack import LocalStack
from tests.e2e.test_long_operations_directline import bot_texts, introduce, is_bot_text
from tests.support.local_bot import running_bot

pytestmark = [pytest.mark.emulators, pytest.mark.node]

STOPPED = re.compile(r"operation (\S+) stopped at (\d+)%: its conversation no longer waits for it")
# About 30 s of work on these machines: far longer than the bound on stopping.
LONG_SALES = "sales report orders=20000000"


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime, stime in clock ticks (100 per second)


@pytest.fixture(scope="module")
def two_instances(azurite: Azurite, cosmos: CosmosStandIn) -> Iterator[LocalStack]:
    # Progress every second (a message within 3 s): the test cancels once the work has visibly begun.
    with running_bot(azurite, cosmos, instances=2, ProgressIntervalSeconds="1") as running:
        yield running


def test_cancel_stops_the_operation_on_whichever_instance_runs_it(two_instances: LocalStack) -> None:
    bot = two_instances
    with DirectLineJsClient() as user:
        user.start(bot.directline.domain, secret=bot.secret, user_id="dl_canceller")
        introduce(user, "Cleo")
        mark = user.mark()
        user.send(LONG_SALES)
        user.wait_for_activity(is_bot_text("^Starting the sales report"), since=mark, timeout=15)
        # Let it get going on an instance's worker before the user changes their mind.
        user.wait_for_activity(is_bot_text(r"^Still working on the sales report: \d+% done"), since=mark, timeout=30)
        host = instance_running_the_worker(bot)
        cpu_at_cancel = cpu_seconds(host.pid)
        cancelled_at = time.monotonic()
        mark = user.mark()
        user.send("cancel")
        user.wait_for_activity(is_bot_text("^Cancelled the sales report.$"), since=mark)
        output = host.wait_for_output(lambda text: STOPPED.search(text) is not None, timeout=30)
        stopped_after = time.monotonic() - cancelled_at
        cpu_until_stop = cpu_seconds(host.pid) - cpu_at_cancel
        [(_, percent)] = STOPPED.findall(output)
        assert int(percent) < 100
        # After the stop, the instance costs what serving the user costs: measured over a tiny operation's
        # round trip (queue polling included), which takes seconds.
        cpu_before_exchange, exchange_started = cpu_seconds(host.pid), time.monotonic()
        mark = user.mark()
        user.send("prime report end=1000")
        user.wait_for_activity(is_bot_text("^Thanks for waiting. Prime report"), since=mark, timeout=60)
        exchange = time.monotonic() - exchange_started
        cpu_after_stop = cpu_seconds(host.pid) - cpu_before_exchange
        print(
            f"\ncancel -> worker stopped: {stopped_after:.1f} s, at {percent}% of the sales report; "
            f"host CPU meanwhile {cpu_until_stop:.1f} s; afterwards {cpu_after_stop:.2f} s of CPU over {exchange:.1f} s"
        )
        texts = bot_texts(user)
        assert not any(t.startswith("Thanks for waiting. Sales report") for t in texts)
        assert len([t for t in texts if t.startswith("Cancelled the sales report")]) == 1


def instance_running_the_worker(bot: LocalStack) -> HostProcess:
    """The instance whose worker picked up the operation (only one does)."""
    deadline = time.monotonic() + 30
    while True:
        for host in bot.hosts:
            try:
                host.wait_for_output("Executing 'Functions.operations_worker'", timeout=0.25)
                return host
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise
