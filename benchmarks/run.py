"""The benchmark of issue 5: journeys against its peers on the same generated events, in one run.

For each size (e.g. 1M, 10M, 100M events) it

1. generates the events with our own generator (`journeys sample --events N`),
   cached in build/bench/<size>/ and reused when present;
2. ingests them into a fresh warehouse (`journeys ingest`), timed as its own row;
3. measures, each in its own process under `/usr/bin/time -v` (wall clock and
   maximum resident set size), with a watchdog that kills the process group
   above a memory cap or after a timeout:
   - `journeys build` (staging -> marts), at the default memory budget, and again
     at `--memory-limit 1.5GB` (issue 5's memory target) on a copy of the same
     freshly ingested warehouse, where a build of that many events holds to it,
   - pm4py on its Polars backend (peers/pm4py_polars.py),
   - one DuckDB SQL query (peers/duckdb_sql.py),
   - the floor: Polars reading and sorting the four needed columns (peers/floor_polars.py);
4. checks every tool's edges against ours (marts.transitions, level event_type,
   segment all) before it reports the tool's time: a mismatch is an error row;
5. writes docs/benchmarks.json (the raw measurements), docs/benchmarks.md and
   docs/benchmarks.png (time and peak memory against events).

    python benchmarks/run.py --sizes 1M,10M          # or: make bench SIZES=1M,10M
    python benchmarks/run.py --render-only           # docs again from docs/benchmarks.json

Not a test: `make test` runs only tests/test_bench.py, a smoke test of this
harness on a tiny data set.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PEERS = Path(__file__).resolve().parent / "peers"
PYTHON = sys.executable
JOURNEYS = str(Path(sys.executable).parent / "journeys")
TIME = "/usr/bin/time"
GIB = 1024**3
MIN_FREE_DISK = 2 * GIB  # a process is stopped before it fills the disk with spill files
TERMINALS = ("CONVERTED", "DROPPED", "OPEN")

# peer tool -> (script, tolerance on the mean wait in seconds, note)
PEER_SCRIPTS = {
    "pm4py (polars backend)": ("pm4py_polars.py", 1.0,
                               "pm4py's Polars DFG truncates each wait to whole seconds, so its means may differ by < 1 s"),
    "DuckDB SQL query": ("duckdb_sql.py", 1e-3, ""),
}
FLOOR = "floor: Polars read + sort"
BUILD = "journeys build"
# the build again at the memory of issue 5's target (1.5 GB peak at 10M events), on a copy of the
# same freshly ingested warehouse: what the time is when the budget asks for that memory
BOUNDED_LIMIT = "1.5GB"
BOUNDED = f"journeys build --memory-limit {BOUNDED_LIMIT}"
SPARK = "journeys build --engine spark (local[2])"
INGEST = "journeys ingest"
GENERATE = "generate (journeys sample --events)"


# --------------------------------------------------------------------------- sizes


def parse_size(text: str) -> int:
    """'1M' -> 1_000_000, '20k' -> 20_000, '5000' -> 5000."""
    text = text.strip()
    scale = {"k": 10**3, "K": 10**3, "m": 10**6, "M": 10**6}.get(text[-1:], 1)
    try:
        number = float(text[:-1] if scale > 1 else text)
    except ValueError:
        number = math.nan
    value = int(number * scale) if math.isfinite(number) else 0
    if value < 1 or value != number * scale:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number of events (e.g. 20k, 1M, 100M)")
    return value


def size_label(events: int) -> str:
    for unit, scale in (("M", 10**6), ("k", 10**3)):
        if events % scale == 0:
            return f"{events // scale}{unit}"
    return str(events)


# --------------------------------------------------------------------------- measuring


@dataclass
class Measurement:
    """One tool's run on one size."""

    tool: str
    events: int
    command: str
    status: str = "ok"  # ok | error | out of memory | timed out | out of disk | cached
    wall_seconds: float | None = None
    peak_rss_bytes: int | None = None
    detail: str = ""
    edges: int | None = None
    extra: dict = field(default_factory=dict)


def parse_time_v(text: str) -> tuple[float | None, int | None, int | None]:
    """(wall seconds, max RSS bytes, exit status; -N when killed by signal N) from GNU time's -v report."""
    wall = rss = status = None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("Elapsed (wall clock) time"):
            clock = line.rsplit(": ", 1)[1].strip()
            parts = [float(p) for p in clock.split(":")]
            wall = sum(p * 60**i for i, p in enumerate(reversed(parts)))
        elif line.startswith("Maximum resident set size (kbytes)"):
            rss = int(line.rsplit(":", 1)[1]) * 1024
        elif line.startswith("Exit status"):
            status = status if status is not None else int(line.rsplit(":", 1)[1])
        elif line.startswith("Command terminated by signal"):
            status = -int(line.rsplit(" ", 1)[1])  # as subprocess reports a signal
    return wall, rss, status


def tree_rss(root: int) -> int:
    """The resident memory (bytes) of a process and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        pid, ppid = int(entry), int(fields[1])
        children.setdefault(ppid, []).append(pid)
        rss[pid] = int(fields[21]) * page
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total


def shown(argv: list[str]) -> str:
    """A command as a reader runs it from the repository root (.venv/bin/ and paths under the root cut)."""
    bin_dir = str(Path(sys.executable).parent) + "/"
    words = [w.replace(bin_dir, "") if w.startswith(bin_dir) else w for w in argv]
    words = [w[len(str(ROOT)) + 1:] if w.startswith(str(ROOT) + "/") else w for w in words]
    return shlex.join(words)


def measure(tool: str, events: int, argv: list[str], log_dir: Path, cap_bytes: int, timeout_seconds: float,
            env: dict | None = None) -> Measurement:
    """Run argv under /usr/bin/time -v in its own process group, in log_dir's parent (where DuckDB
    spills), with a watchdog on memory, time and the free disk left for spilling.

    Without /usr/bin/time (a bare CI image), the wall clock is timed here and the peak
    RSS is the child's own rusage from os.wait4, which is what GNU time reports too."""
    log_dir.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^a-z0-9]+", "-", tool.lower()).strip("-")
    time_file, out_file = log_dir / f"{slug}.time", log_dir / f"{slug}.log"
    time_file.unlink(missing_ok=True)
    m = Measurement(tool, events, shown(argv))
    killed: list[str] = []
    watched_peak = [0]
    finished = threading.Event()
    use_time = Path(TIME).exists()
    m.extra["load_before"] = round(os.getloadavg()[0], 2)
    with open(out_file, "w") as out:
        started = time.monotonic()
        proc = subprocess.Popen([TIME, "-v", "-o", str(time_file), *argv] if use_time else argv, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True, env=env, cwd=log_dir.parent)

        def watchdog() -> None:
            while not finished.wait(0.1):
                rss = tree_rss(proc.pid)
                watched_peak[0] = max(watched_peak[0], rss)
                if rss > cap_bytes:
                    killed.append(f"out of memory at {rss / GIB:.1f} GiB (cap {cap_bytes / GIB:g} GiB)")
                elif time.monotonic() - started > timeout_seconds:
                    killed.append(f"timed out after {timeout_seconds:.0f} s")
                elif shutil.disk_usage(log_dir).free < MIN_FREE_DISK:
                    killed.append(f"out of disk (under {MIN_FREE_DISK / GIB:.0f} GiB free, spilling)")
                if killed:
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    return

        dog = threading.Thread(target=watchdog, daemon=True)
        dog.start()
        if use_time:
            proc.wait()
        else:
            _, wait_status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(wait_status)
            time_file.write_text(
                f"\tElapsed (wall clock) time (h:mm:ss or m:ss): 0:{time.monotonic() - started:.2f}\n"
                f"\tMaximum resident set size (kbytes): {usage.ru_maxrss}\n"
                + (f"\tCommand terminated by signal {-proc.returncode}\n" if proc.returncode < 0 else "")
                + f"\tExit status: {max(proc.returncode, 0)}\n"
            )
        finished.set()
        dog.join()
    m.extra["load_after"] = round(os.getloadavg()[0], 2)
    wall, rss, status = parse_time_v(time_file.read_text() if time_file.exists() else "")
    m.wall_seconds, m.peak_rss_bytes = wall, rss or watched_peak[0] or None
    if killed:
        m.status = next(k for k in ("out of memory", "timed out", "out of disk") if killed[0].startswith(k))
        m.detail = killed[0]
        m.wall_seconds = None
    elif proc.returncode != 0 or (status not in (None, 0)):
        tail = out_file.read_text(errors="replace").strip().splitlines()[-3:]
        code = status if status is not None else proc.returncode
        m.status = "error"
        m.detail = (f"killed by signal {-code}" if code < 0 else f"exit {code}") + ": " + " | ".join(tail)
        if re.search(r"out of memory|OutOfMemory|MemoryError|Killed", " ".join(tail), re.I):
            m.status = "out of memory"
    return m


# --------------------------------------------------------------------------- edges


def read_edges(path: Path) -> dict[tuple[str, str], tuple[int, float | None]]:
    with open(path, newline="", encoding="utf-8") as f:
        return {(r["from_node"], r["to_node"]): (int(r["transitions"]), float(r["wait_mean_seconds"]) if r["wait_mean_seconds"] else None)
                for r in csv.DictReader(f)}


def our_edges(warehouse: Path, out: Path) -> dict:
    """marts.transitions (level event_type, segment all) as an edge file: terminals become END."""
    import duckdb

    sys.path.insert(0, str(PEERS))
    from common import write_edges

    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        rows = con.sql(
            """
            select from_node,
                   case when to_node in ('CONVERTED', 'DROPPED', 'OPEN') then 'END' else to_node end as to_node,
                   sum(transitions) as transitions, max(wait_mean_seconds) as wait_mean_seconds
            from marts.transitions
            where level = 'event_type' and segment_key = 'all' and segment_value = 'all'
            group by all
            """
        ).fetchall()
    finally:
        con.close()
    write_edges(str(out), rows)
    return read_edges(out)


def compare_edges(ours: dict, theirs: dict, wait_tolerance: float) -> list[str]:
    """The differences (empty when equal): every edge with the same count, mean waits within tolerance."""
    problems = []
    for edge in sorted(set(ours) | set(theirs)):
        if edge not in theirs:
            problems.append(f"{edge[0]} -> {edge[1]} missing (ours {ours[edge][0]})")
        elif edge not in ours:
            problems.append(f"{edge[0]} -> {edge[1]} extra ({theirs[edge][0]})")
        elif ours[edge][0] != theirs[edge][0]:
            problems.append(f"{edge[0]} -> {edge[1]}: {theirs[edge][0]} transitions, ours {ours[edge][0]}")
        else:
            a, b = ours[edge][1], theirs[edge][1]
            if (a is None) != (b is None) or (a is not None and abs(a - b) > wait_tolerance):
                problems.append(f"{edge[0]} -> {edge[1]}: mean wait {b}, ours {a}")
    return problems


# --------------------------------------------------------------------------- one size


def judge_edges(m: Measurement, reference: dict, theirs: dict, tolerance: float, name: str, note: str = "") -> None:
    """m's edges, and its status and detail: an error when `theirs` differ from `reference` (called
    `name` in the detail), else a note that they are equal."""
    m.edges = len(theirs)
    problems = compare_edges(reference, theirs, tolerance)
    if problems:
        m.status = "error"
        m.detail = f"edges differ from {name} in {len(problems)} place(s): " + "; ".join(problems[:5])
    else:
        m.detail = f"edges equal {name} ({len(theirs)} edges)" + (f"; {note}" if note else "")


BOUNDED_FOLDER = "warehouse-bounded"


def bounded_copy(folder: Path, events: int) -> Path | None:
    """A copy of the freshly ingested warehouse of `folder` for the build at BOUNDED_LIMIT, and a
    config beside journeys.toml whose outputs are in it; None when journeys refuses a build of
    `events` events at that budget (it needs warehouse.least_budget), so there is nothing to time."""
    from pipeline import warehouse as wh

    if wh.least_budget(events) > wh.parse_size(BOUNDED_LIMIT):
        return None
    text = (folder / "journeys.toml").read_text(encoding="utf-8")
    # the outputs of `journeys sample`'s config, all four under warehouse/ (checked, so a change
    # to that config cannot let this build overwrite the default one's warehouse)
    if text.count('= "warehouse/') != 4:
        raise SystemExit(f"{folder / 'journeys.toml'}: expected its four outputs under warehouse/")
    target = folder / BOUNDED_FOLDER
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir()
    shutil.copy2(folder / "warehouse" / "journeys.duckdb", target / "journeys.duckdb")
    config = folder / "journeys-bounded.toml"
    config.write_text(text.replace('= "warehouse/', f'= "{BOUNDED_FOLDER}/'), encoding="utf-8")
    return config


def run_size(events: int, data_root: Path, seed: int, cap_bytes: int, timeout_seconds: float, log=print,
             spark: bool = False) -> list[Measurement]:
    label = size_label(events)
    folder = data_root / label
    logs = folder / "logs"
    config = folder / "journeys.toml"
    glob = str(folder / "events" / "part-*.parquet")
    done = folder / "generated.json"
    results: list[Measurement] = []
    env = {**os.environ, "CI": "true"}

    gen_cmd = [JOURNEYS, "sample", "--events", str(events), "--seed", str(seed), "--out", str(folder)]
    cached = done.exists() and json.loads(done.read_text()) == {"events": events, "seed": seed}
    if cached:
        results.append(Measurement(GENERATE, events, shown(gen_cmd), status="cached",
                                   detail=f"reused {shown([str(folder / 'events')])} (delete {shown([str(done)])} to generate again)"))
    else:
        done.unlink(missing_ok=True)
        log(f"[{label}] generating")
        m = measure(GENERATE, events, gen_cmd, logs, cap_bytes, timeout_seconds, env)
        results.append(m)
        if m.status != "ok":
            return results
        done.write_text(json.dumps({"events": events, "seed": seed}))

    # a fresh warehouse each run, so ingest loads everything
    warehouse = folder / "warehouse"
    for stale in warehouse.glob("journeys.duckdb*"):  # the file, its WAL, and a killed run's spill folder
        if stale.is_dir():
            shutil.rmtree(stale)
        else:
            stale.unlink()
    log(f"[{label}] {INGEST}")
    ingest = measure(INGEST, events, [JOURNEYS, "ingest", "--config", str(config), "--json"], logs, cap_bytes,
                     timeout_seconds, env)
    results.append(ingest)
    reference, reference_tool, reference_name = None, None, "ours"
    if ingest.status == "ok":
        bounded_config = bounded_copy(folder, events)
        log(f"[{label}] {BUILD}")
        build = measure(BUILD, events, [JOURNEYS, "build", "--config", str(config), "--json"], logs, cap_bytes,
                        timeout_seconds, env)
        results.append(build)
        if build.status == "ok":
            reference = our_edges(warehouse / "journeys.duckdb", folder / "edges" / "journeys.csv")
            build.edges = len(reference)
        if bounded_config is not None:
            log(f"[{label}] {BOUNDED}")
            m = measure(BOUNDED, events, [JOURNEYS, "build", "--config", str(bounded_config), "--memory-limit",
                                          BOUNDED_LIMIT, "--json"], logs, cap_bytes, timeout_seconds, env)
            if m.status == "ok" and reference is not None:
                theirs = our_edges(folder / BOUNDED_FOLDER / "journeys.duckdb", folder / "edges" / "journeys_bounded.csv")
                judge_edges(m, reference, theirs, 1e-9, "the default budget's")
            elif m.status == "ok":
                m.detail = "edges not checked: the build at the default budget did not finish"
            results.append(m)
            shutil.rmtree(folder / BOUNDED_FOLDER, ignore_errors=True)  # a whole warehouse: the disk is needed
    for tool, (script, tolerance, note) in PEER_SCRIPTS.items():
        log(f"[{label}] {tool}")
        out = folder / "edges" / script.replace(".py", ".csv")
        out.unlink(missing_ok=True)
        m = measure(tool, events, [PYTHON, str(PEERS / script), "--events", glob, "--edges", str(out)], logs, cap_bytes,
                    timeout_seconds, env)
        if m.status == "ok":
            theirs = read_edges(out)
            m.edges = len(theirs)
            if reference is None:
                # journeys did not finish: the peers are checked against the first peer that did, and say so
                reference, reference_tool, reference_name = theirs, tool, f"{tool}'s (journeys did not finish)"
                m.detail = f"{len(theirs)} edges; the reference for the other peers, as journeys did not finish"
            else:
                if reference_tool is not None:
                    tolerance = max(tolerance, PEER_SCRIPTS[reference_tool][1])
                judge_edges(m, reference, theirs, tolerance, reference_name, note)
        results.append(m)
    log(f"[{label}] {FLOOR}")
    results.append(measure(FLOOR, events, [PYTHON, str(PEERS / "floor_polars.py"), "--events", glob], logs, cap_bytes,
                           timeout_seconds, env))
    if spark and ingest.status == "ok":
        # the Spark engine on the same warehouse (it rebuilds core and the marts), checked against the local build
        log(f"[{label}] {SPARK}")
        spark_env = {**env, "JOURNEYS_SPARK_MASTER": "local[2]"}
        m = measure(SPARK, events, [JOURNEYS, "build", "--config", str(config), "--engine", "spark", "--json"], logs,
                    cap_bytes, timeout_seconds, spark_env)
        if m.status == "ok" and reference is not None and reference_tool is None:
            theirs = our_edges(warehouse / "journeys.duckdb", folder / "edges" / "journeys_spark.csv")
            judge_edges(m, reference, theirs, 1e-9, "the local engine's")
        results.append(m)
    return results


# --------------------------------------------------------------------------- report


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    versions = {}
    for package in ("journeys", "polars", "duckdb", "pyarrow", "numpy", "pm4py"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    # the version of the checkout the run measures (an editable install's metadata can be stale)
    found = re.search(r'^__version__ = "([^"]+)"', (ROOT / "pipeline" / "__init__.py").read_text(), re.M)
    if found:
        versions["journeys"] = found.group(1)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True,
                                text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return {"cpu": cpu, "cores": cores, "ram_bytes": mem, "os": platform.platform(),
            "python": platform.python_version(), "versions": versions, "commit": commit}


def _fmt(value: float | None, digits: int = 2) -> str:
    return "" if value is None else f"{value:,.{digits}f}"


def render_markdown(data: dict) -> str:
    mach = data["machine"]
    lines = [
        "# Benchmarks",
        "",
        "<!-- Written by benchmarks/run.py from docs/benchmarks.json; do not edit by hand. -->",
        "",
        f"Measured {data['finished_at']} by one run of `benchmarks/run.py` (issue 5). Every tool works on the",
        "same generated events (`journeys sample --events N`, Parquet): sessionize at 30 minutes, then the",
        "transition graph of the sessions (directly-follows edges between event types, with START and END)",
        f"with counts and mean waits. Each tool runs in its own process under `{data.get('timer', TIME + ' -v')}` (wall clock,",
        "maximum resident set size); a peer's time is reported only after its edges were checked equal to",
        "ours (same edges, same counts, mean waits within the tolerance noted).",
        "",
        "## Machine",
        "",
        f"- CPU: {mach['cpu']}, {mach['cores']} cores available",
        f"- RAM: {mach['ram_bytes'] / GIB:.1f} GiB",
        f"- OS: {mach['os']}",
        f"- Python {mach['python']}; " + ", ".join(f"{k} {v}" for k, v in mach["versions"].items()),
        f"- journeys at commit `{mach.get('commit', 'unknown')}`",
        "",
        "## Reproduce",
        "",
        "```sh",
        data["command"],
        "```",
        "",
        f"Generated data is cached in `{data['data_root']}/<size>/` and reused; seed {data['seed']}. Memory cap per",
        f"process {data['cap_gib']:g} GiB and timeout {data['timeout_seconds']:g} s (a watchdog kills the process",
        "tree beyond them, reported as out of memory / timed out).",
        "",
        "## Commands",
        "",
        "Paths shown for the first size; the others differ only in the folder.",
        "",
    ]
    first = data["results"][0]["events"] if data["results"] else None
    for r in data["results"]:
        if r["events"] == first:
            lines.append(f"- {r['tool']}: `{r['command']}`")
    lines.append("")
    for events in sorted({r["events"] for r in data["results"]}):
        rows = [r for r in data["results"] if r["events"] == events]
        by_tool = {r["tool"]: r for r in rows}
        floor = by_tool.get(FLOOR, {}).get("wall_seconds")
        build = by_tool.get(BUILD, {}).get("wall_seconds")
        lines += [
            f"## {size_label(events)} events ({events:,})",
            "",
            "| tool | wall s | peak RSS GB | events/s | × floor | × journeys build | load before / after | status |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for r in rows:
            wall = r["wall_seconds"] if r["status"] == "ok" else None
            rss = r["peak_rss_bytes"] / 1e9 if r["peak_rss_bytes"] and r["status"] in ("ok",) else None
            rate = events / wall if wall else None
            to_floor = wall / floor if wall and floor and r["tool"] not in (GENERATE, INGEST) else None
            to_build = wall / build if wall and build and r["tool"] not in (GENERATE, INGEST, BUILD) else None
            status = r["status"] if r["status"] != "ok" else "ok"
            if r["status"] in ("out of memory", "timed out", "out of disk", "error"):
                status = f"**{r['status']}**"
            extra = r.get("extra") or {}
            load = f"{extra['load_before']:.1f} / {extra['load_after']:.1f}" if "load_before" in extra else ""
            lines.append(
                f"| {r['tool']} | {_fmt(wall)} | {_fmt(rss)} | {_fmt(rate, 0)} | {_fmt(to_floor)} | {_fmt(to_build)} "
                f"| {load} | {status} |"
            )
        notes = [f"- {r['tool']}: {r['detail']}" for r in rows if r["detail"]]
        if notes:
            lines += ["", *notes]
        lines.append("")
    lines += acceptance(data)
    lines += [
        "## Chart",
        "",
        "![wall time and peak memory against events, log-log](benchmarks.png)",
        "",
        "× floor: the tool's wall time over the floor's (Polars reading and sorting the four columns).",
        "× journeys build: the tool's wall time over `journeys build`'s (above 1: journeys is faster).",
        "events/s: events over wall time. GB are 10^9 bytes. load before / after: the machine's 1-minute",
        f"load average when the tool started and ended ({mach['cores']} cores): above the core count, other",
        "work was competing for the CPU and the times are slower than on a quiet machine.",
        "",
    ]
    return "\n".join(lines)


def acceptance(data: dict) -> list[str]:
    """Issue 5's acceptance criteria, judged on these measurements: met, not met, or not measured."""

    def row(events: int, tool: str) -> dict | None:
        return next((r for r in data["results"] if r["events"] == events and r["tool"] == tool), None)

    def ok(r: dict | None) -> bool:
        return bool(r) and r["status"] == "ok" and r["wall_seconds"] is not None

    def verdict(flag: bool | None) -> str:
        return {True: "**met**", False: "**not met**", None: "not measured"}[flag]

    ten, hundred = row(10**7, BUILD), row(10**8, BUILD)
    floor = row(10**7, FLOOR)
    items = []
    if ok(ten) and ok(floor):
        ratio = ten["wall_seconds"] / floor["wall_seconds"]
        peers = [row(10**7, t) for t in PEER_SCRIPTS]
        # a peer that ran out of memory or time is slower; an erroring one is not comparable
        faster = all((ok(p) and ten["wall_seconds"] < p["wall_seconds"]) or (p and p["status"] in ("out of memory", "timed out", "out of disk"))
                     for p in peers)
        gb = ten["peak_rss_bytes"] / 1e9
        met = ratio <= 2 and gb <= 1.5 and faster
        items.append(f"1. 10M: journeys build {ratio:.2f}× the floor (≤ 2), {gb:.2f} GB peak (≤ 1.5), "
                     f"faster than every peer: {'yes' if faster else 'no'}. {verdict(met)}")
        bounded = row(10**7, BOUNDED)
        if ok(bounded):
            b_ratio, b_gb = bounded["wall_seconds"] / floor["wall_seconds"], bounded["peak_rss_bytes"] / 1e9
            items.append(f"   At `--memory-limit {BOUNDED_LIMIT}` the same build took {b_ratio:.2f}× the floor, "
                         f"{b_gb:.2f} GB peak: the memory target {'held' if b_gb <= 1.5 else 'missed'}, "
                         f"{bounded['wall_seconds'] / ten['wall_seconds']:.2f}× the default budget's time.")
    else:
        items.append(f"1. 10M: build ≤ 2× floor, ≤ 1.5 GB, faster than every peer. {verdict(None)}"
                     + (f" (journeys build: {ten['status']})" if ten else ""))
    if ok(hundred):
        gib = hundred["peak_rss_bytes"] / GIB
        items.append(f"2. 100M: peak {gib:.2f} GiB (≤ 4 GiB); the edges against another partitioning are checked "
                     f"by the bucketed build's tests, not here. {verdict(gib <= 4)}")
    else:
        items.append(f"2. 100M completes in ≤ 4 GiB. {verdict(None)}" + (f" (journeys build: {hundred['status']})" if hundred else ""))
    items.append("3. This file is written by the benchmark, with the command above; its numbers are the run's "
                 "(docs/benchmarks.json). **met**")
    if ok(ten) and ok(hundred):
        per = (hundred["wall_seconds"] / 10**8) / (ten["wall_seconds"] / 10**7)
        items.append(f"4. time per event at 100M is {per:.2f}× that at 10M (≤ 1.5). {verdict(per <= 1.5)}")
    else:
        items.append(f"4. time per event at 100M within 1.5× of 10M. {verdict(None)}")
    return ["## Acceptance (issue 5)", "", *items, ""]


def render_chart(data: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tools = [t for t in [BUILD, BOUNDED, SPARK, *PEER_SCRIPTS, FLOOR, INGEST]]
    fig, (ax_time, ax_mem) = plt.subplots(1, 2, figsize=(11, 4.5))
    for tool in tools:
        points = sorted((r["events"], r["wall_seconds"], r["peak_rss_bytes"]) for r in data["results"]
                        if r["tool"] == tool and r["status"] == "ok" and r["wall_seconds"])
        stopped = [(r["events"], r["peak_rss_bytes"]) for r in data["results"]
                   if r["tool"] == tool and r["status"] in ("out of memory", "timed out", "out of disk") and r["peak_rss_bytes"]]
        if not points and not stopped:
            continue
        xs = [p[0] for p in points]
        (line,) = ax_time.plot(xs, [p[1] for p in points], marker="o", label=tool)
        ax_mem.plot(xs, [p[2] / 1e9 for p in points], marker="o", label=tool, color=line.get_color())
        if stopped:  # where a tool was stopped: a cross at the memory it had reached
            ax_mem.scatter([e for e, _ in stopped], [b / 1e9 for _, b in stopped], marker="x", s=80,
                           color=line.get_color(), label=f"{tool}: stopped")
    for ax, title, unit in ((ax_time, "wall time", "seconds"), (ax_mem, "peak memory (RSS)", "GB")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel("events")
        ax.set_ylabel(unit)
        ax.grid(True, which="both", alpha=0.3)
    ax_time.legend(fontsize=8)
    if any(r["status"] in ("out of memory", "timed out", "out of disk") for r in data["results"]):
        ax_mem.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_docs(data: dict, docs: Path) -> None:
    docs.mkdir(parents=True, exist_ok=True)
    (docs / "benchmarks.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    (docs / "benchmarks.md").write_text(render_markdown(data), encoding="utf-8")
    render_chart(data, docs / "benchmarks.png")


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1M,10M", help="comma-separated event counts, e.g. 1M,10M,100M")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--data", default=str(ROOT / "build" / "bench"), help="where generated data is cached")
    parser.add_argument("--docs", default=str(ROOT / "docs"), help="where benchmarks.md/.json/.png go")
    parser.add_argument("--cap-gib", type=float, default=20.0, help="kill a process tree above this resident memory")
    parser.add_argument("--timeout", type=float, default=3600.0, help="kill a process after this many seconds")
    parser.add_argument("--render-only", action="store_true", help="rewrite the docs from DOCS/benchmarks.json")
    parser.add_argument("--spark", action="store_true", help="also time journeys build --engine spark on local[2]")
    args = parser.parse_args(argv)
    docs = Path(args.docs)
    if args.render_only:
        write_docs(json.loads((docs / "benchmarks.json").read_text()), docs)
        return 0
    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    data_root = Path(args.data)
    started = datetime.now(timezone.utc)
    host = machine()  # before the run: the commit it measures, should the checkout move meanwhile
    results: list[Measurement] = []
    for events in sizes:
        results += run_size(events, data_root, args.seed, int(args.cap_gib * GIB), args.timeout, spark=args.spark)
    try:
        shown_root = data_root.resolve().relative_to(ROOT)
    except ValueError:
        shown_root = data_root
    command = (f"python benchmarks/run.py --sizes {','.join(size_label(s) for s in sizes)} --seed {args.seed} "
               f"--cap-gib {args.cap_gib:g} --timeout {args.timeout:g}" + (" --spark" if args.spark else ""))
    if str(shown_root) != "build/bench":
        command += f" --data {shown_root}"
    data = {
        "command": command,
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seed": args.seed,
        "data_root": str(shown_root),
        "cap_gib": args.cap_gib,
        "timeout_seconds": args.timeout,
        "timer": f"{TIME} -v" if Path(TIME).exists() else "os.wait4 rusage (no /usr/bin/time)",
        "machine": host,
        "results": [asdict(m) for m in results],
    }
    write_docs(data, docs)
    failed = [m for m in results if m.status == "error"]
    for m in results:
        print(f"{size_label(m.events):>5} {m.tool:<38} {m.status:<13} "
              f"{_fmt(m.wall_seconds):>9} s {_fmt((m.peak_rss_bytes or 0) / 1e9):>6} GB  {m.detail[:100]}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
