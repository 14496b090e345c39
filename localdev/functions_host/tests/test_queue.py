"""Queue triggers through the local Functions host against Azurite."""

from __future__ import annotations

import base64
import signal
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import QueueClient, TextBase64EncodePolicy

from localdev.emulators import Azurite
from localdev.functions_host import HostProcess, spawn_host
from localdev.functions_host.tests.helpers import APPS, LOG_DIR, copy_app, records
from localdev.processes import wait_until

pytestmark = pytest.mark.emulators

BATCH_SIZE = 4  # queue_app/host.json batchSize
BUNDLE = {"id": "Microsoft.Azure.Functions.ExtensionBundle", "version": "[4.*, 5.0.0)"}


def queue(azurite: Azurite, name: str, base64: bool = True) -> QueueClient:
    policy = TextBase64EncodePolicy() if base64 else None
    return QueueClient.from_connection_string(azurite.connection_string, name, message_encode_policy=policy)


def peek_all(azurite: Azurite, name: str) -> list[str]:
    client = queue(azurite, name)
    try:
        return [str(message.content) for message in client.peek_messages(max_messages=32)]
    except Exception:  # the poison queue does not exist until the first poison message
        return []


def queue_exists(azurite: Azurite, name: str) -> bool:
    try:
        queue(azurite, name).get_queue_properties()
    except ResourceNotFoundError:
        return False
    return True


@pytest.fixture(scope="module")
def names() -> dict[str, str]:
    suffix = uuid.uuid4().hex[:8]
    return {
        "OrdersQueue": f"orders-{suffix}",
        "FailQueue": f"fails-{suffix}",
        "BatchQueue": f"batch-{suffix}",
        "SlowQueue": f"slow-{suffix}",
    }


@pytest.fixture(scope="module")
def record_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("queue-records")


def spawn_queue_app(
    azurite: Azurite,
    record_dir: Path,
    settings: dict[str, str],
    *,
    app_dir: Path = APPS / "queue_app",
    extra_args: Sequence[str] = (),
    log_path: Path,
) -> HostProcess:
    """The queue test app on Azurite, recording its invocations in record_dir; settings name its queues."""
    return spawn_host(
        app_dir,
        settings={"AzureWebJobsStorage": azurite.connection_string, "RECORD_DIR": str(record_dir), **settings},
        extra_args=extra_args,
        log_path=log_path,
    )


@pytest.fixture(scope="module")
def queue_host(azurite: Azurite, names: dict[str, str], record_dir: Path) -> Iterator[HostProcess]:
    # The host does not create trigger queues (neither does the real one): the test does.
    for name in names.values():
        queue(azurite, name).create_queue()
    # A whole batch is waiting before the host starts, so its first receive takes all of it.
    batch = queue(azurite, names["BatchQueue"])
    for number in range(BATCH_SIZE):
        batch.send_message(f"batch-{number}")
    # Short leases so the slow test proves renewal (renewed every second).
    host = spawn_queue_app(
        azurite,
        record_dir,
        {"BATCH_SIZE": str(BATCH_SIZE), "SLOW_SECONDS": "3", **names},
        extra_args=["--queue-message-lease", "2"],
        log_path=LOG_DIR / "functions-host-queue.log",
    )
    yield host
    assert host.stop() == 0


def test_base64_message_is_delivered_as_queue_message(
    azurite: Azurite, queue_host: HostProcess, names: dict[str, str], record_dir: Path
) -> None:
    sent = queue(azurite, names["OrdersQueue"]).send_message("caf\u00e9 order")
    (received,) = wait_until(lambda: records(record_dir, "orders"), message="the orders function")
    assert received["id"] == sent.id
    assert received["body"] == "caf\u00e9 order"
    assert received["dequeue_count"] == 1
    assert received["insertion_time"] and received["expiration_time"] and received["pop_receipt"]
    assert received["is_func_queue_message"]
    # Success deletes the message.
    wait_until(lambda: not peek_all(azurite, names["OrdersQueue"]), message="the message to be deleted")
    assert f"orders: queueTrigger (queue '{names['OrdersQueue']}', encoding base64)" in queue_host.output


def test_batch_is_fetched_and_processed_concurrently(queue_host: HostProcess, record_dir: Path) -> None:
    # The function waits on a barrier of BATCH_SIZE: it only succeeds if all run at once.
    done = wait_until(lambda: len(records(record_dir, "batch")) >= BATCH_SIZE, message="the batch")
    assert sorted(r["body"] for r in records(record_dir, "batch")) == [f"batch-{n}" for n in range(BATCH_SIZE)]
    assert all(r["dequeue_count"] == 1 for r in records(record_dir, "batch")), done


def test_failures_are_redelivered_then_poisoned(
    azurite: Azurite, queue_host: HostProcess, names: dict[str, str], record_dir: Path
) -> None:
    queue(azurite, names["FailQueue"]).send_message("doomed")
    poison = f"{names['FailQueue']}-poison"
    poisoned = wait_until(lambda: peek_all(azurite, poison), message="the poison queue")
    # The poison copy is the raw text, so it decodes like the original.
    assert poisoned == [base64.b64encode(b"doomed").decode()]
    attempts = records(record_dir, "always_fails")
    assert sorted(a["dequeue_count"] for a in attempts) == [1, 2, 3]  # maxDequeueCount 3
    assert not peek_all(azurite, names["FailQueue"])
    assert "Message has reached MaxDequeueCount of 3" in queue_host.output


def test_undecodable_message_goes_straight_to_poison(
    azurite: Azurite, queue_host: HostProcess, names: dict[str, str], record_dir: Path
) -> None:
    queue(azurite, names["OrdersQueue"], base64=False).send_message("this is not base64!")
    poison = f"{names['OrdersQueue']}-poison"
    assert wait_until(lambda: peek_all(azurite, poison), message="the poison queue") == ["this is not base64!"]
    assert all(r["body"] != "this is not base64!" for r in records(record_dir, "orders"))
    assert "Message decoding has failed! Check MessageEncoding settings." in queue_host.output


def test_long_invocation_keeps_its_message_invisible(
    azurite: Azurite, queue_host: HostProcess, names: dict[str, str], record_dir: Path
) -> None:
    # The function runs 3 s with a 2 s lease: without renewal it would be delivered twice.
    queue(azurite, names["SlowQueue"]).send_message("slow")
    wait_until(lambda: records(record_dir, "slow_done"), timeout=15, message="the slow function")
    assert [r["dequeue_count"] for r in records(record_dir, "slow_started")] == [1]


def test_message_encoding_none(azurite: Azurite, tmp_path: Path) -> None:
    host_json = {
        "version": "2.0",
        "extensionBundle": BUNDLE,
        "extensions": {"queues": {"messageEncoding": "none", "maxPollingInterval": "00:00:00.2"}},
    }
    app_dir = copy_app("queue_app", tmp_path, host_json)
    orders = f"plain-{uuid.uuid4().hex[:8]}"
    queue(azurite, orders).create_queue()
    record_dir = tmp_path / "records"
    host = spawn_queue_app(
        azurite,
        record_dir,
        {"OrdersQueue": orders, "FailQueue": f"{orders}-f", "BatchQueue": f"{orders}-b", "SlowQueue": f"{orders}-s"},
        app_dir=app_dir,
        log_path=LOG_DIR / "functions-host-queue-none.log",
    )
    try:
        queue(azurite, orders, base64=False).send_message('{"plain": "json"}')
        (received,) = wait_until(lambda: records(record_dir, "orders"), message="the orders function")
        assert received["body"] == '{"plain": "json"}'
        assert "encoding none" in host.output
    finally:
        assert host.stop() == 0


def test_trigger_queue_is_not_created_and_is_served_once_it_exists(azurite: Azurite, tmp_path: Path) -> None:
    """The trigger polls a missing queue without creating it, as the storage extension does: a producer
    that never creates its queue fails here as it would in Azure. A long name has no poison queue."""
    suffix = uuid.uuid4().hex[:8]
    orders = f"late-{suffix}"
    # 57 characters: "-poison" would pass the 63 allowed, so the extension has no poison queue for it.
    long_fails = f"fails-{suffix}-" + "x" * (57 - len(f"fails-{suffix}-"))
    for name in (f"{orders}-b", f"{orders}-s"):
        queue(azurite, name).create_queue()
    queue(azurite, long_fails).create_queue()
    record_dir = tmp_path / "records"
    host = spawn_queue_app(
        azurite,
        record_dir,
        {"OrdersQueue": orders, "FailQueue": long_fails, "BatchQueue": f"{orders}-b", "SlowQueue": f"{orders}-s"},
        extra_args=["--queue-message-lease", "1"],
        log_path=LOG_DIR / "functions-host-queue-late.log",
    )
    try:
        host.wait_for_output(f"Queue '{orders}' does not exist")
        assert not peek_all(azurite, orders) and not queue_exists(azurite, orders)
        queue(azurite, orders).create_queue()
        queue(azurite, orders).send_message("late order")
        (received,) = wait_until(lambda: records(record_dir, "orders"), message="the orders function")
        assert received["body"] == "late order"

        # Without a poison queue a failed message is neither released nor poisoned: it comes back
        # only when its lease ends, and past maxDequeueCount (3) it is no longer run.
        assert f"Queue '{long_fails}' has no poison queue" in host.output
        queue(azurite, long_fails).send_message("doomed")
        wait_until(
            lambda: any(m.dequeue_count >= 4 for m in queue(azurite, long_fails).peek_messages()),
            timeout=20,
            message="a fourth delivery",
        )
        assert sorted(a["dequeue_count"] for a in records(record_dir, "always_fails")) == [1, 2, 3]
        assert "Moving message to queue" not in host.output
    finally:
        assert host.stop() == 0


def test_ctrl_c_stops_at_once_and_releases_the_running_message(azurite: Azurite, tmp_path: Path) -> None:
    names = {key: f"{key.lower()[:5]}-{uuid.uuid4().hex[:8]}" for key in ("OrdersQueue", "FailQueue", "BatchQueue")}
    slow = f"slow-{uuid.uuid4().hex[:8]}"
    for name in [*names.values(), slow]:
        queue(azurite, name).create_queue()
    record_dir = tmp_path / "records"
    host = spawn_queue_app(
        azurite,
        record_dir,
        {"SLOW_SECONDS": "60", "SlowQueue": slow, **names},
        log_path=LOG_DIR / "functions-host-queue-interrupt.log",
    )
    try:
        queue(azurite, slow).send_message("long job")
        wait_until(lambda: records(record_dir, "slow_started"), message="the slow function to start")
        started = time.monotonic()
        host.signal(signal.SIGINT)
        assert host.wait(10) == 0
        assert time.monotonic() - started < 3.0  # func start is gone within a second or two too
        # Released as a failed attempt (visible again after visibilityTimeout 0), not left invisible
        # for the rest of its 10-minute lease.
        (message,) = wait_until(lambda: queue(azurite, slow).peek_messages(), timeout=5, message="the release")
        assert message.content == base64.b64encode(b"long job").decode() and message.dequeue_count == 1
        assert "abandoned, the host is stopping" in host.output
    finally:
        host.stop()
