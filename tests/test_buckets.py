"""Bucketed execution: the core tables and marts do not depend on how customers are split
into buckets, and the Polars visits and moves equal their SQL window definitions.

tests/sql_reference/ holds core.visits and core.moves written as SQL window queries over
core.steps (how they were computed before bucketing): an independent definition that the
Polars derivation (pipeline.journeys.derive_visits / with_moves) is checked against.
"""

from __future__ import annotations

import subprocess
from datetime import timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import JOURNEYS_BIN, SAMPLE, copy_config, events_frame, ts
from pipeline import buckets, marts, warehouse
from pipeline.config import StageRule
from pipeline.journeys import BuildSettings, build_journeys
from test_marts import FUNNEL, scenarios

REFERENCE = Path(__file__).resolve().parent / "sql_reference"
CORE = ("core.steps", "core.sessions", "core.journeys", "core.visits", "core.moves", "core.customer_segments")
MARTS = ("marts.transitions", "marts.stage_stats", "marts.funnel", "marts.segment_summary", "marts.bottlenecks",
         "marts.drop_offs", "marts.repeat_contacts", "marts.segment_comparison")
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def rows(con: duckdb.DuckDBPyConnection, table: str) -> list:
    return sorted(map(repr, con.execute(f"select * from {table}").fetchall()))


def staged(events: pl.DataFrame) -> duckdb.DuckDBPyConnection:
    """An in-memory warehouse whose staging.events holds `events`."""
    con = warehouse.connect(":memory:")
    con.register("_events", events.to_arrow())
    con.execute("insert into staging.events by name select * from _events")
    con.unregister("_events")
    con.execute("create or replace temp table _affected_customers (customer_id varchar)")
    return con


def built(scenario, n: int, split: bool | None = None) -> duckdb.DuckDBPyConnection:
    """Core and marts of a scenario, built in n buckets from staging.events (read by a scan per
    bucket, or from bucket files when `split`)."""
    events, s, as_of, seg, stage_order = scenario
    con = staged(events)
    keys = sorted(set(seg["segment_key"])) if seg is not None and seg.height else []
    marts.write_settings(con, marts.MartSettings(level=s.level, goal_stage=s.goal_stage, funnel_stages=tuple(stage_order),
                                                 segment_keys=keys, journey_timeout=s.journey_timeout), as_of)
    buckets.build_core(con, s, as_of, n, split=split)
    marts.finish_core(con, seg)
    marts.build_marts(con)
    return con


@SETTINGS
@given(scenario=scenarios(max_events=20), n=st.integers(2, 6), split=st.booleans())
def test_any_number_of_buckets_gives_the_same_core_and_marts(scenario, n, split):
    """Whether the buckets are read by scans of staging.events or from the split's files."""
    one, many = built(scenario, 1), built(scenario, n, split)
    for table in CORE + MARTS:
        assert rows(many, table) == rows(one, table), f"{table} differs with {n} buckets (split: {split})"


@SETTINGS
@given(scenario=scenarios(max_events=20))
def test_visits_and_moves_equal_their_sql_window_definitions(scenario):
    events, s, as_of, _, _ = scenario
    con = warehouse.connect(":memory:")
    marts.write_all_core(con, build_journeys(events, s, as_of))
    for name in ("visits", "moves"):
        sql = (REFERENCE / f"{name}.sql").read_text()
        sql = sql.replace(f"create or replace table core.{name} as", f"create or replace temp table ref_{name} as")
        con.execute(sql.replace("select * from core.visits", "select * from ref_visits"))
        assert rows(con, f"ref_{name}") == rows(con, f"core.{name}")


def judged_again(scenario, later) -> duckdb.DuckDBPyConnection:
    """Built at the scenario's as-of, then every journey's status judged again at `later`, as an
    incremental run does for the journeys it does not rebuild (sql/core/journey_status.sql)."""
    events, s, as_of, seg, stage_order = scenario
    con = built(scenario, 1)
    keys = sorted(set(seg["segment_key"])) if seg is not None and seg.height else []
    marts.write_settings(con, marts.MartSettings(level=s.level, goal_stage=s.goal_stage, funnel_stages=tuple(stage_order),
                                                 segment_keys=keys, journey_timeout=s.journey_timeout), later)
    marts.finish_core(con, seg, only_customers=True)
    marts.build_marts(con)
    return con


@SETTINGS
@given(scenario=scenarios(max_events=20), days=st.integers(0, 4))
def test_statuses_judged_again_later_equal_a_build_at_that_time(scenario, days):
    """Journeys open at the as-of may be dropped a few days later: judging their status again sets the
    terminal moves and their is_first_for_customer flags, and the marts, exactly as a build at the later time."""
    events, s, as_of, seg, stage_order = scenario
    later = as_of + timedelta(days=days)
    again, fresh = judged_again(scenario, later), built((events, s, later, seg, stage_order), 1)
    for table in ("core.journeys", "core.moves", "marts.transitions", "marts.stage_stats"):
        assert rows(again, table) == rows(fresh, table), table


def test_a_second_drop_off_at_the_same_node_is_not_the_customers_first():
    """Hand case: customer c drops a journey at awareness, comes back 3 days later and is open at
    awareness; 5 days on, the second journey is dropped too. The customer's first move
    awareness -> DROPPED stays the first journey's, and marts.transitions counts one customer, two journeys."""
    events = events_frame([("c", ts("2026-01-01 10:00"), "web", "page_view"),
                           ("c", ts("2026-01-04 10:00"), "web", "page_view")])
    s = BuildSettings(inactivity_timeout=1800, max_length=None, journey_timeout=86400, goal_stage="purchase",
                      rules=(StageRule(id="a", stage="awareness", event_type=("page_view",)),), level="stage")
    scenario = (events, s, ts("2026-01-04 11:00"), None, FUNNEL)
    con = judged_again(scenario, ts("2026-01-09 10:00"))
    got = con.execute("select m.to_node, m.is_first_for_customer from core.moves as m join core.journeys as j "
                      "using (journey_id) where m.from_node = 'awareness' order by j.started_at").fetchall()
    assert got == [("DROPPED", True), ("DROPPED", False)]
    assert con.execute("select transitions, journeys, customers from marts.transitions where segment_key = 'all' "
                       "and from_node = 'awareness' and to_node = 'DROPPED'").fetchall() == [(2, 2, 1)]


def test_the_reference_sql_reads_what_it_should():
    """The reference moves query must read the reference visits (not the tables under test)."""
    assert "select * from core.visits" in (REFERENCE / "moves.sql").read_text()


def test_each_customer_is_in_exactly_one_bucket():
    events = pl.DataFrame({"customer_id": [f"c{i}" for i in range(500)]})
    con = warehouse.connect(":memory:")
    con.register("_c", events.to_arrow())
    got = con.execute("select count(distinct hash(customer_id) % 7), count(*) from _c").fetchall()[0]
    assert got == (7, 500)


@pytest.mark.parametrize("text, expected", [
    ("4GiB", 4 * 1024**3), ("4 GB", 4 * 10**9), ("500MB", 500 * 10**6), ("1.5 GiB", int(1.5 * 1024**3)),
    ("2 KiB", 2048), ("500.0 MiB", 500 * 1024**2),  # the last as DuckDB prints its memory_limit
])
def test_parse_size(text, expected):
    assert warehouse.parse_size(text) == expected


@pytest.mark.parametrize("text", ["four GB", "4 parsecs", "", "-1GB", "123"])
def test_parse_size_rejects_what_is_not_a_size(text):
    with pytest.raises(ValueError, match="is not a memory size"):
        warehouse.parse_size(text)


def test_bucket_count_follows_events_and_budget():
    n_events = 1_000_000
    con = warehouse.connect(":memory:")
    con.execute(
        "insert into staging.events (event_id, customer_id, ts, channel, event_type, source) "
        "select 'e' || i, 'c' || (i % 1000), timestamptz '2026-01-01' + to_seconds(i), 'web', 'view', 's' "
        "from range(?) t(i)", [n_events])
    # budgets of 4GiB and more: a bucket is 40% of the budget at 1,600 bytes an event
    per_event = buckets.BYTES_PER_EVENT
    assert buckets.bucket_count(con, budget=n_events * per_event * 5) == 1
    big = buckets.bucket_count(con, budget=4 << 30)
    assert big == 1 and buckets.events_per_bucket(4 << 30) == (4 << 30) * 2 // 5 // per_event
    # a small budget: smaller buckets, so more of them
    assert buckets.bucket_count(con, budget=512 << 20) == -(-n_events // buckets.events_per_bucket(512 << 20)) == 17
    # never a bucket smaller than MIN_BUCKET_EVENTS, however small the budget
    assert buckets.bucket_count(con, budget=1) == n_events // buckets.MIN_BUCKET_EVENTS


@pytest.mark.slow
def test_sample_through_the_cli_with_different_bucket_counts(tmp_path, journeys_env):
    """The bundled sample built by the real CLI in 1 and in 5 buckets: every core and mart table equal."""
    got = {}
    for n in (1, 5):
        config = copy_config(SAMPLE / "journeys.toml", tmp_path / f"b{n}")
        done = subprocess.run([str(JOURNEYS_BIN), "run", "-c", str(config), "--buckets", str(n), "--json"],
                              capture_output=True, text=True, env=journeys_env)
        assert done.returncode == 0, done.stderr
        assert f'"buckets": {n}' in done.stdout
        con = duckdb.connect(str(tmp_path / f"b{n}" / "build" / "journeys.duckdb"), read_only=True)
        tables = [t for (t,) in con.execute(
            "select table_schema || '.' || table_name from information_schema.tables "
            "where table_schema in ('core', 'marts') and table_type = 'BASE TABLE' order by 1").fetchall()]
        got[n] = {t: rows(con, t) for t in tables}
        con.close()
    assert set(got[1]) == set(got[5]) and len(got[1]) >= len(CORE + MARTS)
    for table in got[1]:
        assert got[5][table] == got[1][table], f"{table} differs between 1 and 5 buckets"


def test_a_failed_build_step_leaves_the_warehouse_as_it_was(tmp_path, monkeypatch):
    """`journeys build` works on a copy (no transaction holding every bucket in memory) and
    swaps it in only when it succeeded: a build that fails in the marts leaves core and marts
    as they were, records the failure, and leaves no copy behind."""
    import pipeline.config
    import pipeline.run

    config = pipeline.config.load_config(copy_config(SAMPLE / "journeys.toml", tmp_path))
    pipeline.run.run_step(config, "ingest")
    pipeline.run.run_step(config, "build", buckets=2)
    con = duckdb.connect(str(config.warehouse), read_only=True)
    before = {t: rows(con, t) for t in ("core.steps", "core.moves", "marts.transitions")}
    con.close()

    def broken(con, progress=None):
        raise RuntimeError("disk on fire")
    monkeypatch.setattr(marts, "build_marts", broken)
    with pytest.raises(RuntimeError, match="disk on fire"):
        pipeline.run.run_step(config, "build", buckets=3)
    con = duckdb.connect(str(config.warehouse), read_only=True)
    assert {t: rows(con, t) for t in before} == before
    assert con.execute("select command, status from meta.runs order by started_at desc limit 1").fetchall() == [("build", "failed")]
    con.close()
    assert [p.name for p in config.warehouse.parent.iterdir() if ".build-" in p.name] == []


def test_a_full_rebuild_reuses_the_space_of_the_core_it_replaces(tmp_path):
    """clear_core before a full build frees the old core tables' blocks for the new ones: the file
    does not grow by another copy of the core on each rebuild (at 100M events that was 11 GB)."""
    path = tmp_path / "w.duckdb"
    con = warehouse.connect(path)

    def fill() -> None:  # core tables of ~30 MB: random strings do not compress
        for table in warehouse.BUILT.values():
            con.execute(f"create table {table} as select i as customer_id, md5(i::varchar) || md5((i + 1)::varchar) "
                        "as payload from range(300000) as t(i)")
        con.execute("checkpoint")

    fill()
    first = path.stat().st_size
    marts.clear_core(con)
    fill()
    con.close()
    assert first > 30_000_000
    assert path.stat().st_size < 1.2 * first


def test_a_scan_per_bucket_reads_the_same_events_as_the_split(tmp_path):
    """read_bucket (a filtered scan) gives bucket b exactly the events the split writes to b,
    and those are the events whose customer DuckDB hashes to b; together every event once."""
    n, n_events = 5, 2000
    con = warehouse.connect(":memory:")
    con.execute(
        "insert into staging.events (event_id, customer_id, ts, channel, event_type, source, source_file, source_row) "
        "select 'e' || i, 'c' || (i % 97), timestamptz '2026-01-01' + to_seconds(i), 'web', 'view', 's', 'f', i "
        "from range(?) t(i)", [n_events])
    buckets.split_buckets(con, tmp_path / "events", n)
    expected = dict(con.execute(
        "select hash(customer_id) % ? as b, list(event_id order by event_id) from staging.events group by b", [n]).fetchall())
    seen = 0
    for b in range(n):
        scanned = buckets.read_bucket(con, b, n)
        from_file = buckets.read_split_bucket(tmp_path / "events", b)
        assert scanned.schema == from_file.schema
        assert scanned.sort("event_id").equals(from_file.sort("event_id"))
        assert scanned["event_id"].sort().to_list() == expected.get(b, [])
        seen += scanned.height
    assert seen == n_events


@pytest.mark.parametrize("n, splits", [(2, False), (buckets.SCAN_MAX_BUCKETS, False), (buckets.SCAN_MAX_BUCKETS + 1, True)])
def test_the_events_are_split_into_files_only_above_scan_max_buckets(monkeypatch, n, splits):
    """The rule build_core follows by default; the result is the same either way (above)."""
    events = events_frame([(f"c{i}", ts(f"2026-01-01 {10 + i % 8}:00"), "web", "page_view") for i in range(60)])
    s = BuildSettings(rules=(StageRule(id="a", stage="awareness", event_type=("page_view",)),))
    as_of = ts("2026-01-02 00:00")
    con = staged(events)
    calls = []
    real = buckets.split_buckets
    monkeypatch.setattr(buckets, "split_buckets", lambda *a, **k: calls.append(a[2]) or real(*a, **k))
    buckets.build_core(con, s, as_of, n)
    assert calls == ([n] if splits else [])
    assert con.execute("select count(*) from core.steps").fetchall()[0][0] == events.height


def test_split_passes_by_events_and_duckdb_limit():
    """Hand-computed: 50,000 events per MiB of DuckDB's limit in one partitioned write."""
    assert buckets.SPLIT_ROWS_PER_MIB == 50_000
    assert buckets.split_passes(100_000_000, 300 << 20) == 7  # 100M / 15M, the 700MiB budget at 100M
    assert buckets.split_passes(15_000_000, 300 << 20) == 1
    assert buckets.split_passes(15_000_001, 300 << 20) == 2
    assert buckets.split_passes(100_000_000, 2048 << 20) == 1  # the default budget, as before
    assert buckets.split_passes(0, 300 << 20) == 1


@pytest.mark.parametrize("rows_per_mib, n", [(1, 7), (1, 2), (10**9, 7)])
def test_a_split_in_several_passes_puts_every_event_in_its_bucket_once(tmp_path, monkeypatch, rows_per_mib, n):
    """However many passes the split makes, bucket b holds exactly the events whose customer
    hashes to b (computed here by DuckDB directly from staging.events), each once."""
    n_events = 3000
    con = warehouse.connect(":memory:")
    con.execute("set memory_limit = '64MiB'")
    con.execute(
        "insert into staging.events (event_id, customer_id, ts, channel, event_type, source, source_file, source_row) "
        "select 'e' || i, 'c' || (i % 211), timestamptz '2026-01-01' + to_seconds(i), 'web', 'view', 's', 'f', i "
        "from range(?) t(i)", [n_events])
    monkeypatch.setattr(buckets, "SPLIT_ROWS_PER_MIB", rows_per_mib)
    passes = buckets.split_buckets(con, tmp_path / "events", n)
    # 64 MiB of DuckDB at 1 event per MiB: 3000 / 64 -> 47 passes, at most one per bucket
    assert passes == (min(n, 47) if rows_per_mib == 1 else 1)
    expected = dict(con.execute(
        "select hash(customer_id) % ? as b, list(event_id order by event_id) from staging.events group by b", [n]).fetchall())
    for b in range(n):
        got = buckets.read_split_bucket(tmp_path / "events", b)["event_id"].sort().to_list()
        assert got == expected.get(b, [])
    assert sum(len(v) for v in expected.values()) == n_events


# a rule on a property, and one on the event type alone
PAID = StageRule(id="paid", stage="purchase", event_type=("checkout",), properties=(("paid", ("yes",)),))
VIEW = StageRule(id="view", stage="awareness", event_type=("page_view", "checkout"))


def _paid_log() -> pl.DataFrame:
    """30 customers, each: a page view, then a checkout paid (even customers) or not (odd)."""
    rows = []
    for i in range(30):
        rows.append((f"c{i}", ts("2026-01-01 10:00"), "web", "page_view", '{"page": "' + "x" * 200 + '"}'))
        rows.append((f"c{i}", ts("2026-01-01 10:05"), "web", "checkout", '{"paid": "%s"}' % ("yes" if i % 2 == 0 else "no")))
    return events_frame(rows)


@pytest.mark.parametrize("n, split", [(1, False), (3, False), (3, True)])
def test_properties_are_read_only_when_a_rule_matches_on_them(n, split):
    """With a rule on properties, the bucketed build reads them and labels by them: hand-counted,
    the 15 paid checkouts are purchases and the 15 unpaid ones fall to the next rule. Without
    one, the buckets carry no properties (null), and the core is the same as built from
    every column."""
    events, as_of = _paid_log(), ts("2026-01-02 00:00")
    with_rule = BuildSettings(rules=(PAID, VIEW))
    without = BuildSettings(rules=(VIEW,))
    assert with_rule.reads_properties and not without.reads_properties
    con = staged(events)
    buckets.build_core(con, with_rule, as_of, n, split=split)
    stages = dict(con.execute(
        "select stage, count(*) from core.steps where event_type = 'checkout' group by stage").fetchall())
    assert stages == {"purchase": 15, "awareness": 15}
    assert con.execute("select count(*) from core.journeys where status = 'converted'").fetchall()[0][0] == 15

    con = staged(events)
    assert buckets.read_bucket(con, 0, 1, properties=False)["properties"].null_count() == events.height
    assert buckets.read_bucket(con, 0, 1)["properties"].null_count() == 0
    buckets.build_core(con, without, as_of, n, split=split)
    reference = build_journeys(events, without, as_of).steps  # the pure function, with every property
    got = con.sql("select event_id, stage, rule_id from core.steps").pl()
    assert got.sort("event_id").equals(reference.select("event_id", "stage", "rule_id").sort("event_id"))
    assert set(got["stage"]) == {"awareness"}


def test_bucket_count_counts_the_properties_the_build_reads():
    """Each event of a bucket counts PROPERTY_COPIES times its properties' mean size more, only
    when the build reads them. Hand-computed at a 4GiB budget for 1M events with 1,000-byte
    properties: 40% of the budget at 1,600 bytes an event is 1,073,741 events (one bucket);
    at 1,600 + 2.5 x 1,000 bytes it is 419,021 events, so 3 buckets."""
    con = warehouse.connect(":memory:")
    con.execute(
        "insert into staging.events (event_id, customer_id, ts, channel, event_type, source, properties) "
        "select 'e' || i, 'c' || (i % 1000), timestamptz '2026-01-01' + to_seconds(i), 'web', 'view', 's', "
        "'{\"a\": \"' || repeat('x', 991) || '\"}' from range(1000000) t(i)")
    assert con.execute("select min(strlen(properties::varchar)), max(strlen(properties::varchar)) "
                       "from staging.events").fetchall()[0] == (1000, 1000)
    assert buckets.events_per_bucket(4 << 30) == 1_073_741
    assert buckets.events_per_bucket(4 << 30, 1000) == 419_021
    assert buckets.bucket_count(con, budget=4 << 30, properties=False) == 1
    assert buckets.bucket_count(con, budget=4 << 30, properties=True) == 3
