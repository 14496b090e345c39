"""Sales report: aggregates checked against a plain recomputation from the generated orders."""

from __future__ import annotations

import math
from collections import defaultdict

import pytest

from operations import get_operation
from operations import sales_report as sales
from operations.sales_report import describe, iter_order_chunks, order_value, sales_summary


def _orders(seed: int, count: int) -> list[tuple[int, int, int, int, int]]:
    return [
        order
        for chunk in iter_order_chunks(seed, count)
        for order in zip(chunk.months, chunk.regions, chunk.products, chunk.quantities, chunk.discounts, strict=True)
    ]


def test_order_value_by_hand() -> None:
    # Coffee beans at $24.50, two bags, 10% off: $44.10.
    assert order_value(0, 2, 10) == 4_410
    # Paper filters at $4.99, one pack, 5% off: 474.05 cents, rounded down.
    assert order_value(1, 1, 5) == 474


@pytest.mark.parametrize("count", [1, 7, 1_000, sales.CHUNK + 1_234])
async def test_matches_plain_recomputation(count: int) -> None:
    orders = _orders(11, count)
    assert len(orders) == count
    prices = {i: price for i, (_, price, _) in enumerate(sales.PRODUCTS)}
    by_region: dict[str, int] = defaultdict(int)
    by_month: dict[str, int] = defaultdict(int)
    by_product: dict[str, int] = defaultdict(int)
    units: dict[str, int] = defaultdict(int)
    values = []
    for month, region, product, quantity, discount in orders:
        assert quantity >= 1 and discount in (0, 5, 10, 20)
        value = math.floor(prices[product] * quantity * (100 - discount) / 100)
        values.append(value)
        by_region[sales.REGIONS[region][0]] += value
        by_month[sales.MONTHS[month][0]] += value
        by_product[sales.PRODUCTS[product][0]] += value
        units[sales.PRODUCTS[product][0]] += quantity
    values.sort()

    def nearest_rank(p: float) -> int:
        return values[math.ceil(p * count) - 1]

    summary = await sales_summary(11, count)
    assert summary.orders == count
    assert summary.revenue == sum(values)
    assert {k: v for k, v in summary.region_revenue.items() if v} == by_region
    assert {k: v for k, v in summary.month_revenue.items() if v} == by_month
    assert {k: v for k, v in summary.product_revenue.items() if v} == by_product
    assert {k: v for k, v in summary.product_units.items() if v} == units
    assert (summary.median, summary.p90, summary.p99) == (nearest_rank(0.5), nearest_rank(0.9), nearest_rank(0.99))


def test_generated_data_follows_the_weights() -> None:
    orders = _orders(5, 40_000)
    north = sum(1 for o in orders if sales.REGIONS[o[1]][0] == "North") / len(orders)
    december = sum(1 for o in orders if sales.MONTHS[o[0]][0] == "December") / len(orders)
    assert north == pytest.approx(30 / 100, abs=0.01)
    assert december == pytest.approx(15 / 102, abs=0.01)


def test_same_seed_same_data_other_seed_other_data() -> None:
    assert _orders(3, 500) == _orders(3, 500)
    assert _orders(3, 500) != _orders(4, 500)


async def test_result_text() -> None:
    async def progress(fraction: float) -> None:
        pass

    text = await get_operation("sales report").run({"orders": 1_000, "seed": 2024}, progress)
    summary = await sales_summary(2024, 1_000)
    lines = text.splitlines()
    assert lines[0] == "Sales report for 1,000 generated orders (seed 2024):"
    assert lines[1] == "- revenue $78,034.76, average order $78.03"
    assert f"${summary.revenue // 100:,}.{summary.revenue % 100:02d}" in lines[1]
    assert lines[4].startswith("- top products: ") and lines[5].startswith("- order value: median $")
    assert text == describe(summary)
