"""Where `journeys build` spends its time: the build of benchmarks/run.py, phase by phase.

It runs what `journeys build --config CONFIG` runs (pipeline.run._step_on_copy: copy the
warehouse, build_step, the run summary, a checkpoint) on a copy of the config's warehouse,
deleted after (the warehouse itself is not touched), with each phase timed: the copy, the
old core tables dropped, the split into bucket files, the bucket files read, the Polars build
of the buckets, the ids, the appends to the core tables, the core tables finished, each SQL
file of the marts, the p-values, the views, the flow laws, the graph and the run summary.

Times are exclusive (a phase inside another counts once, in the inner one) and each phase
also shows its CPU seconds (user + system of this process): on 2 cores a phase that keeps
both busy shows about twice its wall time.

    python benchmarks/profile_build.py --config build/bench/10M/journeys.toml   # after benchmarks/run.py
    python benchmarks/profile_build.py --config build/bench/10M/journeys.toml --json profile.json

Not a test, and not part of `journeys`: it wraps the package's functions to time them.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import shutil
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline import buckets, graph, journeys, marts, report, run, stats, warehouse  # noqa: E402
from pipeline.config import load_config  # noqa: E402


class Phases:
    """Exclusive wall and CPU seconds per phase name, from nested timed calls."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._stack: list[list[float]] = []  # per open call: [child wall, child cpu]
        self.order: list[str] = []

    @staticmethod
    def _cpu() -> float:
        t = os.times()
        return t.user + t.system

    def time(self, name: str, fn, *args, **kwargs):
        if name not in self.order:
            self.order.append(name)
        wall0, cpu0 = time.perf_counter(), self._cpu()
        self._stack.append([0.0, 0.0])
        try:
            return fn(*args, **kwargs)
        finally:
            child_wall, child_cpu = self._stack.pop()
            wall, cpu = time.perf_counter() - wall0, self._cpu() - cpu0
            self.wall[name] += wall - child_wall
            self.cpu[name] += cpu - child_cpu
            self.calls[name] += 1
            if self._stack:
                self._stack[-1][0] += wall
                self._stack[-1][1] += cpu

    def wrap(self, module, attr: str, name: str | None = None) -> None:
        """Time every call of module.attr (looked up at call time by its callers) as `name`."""
        fn = getattr(module, attr)

        @functools.wraps(fn)
        def timed(*args, **kwargs):
            return self.time(name or attr, fn, *args, **kwargs)

        setattr(module, attr, timed)


PHASES = [  # module, function, phase name
    (marts, "clear_core", "drop the old core tables (+ checkpoint)"),
    (buckets, "split_buckets", "split staging.events into bucket files (DuckDB)"),
    (buckets, "read_split_bucket", "read the bucket files (Polars)"),
    (buckets, "read_bucket", "read each bucket by a scan of staging.events (DuckDB)"),
    (journeys, "build_journeys", "sessionize + label the buckets (Polars, build_journeys)"),
    (journeys, "funnel_reached", "funnel stages each journey reached (Polars, in build_journeys)"),
    (marts, "with_ids", "journey and session ids (md5 in DuckDB)"),
    (marts, "write_core", "append the buckets to the core tables (DuckDB)"),
    (marts, "finish_core", "finish core (status, customer segments)"),
    (stats, "add_p_values", "marts: p-values of segment_comparison"),
    (marts, "check_laws", "flow-law checks"),
    (graph, "analyse", "graph (networkx, GraphML)"),
]


def profile(config_path: Path, buckets_given: int | None, memory_limit: str | None = None) -> dict:
    config = load_config(config_path)
    if memory_limit:  # as journeys build --memory-limit: the budget of the build, over the config's
        problem = warehouse.memory_limit_problem(memory_limit)
        if problem:
            raise SystemExit(f"--memory-limit: {problem}")
        config = dataclasses.replace(config, memory_limit=memory_limit)
    if not config.warehouse.exists():
        raise SystemExit(f"{config.warehouse}: no warehouse; run `journeys ingest --config {config_path}` "
                         "(or benchmarks/run.py) first")
    phases = Phases()
    for module, attr, name in PHASES:
        phases.wrap(module, attr, name)
    run_sql_file = warehouse.run_sql_file

    def sql_file(con, name, *args, **kwargs):  # the core, marts and views by their SQL file
        folder = name.split("/")[0]
        if folder not in ("core", "marts", "views"):  # schemas and meta tables: counted in their caller
            return run_sql_file(con, name, *args, **kwargs)
        label = "views" if folder == "views" else f"{folder}: {Path(name).stem}"
        return phases.time(label, run_sql_file, con, name, *args, **kwargs)

    warehouse.run_sql_file = sql_file

    source = config.warehouse.resolve()
    copy = source.with_name(f".{source.name}.profile")
    started = time.perf_counter()
    try:
        phases.time("copy the warehouse (the build works on a copy)", shutil.copy2, source, copy)
        con = phases.time("open the copy", warehouse.connect, copy, memory_limit=config.memory_limit)
        try:
            graph_dir = copy.parent / f".{source.name}.profile-graph"
            counts = phases.time("other (settings, bucket count, connection, counts)", run.build_step,
                                 con, config, graph_dir, None, None, buckets=buckets_given)
            phases.time("run summary", report.summarize, con)
            phases.time("checkpoint", con.execute, "checkpoint")
        finally:
            con.close()
            shutil.rmtree(copy.parent / f".{source.name}.profile-graph", ignore_errors=True)
    finally:
        copy.unlink(missing_ok=True)
        copy.with_name(copy.name + ".wal").unlink(missing_ok=True)
    total = time.perf_counter() - started
    rows = [{"phase": name, "seconds": round(phases.wall[name], 2), "cpu_seconds": round(phases.cpu[name], 2),
             "calls": phases.calls[name]} for name in phases.order]
    return {"config": str(config_path), "memory_limit": config.memory_limit or warehouse.default_memory_limit(),
            "buckets": counts["buckets"], "steps": counts["steps"],
            "total_seconds": round(total, 2), "phases": rows}


def markdown(result: dict) -> str:
    lines = [f"`journeys build` phases for {result['config']} ({result['steps']:,} steps, {result['buckets']} buckets, "
             f"budget {result['memory_limit']}): "
             f"{result['total_seconds']} s in all",
             "", "| phase | calls | wall s | CPU s | share |", "| --- | ---: | ---: | ---: | ---: |"]
    total = result["total_seconds"] or 1
    rows = sorted(result["phases"], key=lambda r: -r["seconds"])
    shown = [r for r in rows if r["seconds"] >= 0.005 * total]
    rest = [r for r in rows if r not in shown]
    if rest:
        shown.append({"phase": f"the rest ({len(rest)} phases under 0.5% each)", "calls": sum(r["calls"] for r in rest),
                      "seconds": sum(r["seconds"] for r in rest), "cpu_seconds": sum(r["cpu_seconds"] for r in rest)})
    for row in shown:
        lines.append(f"| {row['phase']} | {row['calls']} | {row['seconds']:.2f} | {row['cpu_seconds']:.2f} "
                     f"| {row['seconds'] / total:.0%} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, type=Path, help="a config whose warehouse holds staging.events")
    parser.add_argument("--buckets", type=int, default=None, help="as journeys build --buckets (default: chosen)")
    parser.add_argument("--memory-limit", default=None, help="as journeys build --memory-limit (default: the config's)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args()
    result = profile(args.config, args.buckets, args.memory_limit)
    print(markdown(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
