"""Tests of pipeline.synth, the bulk generator behind `journeys sample --events`: determinism,
exact counts, unique ids, a shape like real touchpoint logs, and a config the real pipeline
runs, whose event-type graph is the directly-follows graph of the 30-minute sessions."""

from __future__ import annotations

import json
import subprocess
from collections import Counter

import duckdb
import polars as pl
import pytest
from click.testing import CliRunner

from conftest import JOURNEYS_BIN
from pipeline.cli import cli
from pipeline.config import load_config
from pipeline.synth import CHANNELS, NAMES, write_events

TIMEOUT_SECONDS = 30 * 60


@pytest.fixture(scope="module")
def bulk(tmp_path_factory: pytest.TempPathFactory):
    """60k events in chunks of 25k (three files), seed 11."""
    out = tmp_path_factory.mktemp("bulk")
    written = write_events(out, 60_000, seed=11, chunk_events=25_000)
    return out, written, pl.read_parquet(out / "events" / "*.parquet")


def gaps(events: pl.DataFrame) -> pl.Series:
    """Seconds from each event to the customer's previous one (in the pipeline's order)."""
    ordered = events.sort("customer_id", "ts", "event_id")
    return ordered.select(pl.col("ts").diff().over("customer_id").dt.total_microseconds() / 1e6).to_series().drop_nulls()


def test_same_seed_same_files_other_seed_other_files(tmp_path, bulk):
    """The same seed and chunk size write byte-identical files; another seed writes other data."""
    out, written, _ = bulk
    again = write_events(tmp_path / "again", 60_000, seed=11, chunk_events=25_000)
    assert [p.name for p in again.files] == [p.name for p in written.files]
    for a, b in zip(again.files, written.files):
        assert a.read_bytes() == b.read_bytes(), a.name
    assert again.config.read_text() == written.config.read_text()
    other = write_events(tmp_path / "other", 60_000, seed=12, chunk_events=25_000)
    assert other.files[0].read_bytes() != written.files[0].read_bytes()


def test_exact_count_chunks_and_schema(bulk):
    """Exactly the events asked for, one file per chunk, with the documented columns and types."""
    out, written, events = bulk
    assert written.events == events.height == 60_000
    assert [p.name for p in written.files] == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    assert [pl.scan_parquet(p).select(pl.len()).collect().item() for p in written.files] == [25_000, 25_000, 10_000]
    assert events.schema == pl.Schema({
        "event_id": pl.Int64, "customer_id": pl.String, "ts": pl.Datetime("us", "UTC"),
        "channel": pl.String, "event_type": pl.String,
    })
    assert events.null_count().sum_horizontal().item() == 0


def test_ids_unique_and_customers_never_span_chunks(bulk):
    """event_id is the global row number; a customer's events are all in one file, so ids
    are unique across chunks and written.customers counts them."""
    out, written, _ = bulk
    parts = pl.concat([pl.read_parquet(p).with_columns(part=pl.lit(i)) for i, p in enumerate(written.files)])
    assert parts["event_id"].to_list() == list(range(60_000))
    per_customer = parts.group_by("customer_id").agg(pl.col("part").n_unique())
    assert per_customer["part"].max() == 1
    assert per_customer.height == written.customers


def test_rows_in_time_order_within_a_file(bulk):
    """Each file is a log in time order (ties keep the generated order, which event_id numbers)."""
    _, written, _ = bulk
    for path in written.files:
        assert pl.read_parquet(path)["ts"].is_sorted()


def test_shape_like_touchpoint_logs(bulk):
    """Gaps under and over the 30-minute timeout, some over 30 days, some exact ties; about ten
    events per customer with a heavy tail; every channel and event type occurs; the funnel narrows."""
    _, _, events = bulk
    g = gaps(events)
    assert 0.15 < (g > TIMEOUT_SECONDS).mean() < 0.45
    assert 0.005 < (g > 30 * 86_400).mean() < 0.10
    assert 0.003 < (g == 0).mean() < 0.05
    assert 0.02 < ((g > 5 * 60) & (g <= TIMEOUT_SECONDS)).mean()  # some slow clicks inside a session
    per_customer = events.group_by("customer_id").len()["len"]
    assert 7 <= per_customer.mean() <= 13
    assert per_customer.max() >= 6 * per_customer.mean()
    assert per_customer.min() >= 1
    assert set(events["channel"]) == set(CHANNELS)
    assert set(events["event_type"]) == set(NAMES)
    n = Counter(events["event_type"].to_list())
    assert n["product_view"] > n["add_to_cart"] > n["checkout"] > n["purchase"] > 0


def reference_dfg(events: pl.DataFrame) -> dict[tuple[str, str], int]:
    """The directly-follows graph of the 30-minute sessions, written here with Polars only:
    order each customer's events by (ts, event_id), cut where the gap is over 30 minutes,
    count consecutive pairs within a session, plus START -> first and last -> END."""
    ordered = events.sort("customer_id", "ts", "event_id").with_columns(
        new=(pl.col("ts").diff().over("customer_id").dt.total_microseconds() > TIMEOUT_SECONDS * 1_000_000)
        .fill_null(True)
    ).with_columns(session=pl.col("new").cum_sum())
    pairs = ordered.with_columns(
        nxt=pl.col("event_type").shift(-1).over("session"),
    )
    dfg = {}
    for a, b, n in pairs.group_by("event_type", "nxt").len().iter_rows():
        dfg[(a, b if b is not None else "END")] = n
    for a, n in ordered.filter("new").group_by("event_type").len().iter_rows():
        dfg[("START", a)] = n
    return dfg


def test_generated_config_runs_and_graph_is_the_session_dfg(tmp_path, journeys_env):
    """journeys.toml loads; a real `journeys run` on 50k generated events loads every row, makes
    journeys equal to the 30-minute sessions, and marts.transitions at level event_type is the
    directly-follows graph of those sessions (terminals taken as END)."""
    written = write_events(tmp_path, 50_000, seed=5)
    config = load_config(written.config)
    assert config.sources[0].format == "parquet"
    proc = subprocess.run([str(JOURNEYS_BIN), "run", "--config", str(written.config), "--json"],
                          capture_output=True, text=True, env=journeys_env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["ingest"]["loaded"] == 50_000
    assert summary["ingest"]["quarantined"] == 0
    events = pl.read_parquet(tmp_path / "events" / "*.parquet")
    con = duckdb.connect(str(tmp_path / "warehouse" / "journeys.duckdb"), read_only=True)
    try:
        assert con.sql("select count(*) from core.steps").fetchall()[0][0] == 50_000
        journeys, sessions = con.sql(
            "select (select count(*) from core.journeys), (select count(*) from core.sessions)").fetchall()[0]
        assert journeys == sessions == int((gaps(events) > TIMEOUT_SECONDS).sum()) + events["customer_id"].n_unique()
        rows = con.sql(
            "select from_node, case when to_node in ('CONVERTED', 'DROPPED', 'OPEN') then 'END' else to_node end, "
            "sum(transitions) from marts.transitions where level = 'event_type' and segment_key = 'all' "
            "group by all").fetchall()
    finally:
        con.close()
    assert {(a, b): n for a, b, n in rows} == reference_dfg(events)


def test_cli_writes_bulk_events(tmp_path):
    """`journeys sample --events 2k --out DIR` writes 2000 events and the config."""
    result = CliRunner().invoke(cli, ["sample", "--events", "2k", "--seed", "3", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "wrote 2000 events" in result.output
    assert pl.read_parquet(tmp_path / "events" / "*.parquet").height == 2000
    assert (tmp_path / "journeys.toml").exists()


@pytest.mark.parametrize("args, message", [
    (["--events", "10M"], "--events needs --out DIR"),
    (["--events", "ten", "--out", "x"], "'ten' is not a number of events"),
    (["--events", "0", "--out", "x"], "is not at least 1 event"),
])
def test_cli_bulk_usage_errors(args, message):
    """--events without --out, or a count that is not a positive number, is a usage error (exit 2)."""
    result = CliRunner().invoke(cli, ["sample", *args])
    assert result.exit_code == 2
    assert message in result.output
