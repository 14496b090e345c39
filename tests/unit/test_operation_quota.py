"""The per-user quota on long operations: at once and per hour, 0 meaning no limit."""

from __future__ import annotations

from bot_logic.operation_quota import OperationQuota, new_usage, record_end, record_start


def test_no_limits_never_refuse() -> None:
    usage = new_usage()
    for n in range(50):
        record_start(usage, f"op-{n}", deadline=1000.0, now=float(n))
    assert OperationQuota(0, 0).refusal(usage, 60.0) is None


def test_running_operations_count_until_their_end_or_deadline() -> None:
    quota = OperationQuota(max_running=2, starts_per_hour=0)
    usage = new_usage()
    record_start(usage, "a", deadline=600.0, now=0.0)
    assert quota.refusal(usage, 1.0) is None
    record_start(usage, "b", deadline=900.0, now=1.0)
    assert quota.refusal(usage, 2.0) == (
        "You already have 2 operations running, the most one person may run at once. "
        "Wait for one of them to finish (or cancel it), then ask again."
    )
    record_end(usage, "a")
    assert quota.refusal(usage, 3.0) is None
    record_start(usage, "c", deadline=700.0, now=3.0)
    assert quota.refusal(usage, 699.0) is not None
    assert quota.refusal(usage, 700.0) is None  # "c" passed its deadline: its end was never seen, it stops counting


def test_starts_count_for_an_hour_and_the_wait_is_told() -> None:
    quota = OperationQuota(max_running=0, starts_per_hour=3)
    usage = new_usage()
    for at in (0.0, 600.0, 1200.0):
        record_start(usage, f"op-{at}", deadline=at + 60, now=at)
    refusal = quota.refusal(usage, 1800.0)
    assert refusal == (
        "You have started 3 operations in the last hour, the most allowed. You can start the next one in 30 min."
    )
    assert quota.refusal(usage, 3599.0) is not None
    assert quota.refusal(usage, 3600.0) is None  # the first start is an hour old


def test_a_damaged_usage_record_counts_as_empty() -> None:
    usage = {"running": ["not", "a", "map"], "starts": "nope"}
    assert OperationQuota(1, 1).refusal(usage, 10.0) is None
    record_start(usage, "a", deadline=20.0, now=10.0)
    assert OperationQuota(1, 1).refusal(usage, 11.0) is not None
