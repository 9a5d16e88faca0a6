"""Smoke tests of the benchmark harness (benchmarks/run.py): its parsing, its edge check, its
watchdog, and one real run on 10k events. Nothing here is timed: the benchmark itself is
`make bench`, not a test."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from conftest import ROOT

spec = importlib.util.spec_from_file_location("bench_run", ROOT / "benchmarks" / "run.py")
bench = importlib.util.module_from_spec(spec)
sys.modules["bench_run"] = bench
spec.loader.exec_module(bench)

TIME_V = """\
\tCommand being timed: "journeys build --config x.toml"
\tUser time (seconds): 10.50
\tSystem time (seconds): 1.20
\tPercent of CPU this job got: 180%
\tElapsed (wall clock) time (h:mm:ss or m:ss): {clock}
\tMaximum resident set size (kbytes): 1468006
\tExit status: 0
"""


@pytest.mark.parametrize("clock, seconds", [("0:02.34", 2.34), ("1:05.50", 65.5), ("1:02:03", 3723.0)])
def test_parse_time_v(clock, seconds):
    """Wall clock in m:ss or h:mm:ss, max RSS in KiB -> bytes, and the exit status, from GNU time -v."""
    wall, rss, status = bench.parse_time_v(TIME_V.format(clock=clock))
    assert wall == pytest.approx(seconds)
    assert rss == 1468006 * 1024
    assert status == 0
    killed = TIME_V.format(clock=clock).replace("\tExit status: 0", "\tCommand terminated by signal 9\n\tExit status: 0")
    assert bench.parse_time_v(killed)[2] == -9


def test_sizes_round_trip():
    """1M, 20k and plain numbers parse; labels give them back; a fraction of an event is refused."""
    assert [bench.parse_size(s) for s in ("1M", "20k", "100M", "5000")] == [10**6, 20_000, 10**8, 5000]
    assert [bench.size_label(n) for n in (10**6, 20_000, 10**8, 5001)] == ["1M", "20k", "100M", "5001"]
    with pytest.raises(Exception, match="whole number"):
        bench.parse_size("0.5k1")


def test_compare_edges():
    """Equal edges pass; a missing, an extra, a different count or a wait beyond the tolerance is named."""
    ours = {("START", "a"): (3, None), ("a", "b"): (2, 10.0), ("b", "END"): (3, None)}
    assert bench.compare_edges(ours, dict(ours), 1e-3) == []
    assert bench.compare_edges(ours, {**ours, ("a", "b"): (2, 10.6)}, 1.0) == []
    theirs = {("START", "a"): (3, None), ("a", "b"): (1, 10.0), ("a", "c"): (1, 1.0)}
    problems = bench.compare_edges(ours, theirs, 1e-3)
    assert problems == ["a -> b: 1 transitions, ours 2", "a -> c extra (1)", "b -> END missing (ours 3)"]
    assert bench.compare_edges(ours, {**ours, ("a", "b"): (2, 10.6)}, 1e-3) == ["a -> b: mean wait 10.6, ours 10.0"]


@pytest.mark.parametrize("timer", ["/usr/bin/time", "/nonexistent/time"])
def test_watchdog_kills_above_the_memory_cap_and_after_the_timeout(tmp_path, monkeypatch, timer):
    """A process tree above the cap is killed and reported as out of memory at its size; one that
    runs past the timeout as timed out; neither gets a time. A normal run gets wall and RSS; a
    failing one is an error with its exit code. The same without /usr/bin/time (os.wait4)."""
    if timer == "/usr/bin/time" and not Path(timer).exists():
        pytest.skip("no /usr/bin/time here")
    monkeypatch.setattr(bench, "TIME", timer)
    hog = [sys.executable, "-c", "import time; x = bytearray(400 * 2**20); x[::4096] = b'1' * len(x[::4096]); time.sleep(30)"]
    m = bench.measure("hog", 1, hog, tmp_path, cap_bytes=200 * 2**20, timeout_seconds=60)
    assert m.status == "out of memory" and m.wall_seconds is None
    assert m.detail.startswith("out of memory at 0.")
    m = bench.measure("sleeper", 1, ["sleep", "30"], tmp_path, cap_bytes=2**34, timeout_seconds=0.5)
    assert m.status == "timed out" and m.wall_seconds is None
    assert m.detail in ("timed out after 0 s", "timed out after 1 s")
    m = bench.measure("ok", 1, [sys.executable, "-c", "print('hi')"], tmp_path, cap_bytes=2**34, timeout_seconds=60)
    assert m.status == "ok" and m.wall_seconds > 0 and m.peak_rss_bytes > 2**20
    m = bench.measure("fails", 1, [sys.executable, "-c", "raise SystemExit(3)"], tmp_path, cap_bytes=2**34, timeout_seconds=60)
    assert m.status == "error" and m.detail.startswith("exit 3")


@pytest.fixture(scope="module")
def tiny_bench(tmp_path_factory):
    """The real harness run once on 10k events: its data folder and its docs folder."""
    pytest.importorskip("pm4py")
    pytest.importorskip("matplotlib")
    tmp_path = tmp_path_factory.mktemp("bench")
    docs = tmp_path / "docs"
    args = ["--sizes", "10k", "--data", str(tmp_path / "data"), "--docs", str(docs), "--timeout", "300"]
    assert bench.main(args) == 0
    return tmp_path / "data", docs


def test_harness_end_to_end_on_tiny_data(tiny_bench):
    """The real harness on 10k events: every tool runs, every peer's edges equal ours, and the
    docs (JSON, Markdown with the reproduce command, chart) are written, and can be written
    again from the JSON alone."""
    data_root, docs = tiny_bench
    data = json.loads((docs / "benchmarks.json").read_text())
    by_tool = {r["tool"]: r for r in data["results"]}
    assert list(by_tool) == [bench.GENERATE, bench.INGEST, bench.BUILD, bench.BOUNDED, *bench.PEER_SCRIPTS, bench.FLOOR]
    assert all(r["status"] == "ok" for r in by_tool.values()), by_tool
    # the build at the bounded budget ran on its own copy of the warehouse (removed after), with the
    # budget on its command line, and its edges were compared with the default budget's
    assert f"--memory-limit {bench.BOUNDED_LIMIT}" in by_tool[bench.BOUNDED]["command"]
    assert by_tool[bench.BOUNDED]["detail"] == f"edges equal the default budget's ({by_tool[bench.BUILD]['edges']} edges)"
    assert not (data_root / "10k" / bench.BOUNDED_FOLDER).exists()
    for peer in bench.PEER_SCRIPTS:
        assert by_tool[peer]["detail"].startswith("edges equal ours"), by_tool[peer]
        assert by_tool[peer]["edges"] == by_tool[bench.BUILD]["edges"] > 20
    text = (docs / "benchmarks.md").read_text()
    assert "python benchmarks/run.py --sizes 10k --seed 1" in text
    assert "| journeys build |" in text and "## 10k events (10,000)" in text
    assert (docs / "benchmarks.png").stat().st_size > 10_000
    (docs / "benchmarks.md").unlink()
    assert bench.main(["--render-only", "--docs", str(docs)]) == 0
    assert "| journeys build |" in (docs / "benchmarks.md").read_text()


def test_build_profile_accounts_for_the_build_and_leaves_the_warehouse_alone(tiny_bench, tmp_path):
    """benchmarks/profile_build.py, run for real on the harness's 10k-event warehouse: it builds every
    event, its phases (exclusive times) add up to its total, the Polars build, the core appends and
    the marts each have a row, and the warehouse it profiled is byte for byte as before, with no
    copy left beside it."""
    import hashlib
    import subprocess

    import duckdb

    data, _ = tiny_bench
    config = data / "10k" / "journeys.toml"
    folder = data / "10k" / "warehouse"
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir() if p.is_file()}
    out = tmp_path / "profile.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "profile_build.py"), "--config", str(config),
                           "--buckets", "3", "--memory-limit", "900MiB", "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir() if p.is_file()}
    assert after == before
    result = json.loads(out.read_text())
    with duckdb.connect(str(folder / "journeys.duckdb"), read_only=True) as con:
        events = con.execute("select count(*) from staging.events").fetchall()[0][0]
    assert result["steps"] == events > 9000 and result["buckets"] == 3
    assert result["memory_limit"] == "900MiB" and "budget 900MiB" in done.stdout
    phases = {r["phase"]: r for r in result["phases"]}
    assert phases["sessionize + label the buckets (Polars, build_journeys)"]["calls"] == 3
    assert phases["append the buckets to the core tables (DuckDB)"]["calls"] == 3
    assert {"marts: transitions", "marts: stage_stats", "flow-law checks", "run summary"} <= set(phases)
    accounted = sum(r["seconds"] for r in result["phases"])
    assert 0.9 * result["total_seconds"] <= accounted <= result["total_seconds"] + 0.05
    assert "| phase | calls | wall s | CPU s | share |" in done.stdout


def test_machine_names_the_checkout_it_measures():
    """The journeys version is the checkout's (pipeline.__version__, not an editable install's possibly
    stale metadata) and the commit is the checkout's HEAD."""
    import subprocess

    import pipeline

    host = bench.machine()
    assert host["versions"]["journeys"] == pipeline.__version__
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip("not a git checkout")
    assert head.stdout.strip().startswith(host["commit"].removesuffix("-dirty"))


def test_the_bounded_build_is_left_out_where_journeys_refuses_its_budget(tmp_path):
    """At 100M events a build needs a 2GiB budget (20 bytes an event, `journeys build --help`), so
    the 1.5GB build is not run there: nothing is copied, no config is written."""
    assert bench.bounded_copy(tmp_path, 100_000_000) is None
    assert list(tmp_path.iterdir()) == []


def test_the_bounded_build_never_writes_over_the_default_warehouse(tmp_path):
    """A config whose outputs are not all under warehouse/ stops the benchmark before anything is
    copied: the second build could otherwise write into the first build's outputs."""
    (tmp_path / "warehouse").mkdir()
    (tmp_path / "warehouse" / "journeys.duckdb").write_bytes(b"not read")
    (tmp_path / "journeys.toml").write_text('[output]\nwarehouse = "warehouse/journeys.duckdb"\nreport = "elsewhere/r.html"\n')
    with pytest.raises(SystemExit, match="expected its four outputs under warehouse/"):
        bench.bounded_copy(tmp_path, 10_000)
    assert not (tmp_path / bench.BOUNDED_FOLDER).exists() and not (tmp_path / "journeys-bounded.toml").exists()
