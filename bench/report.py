"""The results as tables: plain text for the terminal, Markdown for bench/results/latest.md."""

from __future__ import annotations

from typing import Any

Table = tuple[str, list[str], list[list[Any]]]
CPU_OTHERS = {
    "directline": "Direct Line",
    "cosmos": "Cosmos stand-in",
    "azurite": "Azurite",
    "load_driver": "load driver",
}


def _f(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return "" if value is None else str(value)


def tables(results: dict[str, Any]) -> list[Table]:
    out: list[Table] = []
    machine = results["machine"]
    out.append(("Machine", ["cpu", "cores", "python", "load avg at start", "total run s"],
                [[machine["cpu"], machine["cores"], machine["python"],
                  " ".join(map(str, machine["load_average_at_start"])), results["total_seconds"]]]))  # fmt: skip
    turns = results.get("turns")
    if turns:
        rows = []
        for kind in ("plain", "start"):
            for level, r in turns[kind]["levels"].items():
                rows.append(
                    [kind, level, r["count"], r["errors"], r["p50_ms"], r["p95_ms"], r["p99_ms"], r["turns_per_s"]]
                )
        out.append(("1. Turns through the local Functions host (ms)",
                    ["turn", "conversations", "turns", "errors", "p50", "p95", "p99", "turns/s"], rows))  # fmt: skip
        rows = []
        for kind in ("plain", "start"):
            s = turns[kind]["storage_per_turn"]
            per_container = "; ".join(
                f"{c}: " + ", ".join(f"{k} {_f(v)}" for k, v in kinds.items()) for c, kinds in s["containers"].items()
            )
            rows.append([kind, s["reads"], s["writes"], s["total"], per_container])
        out.append(("1. Storage round trips per turn (counted at the stand-in)",
                    ["turn", "reads", "writes", "total", "by container"], rows))  # fmt: skip
        if "baseline" in turns:
            out += _baseline_tables(turns)
        if "agents_baseline" in turns:
            out += _agents_tables(turns)
        memory = turns["memory"]
        out.append(("5. Memory of the host process (MiB)", ["RSS after setup", "peak RSS (VmHWM) after all levels",
                    "RSS at end"], [[memory["host_pid_rss_mib_after_setup"],
                    memory["host_peak_rss_mib_after_all_levels"], memory["host_rss_mib_at_end"]]]))  # fmt: skip
    delivery = results.get("delivery")
    if delivery:
        rows = [[name, s["count"], s["p50_ms"], s["p95_ms"], s["p99_ms"]] for name, s in delivery["parts_ms"].items()]
        title = f"2. Result delivery (ms, {delivery['samples']} samples)"
        out.append((title, ["part", "n", "p50", "p95", "p99"], rows))
        storage = delivery["storage_per_delivery"]
        rows = [[storage["reads"], storage["writes"]]]
        out.append(("2. Storage round trips per delivery (choice turn excluded)", ["reads", "writes"], rows))
    sweeper = results.get("sweeper")
    if sweeper:
        rows = [[s["stored"], f"{s['expired_share']:.0%}", s["expired_swept"], s["sweep_wall_s"], s["requests"],
                 s["queries"], s["writes"], s["requests_per_expired"], s["ms_per_expired"], s["empty_sweep_requests"],
                 s["seed_s"]] for s in sweeper["scenarios"]]  # fmt: skip
        out.append(("3. Sweeper: one sweep", ["stored", "expired", "swept", "wall s", "requests", "queries",
                    "writes", "req/expired", "ms/expired", "empty-sweep req", "seed s"], rows))  # fmt: skip
    cold = results.get("cold_start")
    if cold:
        rows = [
            [name, v["median_ms"], v["process_wall_median_ms"], v["repeats"]] for name, v in cold["imports_ms"].items()
        ]
        out.append(("4. Cold start: imports (median ms, fresh process)", ["import", "in process", "process wall",
                    "repeats"], rows))  # fmt: skip
        host = cold["host_ms"]
        out.append(("4. Cold start: local host (median ms)", ["spawn -> ready", "ready -> first 200",
                    "spawn -> first 200", "second turn", "repeats"], [[host["spawn_to_ready_ms"],
                    host["ready_to_first_200_ms"], host["spawn_to_first_200_ms"], host["second_turn_ms"],
                    host["repeats"]]]))  # fmt: skip
        rows = [
            [where, ", ".join(f"{p['package']} {p['self_ms']}" for p in packages)]
            for where, packages in cold["heaviest_imports"].items()
        ]
        out.append(("4. Heaviest imports (self ms by package, -X importtime)", ["import", "packages"], rows))
    mem = results.get("memory")
    if mem:
        rows = [
            [p["conversations"], p["rss_mib"], p["elapsed_s"], ", ".join(f"{k} {v:,}" for k, v in p["maps"].items())]
            for p in mem["checkpoints"]
        ]
        title = f"5. Memory of an instance by distinct conversations (RSS before: {mem['rss_mib_before']} MiB)"
        out.append((title, ["conversations", "RSS MiB", "elapsed s", "per-process maps"], rows))
    scale = results.get("instances")
    if scale:
        rows = []
        for count, r in scale["runs"].items():
            by_instance = r["cpu_share_by_instance"].items()
            shares = ", ".join(f"{name} {share:.0%}" for name, share in by_instance if share is not None)
            rows.append([count, scale["conversations"], r["count"], r["errors"], r["turns_per_s"], r["p50_ms"],
                         r["p99_ms"], r["cpu_ms_per_turn"], shares])  # fmt: skip
        ratio = scale["throughput_ratio_2_over_1"]
        title = f"6. One instance vs two on this machine (plain turns; x turns/s 2 / 1 = {ratio})"
        out.append((title, ["instances", "conversations", "turns", "errors", "turns/s", "p50", "p99",
                    "CPU ms/turn (instances)", "CPU share"], rows))  # fmt: skip
    profile = results.get("profile")
    if profile:
        rows = [[name, value] for name, value in profile["cpu_ms_per_turn_by_category"].items()]
        rows.append(["in-process turn p50 ms (unprofiled)", profile["in_process_turn"]["p50_ms"]])
        rows.append(["replies sent / TCP connections used", f"{profile['replies_sent']} / "
                     f"{profile['tcp_connections_for_replies']}"])  # fmt: skip
        rows.append(["conversation state JSON bytes", profile["conversation_state_json_bytes"]])
        out.append(("Suspects: a plain turn in process (cProfile CPU ms per turn)", ["what", "value"], rows))
    return out


def _pair(app: Any, baseline: Any) -> str:
    return f"{_f(app)} / {_f(baseline)}"


def _baseline_tables(turns: dict[str, Any]) -> list[Table]:
    """The app side by side with the plain-SDK baseline (bench/baseline), and CPU per turn by process."""
    baseline, comparison = turns["baseline"], turns["comparison"]
    rows, cpu_rows = [], []
    for kind in ("plain", "start"):
        for level, a in turns[kind]["levels"].items():
            b, ratio = baseline[kind]["levels"][level], comparison[kind][level]
            rows.append([kind, level, _pair(a["count"], b["count"]), _pair(a["errors"], b["errors"]),
                         a["turns_per_s"], b["turns_per_s"], ratio["throughput_ratio"],
                         a["p50_ms"], b["p50_ms"], ratio["p50_ratio"], a["p99_ms"], b["p99_ms"], ratio["p99_ratio"],
                         a["cpu_ms_per_turn"], b["cpu_ms_per_turn"], ratio["cpu_ratio"]])  # fmt: skip
            others_a, others_b = a["cpu_ms_per_turn_others"], b["cpu_ms_per_turn_others"]
            cpu_rows.append([kind, level, a["cpu_ms_per_turn"], a.get("cpu_ms_per_turn_until_results"),
                             b["cpu_ms_per_turn"]]
                            + [_pair(others_a[name], others_b[name]) for name in CPU_OTHERS])  # fmt: skip
    header = ["turn", "conversations", "turns app / base", "errors app / base", "app turns/s", "base turns/s",
              "x turns/s", "app p50", "base p50", "x p50", "app p99", "base p99", "x p99", "app CPU ms/turn",
              "base CPU ms/turn", "x CPU"]  # fmt: skip
    cpu_header = ["turn", "conversations", "app host", "app host until results", "baseline",
                  *[f"{label} app / base" for label in CPU_OTHERS.values()]]  # fmt: skip
    memory = baseline["memory"]
    extras = [[memory["rss_mib_after_setup"], memory["peak_rss_mib_after_all_levels"],
               baseline["turn_errors_logged"], baseline["sdk_clients_cpu_ms_per_turn"]]]  # fmt: skip
    extras_header = ["RSS after setup (MiB)", "peak RSS (MiB)", "turn errors logged",
                     "SDK clients built per turn (CPU ms, in process)"]  # fmt: skip
    return [
        ("1. App vs plain-SDK baseline (ms; x = app / baseline)", header, rows),
        ("1. CPU ms per turn by process (app host and baseline above; the rest excluded there)", cpu_header,
         cpu_rows),
        ("1. Plain-SDK baseline process", extras_header, extras),
    ]  # fmt: skip


def _agents_tables(turns: dict[str, Any]) -> list[Table]:
    """The app beside the Microsoft 365 Agents SDK baseline (bench/agents_baseline), same run, same load;
    the botbuilder baseline's throughput and CPU repeated for the three-way view."""
    agents, comparison, botbuilder = turns["agents_baseline"], turns["comparison_agents"], turns["baseline"]
    rows = []
    for kind in ("plain", "start"):
        for level, a in turns[kind]["levels"].items():
            g, ratio, b = agents[kind]["levels"][level], comparison[kind][level], botbuilder[kind]["levels"][level]
            rows.append([kind, level, _pair(a["count"], g["count"]), _pair(a["errors"], g["errors"]),
                         a["turns_per_s"], g["turns_per_s"], b["turns_per_s"], ratio["throughput_ratio"],
                         a["p50_ms"], g["p50_ms"], ratio["p50_ratio"], a["p99_ms"], g["p99_ms"], ratio["p99_ratio"],
                         a["cpu_ms_per_turn"], g["cpu_ms_per_turn"], b["cpu_ms_per_turn"],
                         ratio["cpu_ratio"]])  # fmt: skip
    header = ["turn", "conversations", "turns app / agents", "errors app / agents", "app turns/s", "agents turns/s",
              "botbuilder turns/s", "x turns/s", "app p50", "agents p50", "x p50", "app p99", "agents p99", "x p99",
              "app CPU ms/turn", "agents CPU ms/turn", "botbuilder CPU ms/turn", "x CPU"]  # fmt: skip
    memory = agents["memory"]
    extras = [[memory["rss_mib_after_setup"], memory["peak_rss_mib_after_all_levels"], agents["turn_errors_logged"]]]
    return [
        ("1. App vs Agents SDK baseline (ms; x = app / Agents SDK)", header, rows),
        ("1. Agents SDK baseline process", ["RSS after setup (MiB)", "peak RSS (MiB)", "turn errors logged"], extras),
    ]


def render_text(all_tables: list[Table]) -> str:
    blocks = []
    for title, header, rows in all_tables:
        cells = [header, *[[_f(c) for c in row] for row in rows]]
        widths = [max(len(str(row[i])) for row in cells) for i in range(len(header))]
        lines = [title, "-" * len(title)]
        for index, row in enumerate(cells):
            lines.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)).rstrip())
            if index == 0:
                lines.append("  ".join("-" * w for w in widths))
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def render_markdown(all_tables: list[Table], notes: dict[str, str]) -> str:
    blocks = ["# Benchmark results", ""]
    for title, header, rows in all_tables:
        blocks += [f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        blocks += ["| " + " | ".join(_f(c).replace("|", "/") for c in row) + " |" for row in rows]
        blocks.append("")
    if notes:
        blocks += ["## Notes", ""] + [f"* **{section}**: {text}" for section, text in notes.items()] + [""]
    return "\n".join(blocks)
