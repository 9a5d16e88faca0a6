"""The run's memory budget (docs/config.md, "engine"): --memory-limit on run, ingest and build,
else [engine] memory_limit, else 60% of the physical memory, at most 4 GiB. DuckDB gets half
of it and spills to the temp directory beside the warehouse beyond that; the build's buckets
are sized to 40% of it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

import pipeline.config
import pipeline.warehouse
from conftest import JOURNEYS_BIN
from pipeline.config import ConfigError

TINY = Path(__file__).resolve().parent / "data" / "tiny"


def test_default_limit_is_at_most_4_gib_and_duckdb_gets_half(tmp_path):
    """Without a limit, the budget is 60% of the physical memory, at most 4 GiB; DuckDB gets half."""
    default = pipeline.warehouse.default_memory_limit()
    assert default.endswith("MiB") and 0 < int(default[:-3]) <= 4 * 1024
    con = pipeline.warehouse.connect(tmp_path / "w.duckdb")
    assert con.execute("select current_setting('memory_limit')").fetchall()[0][0] == duckdb_size(f"{int(default[:-3]) // 2}MiB")
    con.close()


def test_buckets_are_sized_to_the_builds_share_of_the_budget(tmp_path):
    """With a 4GiB budget, DuckDB gets 2GiB and a bucket 40% of 4GiB at 1,600 bytes an event."""
    from pipeline import buckets

    con = pipeline.warehouse.connect(tmp_path / "w.duckdb", memory_limit="4GiB")
    assert con.execute("select current_setting('memory_limit')").fetchall()[0][0] == duckdb_size("2GiB")
    per_bucket = int(4 * 2**30 * 0.4) // 1600
    assert buckets.events_per_bucket(4 << 30) == per_bucket
    con.execute("insert into staging.events (event_id, customer_id, ts, channel, event_type, source) "
                "select 'e' || i, 'c' || i, timestamptz '2026-01-01', 'web', 'view', 's' from range(?) t(i)",
                [per_bucket * 3 + 1])
    assert buckets.bucket_count(con) == 4
    con.close()


def test_duckdb_is_held_to_a_quarter_of_the_budget_while_the_buckets_run(tmp_path):
    """While Polars builds the buckets DuckDB only appends rows: its limit is 250MiB of a 1000MiB budget
    inside the bucket loop and 500MiB again after it (also when the loop fails)."""
    from pipeline import buckets

    con = pipeline.warehouse.connect(tmp_path / "w.duckdb", memory_limit="1000MiB")
    fraction = pipeline.warehouse.DUCKDB_SHARE_DURING_BUCKETS / pipeline.warehouse.DUCKDB_SHARE
    with buckets.duckdb_held_to(con, fraction):
        assert con.execute("select current_setting('memory_limit')").fetchall()[0][0] == duckdb_size("250MiB")
    with pytest.raises(ZeroDivisionError), buckets.duckdb_held_to(con, fraction):
        1 / 0
    assert con.execute("select current_setting('memory_limit')").fetchall()[0][0] == duckdb_size("500MiB")
    con.close()


def duckdb_size(size: str) -> str:
    """How DuckDB prints a limit set to `size`."""
    import duckdb

    con = duckdb.connect()
    con.execute("set memory_limit = ?", [size])
    return con.execute("select current_setting('memory_limit')").fetchall()[0][0]


def test_config_engine_memory_limit_is_read_and_checked(tmp_path):
    """[engine] memory_limit is a size; anything else is a ConfigError naming the key."""
    project = tmp_path / "p"
    shutil.copytree(TINY, project)
    cfg = project / "journeys.toml"
    text = cfg.read_text()
    cfg.write_text(text + '\n[engine]\nmemory_limit = "1.5GiB"\n')
    assert pipeline.config.load_config(cfg).memory_limit == "1.5GiB"
    cfg.write_text(text + '\n[engine]\nmemory_limit = "plenty"\n')
    with pytest.raises(ConfigError, match="engine.memory_limit"):
        pipeline.config.load_config(cfg)
    cfg.write_text(text + '\n[engine]\nmemory_limit = "512MiB"\n')
    with pytest.raises(ConfigError, match="engine.memory_limit.*below 700MiB"):
        pipeline.config.load_config(cfg)


@pytest.mark.parametrize("command", ["run", "ingest", "build", "report"])
def test_memory_limit_option_is_checked(tmp_path, command):
    """--memory-limit takes a size; another value is a usage error (exit 2) that says what to write."""
    proc = subprocess.run([str(JOURNEYS_BIN), command, "--memory-limit", "plenty", "-c", str(tmp_path / "x.toml")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "'plenty' is not a memory size; write e.g. 4GiB" in proc.stderr


@pytest.mark.parametrize("size, problem", [("699MiB", True), ("0.6GiB", True), ("734MB", True), ("700MiB", False),
                                           ("735MB", False)])
def test_a_budget_below_700mib_is_refused_with_the_reason(tmp_path, size, problem):
    """Below 700MiB journeys cannot keep to a budget (its process alone takes about 200 MB, DuckDB needs
    about 300 MiB beside it): such a --memory-limit is a usage error (exit 2) that says so; 700MiB
    (734,003,200 bytes, so 735MB) and up pass the check (and fail later: there is no config)."""
    proc = subprocess.run([str(JOURNEYS_BIN), "build", "--memory-limit", size, "-c", str(tmp_path / "x.toml")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert (f"'{size}' is below 700MiB, the least budget journeys keeps to" in proc.stderr) == problem, proc.stderr


def test_memory_limit_option_reaches_the_warehouse(tmp_path, monkeypatch):
    """`journeys ingest --memory-limit 700MiB` opens the warehouse with that limit."""
    from pipeline.cli import cli

    project = tmp_path / "p"
    shutil.copytree(TINY, project)
    seen = []
    connect = pipeline.warehouse.connect
    monkeypatch.setattr(pipeline.warehouse, "connect", lambda *a, **k: seen.append(k.get("memory_limit")) or connect(*a, **k))
    result = CliRunner().invoke(cli, ["ingest", "-c", str(project / "journeys.toml"), "--memory-limit", "700MiB"])
    assert result.exit_code == 0, result.output
    assert seen == ["700MiB"]


def test_report_reads_the_warehouse_read_only_within_the_budget(tmp_path, monkeypatch):
    """`journeys report --memory-limit 700MiB --html FILE` opens the warehouse read-only with that limit
    (the journey map spills beyond it, as the marts do): the warehouse file is unchanged, and only
    the report is left beside it in the output folder."""
    import hashlib

    from pipeline.cli import cli

    project = tmp_path / "p"
    shutil.copytree(TINY, project)
    config = str(project / "journeys.toml")
    result = CliRunner().invoke(cli, ["run", "-c", config])
    assert result.exit_code == 0, result.output
    built = pipeline.config.load_config(project / "journeys.toml").warehouse
    before = hashlib.sha256(built.read_bytes()).hexdigest()
    seen = []
    connect = pipeline.warehouse.connect
    monkeypatch.setattr(pipeline.warehouse, "connect",
                        lambda *a, **k: seen.append((k.get("read_only"), k.get("memory_limit"))) or connect(*a, **k))
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["report", "-c", config, "--memory-limit", "700MiB", "--html", str(out / "r.html")])
    assert result.exit_code == 0, result.output
    assert seen == [(True, "700MiB")]
    assert hashlib.sha256(built.read_bytes()).hexdigest() == before
    assert [p.name for p in out.iterdir()] == ["r.html"]


@pytest.mark.parametrize("mib", [512, 700, 1024, 2048])
def test_on_a_small_budget_a_bucket_leaves_room_for_the_process_and_duckdb(mib):
    """Below about 3.4 GiB a bucket holds at most what fits in 92% of the budget beside the process
    (200 MiB) and DuckDB's quarter, at 2,450 bytes an event; hand-computed: 512MiB -> 61,219 events,
    and never more than the 40% rule."""
    from pipeline import buckets

    budget = mib << 20
    room = int(budget * (0.92 - 0.25)) - (200 << 20)
    assert buckets.events_per_bucket(budget) == room // 2450 < int(budget * 0.4) // 1600
    assert buckets.events_per_bucket(512 << 20) == 61_219


@pytest.mark.parametrize("mib, duckdb_mib", [(512, 112), (700, 300), (800, 400), (1000, 500), (4096, 2048)])
def test_duckdb_gets_half_the_budget_and_on_a_small_one_what_the_process_leaves(tmp_path, mib, duckdb_mib):
    """DuckDB's limit is half the budget, but under 800MiB the budget less 400MiB (what the process holds
    beside DuckDB: up to 362 MiB measured at 700MiB); budget_of finds the budget back from the limit."""
    con = pipeline.warehouse.connect(tmp_path / "w.duckdb", memory_limit=f"{mib}MiB")
    limit = con.execute("select current_setting('memory_limit')").fetchall()[0][0]
    assert limit == duckdb_size(f"{duckdb_mib}MiB")
    from pipeline import buckets

    assert pipeline.warehouse.budget_of(buckets.duckdb_memory_limit(con)) == mib << 20
    con.close()


def test_the_least_budget_grows_with_the_events():
    """Hand-computed: DuckDB needs 10 bytes an event for the marts and gets half the budget (a
    budget of 2,000,000,000 bytes for 100M events, within the 2GiB a whole 100M build was
    measured to hold to), never less than 700MiB."""
    least = pipeline.warehouse.least_budget
    assert least(0) == least(10_000_000) == least(30_000_000) == 700 << 20  # 30M: DuckDB 300 MB of 700MiB
    assert least(100_000_000) == 2_000_000_000 <= 2 << 30
    assert least(150_000_000) == 3_000_000_000
    assert pipeline.warehouse.budget_too_small(100_000_000, 2 << 30) is None
    problem = pipeline.warehouse.budget_too_small(100_000_000, 1 << 30)
    assert "building 100,000,000 events needs a memory budget of at least 2GiB" in problem
    assert "Fix: give --memory-limit 2GiB" in problem
    assert "at least 3GiB" in pipeline.warehouse.budget_too_small(150_000_000, 2 << 30)


def test_a_budget_too_small_for_the_events_stops_the_build_before_it_starts(tmp_path, monkeypatch):
    """The tiny project's build, with the marts' need per event made large enough that 700MiB
    cannot hold it: `journeys build` exits 1 naming the least budget, before building anything
    (the warehouse gets only the failed run in meta.runs), and with that budget it succeeds."""
    project = tmp_path / "p"
    shutil.copytree(TINY, project)
    config = str(project / "journeys.toml")
    from pipeline.cli import cli

    assert CliRunner().invoke(cli, ["ingest", "-c", config]).exit_code == 0
    db = pipeline.config.load_config(Path(config)).warehouse
    con = pipeline.warehouse.connect(db, read_only=True)
    events = con.execute("select count(*) from staging.events").fetchall()[0][0]
    tables = "select schema_name, table_name from duckdb_tables() where schema_name in ('core', 'marts') order by all"
    before = con.execute(tables).fetchall()
    con.close()
    monkeypatch.setattr(pipeline.warehouse, "MARTS_DUCKDB_BYTES_PER_EVENT", (2 << 30) // events)  # 4GiB needed
    refused = CliRunner().invoke(cli, ["build", "-c", config, "--memory-limit", "700MiB"])
    assert refused.exit_code == 1
    assert f"building {events:,} events needs a memory budget of at least 4GiB" in refused.output
    con = pipeline.warehouse.connect(db, read_only=True)
    assert con.execute(tables).fetchall() == before and ("core", "steps") not in before
    assert con.execute("select command, status, error like '%needs a memory budget%' from meta.runs order by started_at").fetchall() == [
        ("ingest", "succeeded", None), ("build", "failed", True)]
    con.close()
    done = CliRunner().invoke(cli, ["build", "-c", config, "--memory-limit", "4GiB"])
    assert done.exit_code == 0, done.output


def test_a_failing_mart_or_law_is_named_in_the_error():
    """An error inside the marts names the mart and its SQL file, and one inside the flow laws names the
    check, in the line the command prints and meta.runs keeps (DuckDB's out-of-memory error names no
    statement). Real failures: a table the statement reads is gone."""
    import duckdb
    from datetime import timedelta

    from conftest import events_frame, marts_db, ts
    from pipeline import marts
    from pipeline.journeys import BuildSettings

    events = events_frame([("c", ts("2026-01-01 10:00"), "web", "page_view"),
                           ("c", ts("2026-01-01 10:05"), "web", "purchase")])
    con = marts_db(events, BuildSettings(), ts("2026-01-01 10:05") + timedelta(days=1))
    con.execute("drop table core.customer_segments")
    with pytest.raises(duckdb.CatalogException) as failed:
        marts.build_marts(con)
    assert failed.value.__notes__ == ["in marts.transitions, sql/marts/transitions.sql"]
    assert pipeline.warehouse.describe_error(failed.value).startswith(
        "CatalogException (in marts.transitions, sql/marts/transitions.sql): ")

    con = marts_db(events, BuildSettings(), ts("2026-01-01 10:05") + timedelta(days=1))
    con.execute("drop table marts.funnel")
    with pytest.raises(duckdb.CatalogException) as failed:
        marts.check_laws(con)
    assert failed.value.__notes__ == ["in the flow-law check sql/checks/funnel_reconciles.sql"]
