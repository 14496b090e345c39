"""Sales report over a generated year of orders: totals per region and month, top products, percentiles."""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from itertools import accumulate

from ._support import Progress, as_list, in_thread, money
from .registry import Operation, Parameter, ProgressCallback

# The catalogue: (product, unit price in cents, relative popularity).
PRODUCTS: tuple[tuple[str, int, int], ...] = (
    ("Coffee beans 1 kg", 2_450, 120),
    ("Paper filters", 499, 90),
    ("Ceramic mug", 1_299, 80),
    ("Travel tumbler", 2_199, 60),
    ("Hand grinder", 5_900, 35),
    ("Pour-over kettle", 7_450, 30),
    ("French press", 3_995, 40),
    ("Milk frother", 8_900, 22),
    ("Espresso machine", 44_900, 8),
    ("Burr grinder", 18_900, 12),
    ("Cold brew kit", 3_450, 25),
    ("Descaler", 1_150, 45),
    ("Tea sampler", 2_800, 30),
    ("Barista course", 14_900, 5),
    ("Gift card", 5_000, 20),
    ("Subscription box", 9_900, 15),
)
REGIONS: tuple[tuple[str, int], ...] = (("North", 30), ("South", 22), ("East", 18), ("West", 20), ("Central", 10))
MONTHS: tuple[tuple[str, int], ...] = (
    ("January", 7), ("February", 6), ("March", 8), ("April", 8), ("May", 8), ("June", 7),
    ("July", 7), ("August", 7), ("September", 8), ("October", 9), ("November", 12), ("December", 15),
)  # fmt: skip
QUANTITIES: tuple[tuple[int, int], ...] = ((1, 50), (2, 22), (3, 12), (4, 7), (5, 4), (6, 2), (8, 2), (10, 1))
DISCOUNTS: tuple[tuple[int, int], ...] = ((0, 70), (5, 15), (10, 10), (20, 5))  # percent off

# ~0.1 s of generation per chunk. Part of the data definition: the random stream is
# drawn chunk by chunk, so changing it changes the generated orders.
CHUNK = 50_000


@dataclass(frozen=True)
class OrderColumns:
    """One chunk of orders, column by column (indexes into the tables above)."""

    months: list[int]
    regions: list[int]
    products: list[int]
    quantities: list[int]
    discounts: list[int]  # percent off


def order_value(product: int, quantity: int, discount: int) -> int:
    """Order value in cents; the discount is rounded down to whole cents in the customer's favour."""
    return PRODUCTS[product][1] * quantity * (100 - discount) // 100


def iter_order_chunks(seed: int, count: int) -> Iterator[OrderColumns]:
    """The generated orders: the same seed and count always give the same orders."""
    rng = random.Random(seed)

    def draw(weights: list[int], size: int) -> list[int]:
        return rng.choices(range(len(weights)), cum_weights=list(accumulate(weights)), k=size)

    month_w = [w for _, w in MONTHS]
    region_w = [w for _, w in REGIONS]
    product_w = [w for _, _, w in PRODUCTS]
    quantity_w = [w for _, w in QUANTITIES]
    discount_w = [w for _, w in DISCOUNTS]
    for first in range(0, count, CHUNK):
        size = min(CHUNK, count - first)
        yield OrderColumns(
            months=draw(month_w, size),
            regions=draw(region_w, size),
            products=draw(product_w, size),
            quantities=[QUANTITIES[i][0] for i in draw(quantity_w, size)],
            discounts=[DISCOUNTS[i][0] for i in draw(discount_w, size)],
        )


@dataclass(frozen=True)
class SalesSummary:
    seed: int
    orders: int
    revenue: int  # cents
    region_revenue: dict[str, int]
    month_revenue: dict[str, int]
    product_revenue: dict[str, int]
    product_units: dict[str, int]
    median: int  # order value, cents; nearest-rank percentiles
    p90: int
    p99: int

    def top_products(self, n: int = 3) -> list[tuple[str, int]]:
        return sorted(self.product_revenue.items(), key=lambda item: (-item[1], item[0]))[:n]


class _Tally:
    def __init__(self) -> None:
        self.region = [0] * len(REGIONS)
        self.month = [0] * len(MONTHS)
        self.product = [0] * len(PRODUCTS)
        self.units = [0] * len(PRODUCTS)
        # Order values take few distinct values, so a histogram gives exact percentiles
        # without sorting millions of numbers (a long sort would hold the GIL).
        self.histogram: dict[int, int] = {}

    def add(self, chunk: OrderColumns) -> None:
        region, month, product, units, histogram = self.region, self.month, self.product, self.units, self.histogram
        prices = [price for _, price, _ in PRODUCTS]
        for m, r, p, q, d in zip(
            chunk.months, chunk.regions, chunk.products, chunk.quantities, chunk.discounts, strict=True
        ):
            value = prices[p] * q * (100 - d) // 100
            region[r] += value
            month[m] += value
            product[p] += value
            units[p] += q
            histogram[value] = histogram.get(value, 0) + 1

    def percentile(self, orders: int, percent: int) -> int:
        rank = max(1, -(-orders * percent // 100))  # nearest rank: ceil(p * n)
        seen = 0
        for value in sorted(self.histogram):
            seen += self.histogram[value]
            if seen >= rank:
                return value
        return 0


async def sales_summary(seed: int, orders: int, progress: Progress | None = None) -> SalesSummary:
    tally = _Tally()
    chunks = iter_order_chunks(seed, orders)
    done = 0

    def next_chunk() -> int:
        chunk = next(chunks)
        tally.add(chunk)
        return len(chunk.months)

    while done < orders:
        done += await in_thread(next_chunk)
        if progress is not None:
            await progress.update(done, orders)
    return SalesSummary(
        seed=seed,
        orders=orders,
        revenue=sum(tally.region),
        region_revenue={name: tally.region[i] for i, (name, _) in enumerate(REGIONS)},
        month_revenue={name: tally.month[i] for i, (name, _) in enumerate(MONTHS)},
        product_revenue={name: tally.product[i] for i, (name, _, _) in enumerate(PRODUCTS)},
        product_units={name: tally.units[i] for i, (name, _, _) in enumerate(PRODUCTS)},
        median=tally.percentile(orders, 50),
        p90=tally.percentile(orders, 90),
        p99=tally.percentile(orders, 99),
    )


def describe(summary: SalesSummary) -> str:
    def share(cents: int) -> str:
        return f"{100 * cents / summary.revenue:.1f}%" if summary.revenue else "0%"

    regions = sorted(summary.region_revenue.items(), key=lambda item: (-item[1], item[0]))
    months = sorted(summary.month_revenue.items(), key=lambda item: -item[1])  # stable: ties keep calendar order
    (best_region, best_r), (weak_region, weak_r) = regions[0], regions[-1]
    (best_month, best_m), (slow_month, slow_m) = months[0], months[-1]
    top = ", ".join(f"{name} {money(cents)}" for name, cents in summary.top_products(3))
    average = (summary.revenue + summary.orders // 2) // summary.orders
    return as_list(
        f"Sales report for {summary.orders:,} generated orders (seed {summary.seed}):",
        f"revenue {money(summary.revenue)}, average order {money(average)}",
        f"best region {best_region} {money(best_r)} ({share(best_r)}); "
        f"weakest {weak_region} {money(weak_r)} ({share(weak_r)})",
        f"best month {best_month} {money(best_m)}; slowest {slow_month} {money(slow_m)}",
        f"top products: {top}",
        f"order value: median {money(summary.median)}, 90th percentile {money(summary.p90)}, "
        f"99th percentile {money(summary.p99)}",
    )


async def run(parameters: Mapping[str, int], progress: ProgressCallback) -> str:
    async with Progress(progress) as reporter:
        summary = await sales_summary(parameters["seed"], parameters["orders"], reporter)
    return describe(summary)


OPERATION = Operation(
    name="sales report",
    description="Totals per region and month, top products and order-value percentiles over generated sales.",
    parameters=(
        Parameter(
            "orders", "How many orders to generate and analyse", default=10_000_000, minimum=1, maximum=100_000_000
        ),
        Parameter(
            "seed", "Seed for the generated data (same seed, same data)", default=2024, minimum=0, maximum=1_000_000
        ),
    ),
    run=run,
)
