"""Batched ingest equals the unbatched one. Ingest reads every file in batches of at most
JOURNEYS_INGEST_BATCH_ROWS rows (a Parquet file by row ranges, a CSV or JSON lines file cut
after reading) and settles each batch against what staging already holds; whatever the batch
size, staging.events, staging.duplicates, staging.quarantine and the counts per file are the
same as with one batch per file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ROOT

import pipeline.config
import pipeline.ingest
import pipeline.warehouse
from pipeline.config import ConfigError
from pipeline.sample import write_sample

STAGING = ("staging.events", "staging.duplicates", "staging.quarantine")


def staged(config: pipeline.config.Config, batch_rows: int | None) -> tuple[dict[str, list], list]:
    """Every staging table as sorted rows, and the counts per file, after a full ingest."""
    con = pipeline.warehouse.connect(":memory:")
    try:
        counts = pipeline.ingest.ingest(con, config, batch_id="b1", batch_rows=batch_rows)
        tables = {name: sorted(map(repr, con.execute(f"select * from {name}").fetchall())) for name in STAGING}
        assert con.execute("select count(*) - count(distinct event_id) from staging.events").fetchall()[0][0] == 0
        # every row of a full load keeps its raw line as evidence, also one that lost to a row of a later batch
        assert con.execute("select count(*) from staging.duplicates where raw_line is null").fetchall()[0][0] == 0
        return tables, sorted(map(repr, counts))
    finally:
        con.close()


def assert_same(config: pipeline.config.Config, batch_rows: int) -> None:
    whole, whole_counts = staged(config, 10**9)
    batched, batched_counts = staged(config, batch_rows)
    for name in STAGING:
        assert batched[name] == whole[name], f"{name} differs with batches of {batch_rows} rows"
    assert batched_counts == whole_counts


@pytest.mark.parametrize("batch_rows", [97, 1000])
def test_batched_ingest_of_the_sample_equals_one_batch_per_file(tmp_path, batch_rows):
    """The sample (CSV and JSON lines, with duplicates, conflicts and bad rows of every kind)
    gives the same staging tables in batches of 97 or 1000 rows as in one batch per file."""
    write_sample(tmp_path, customers=100, seed=5)
    shutil.copy(ROOT / "data" / "sample" / "journeys.toml", tmp_path / "journeys.toml")
    assert_same(pipeline.config.load_config(tmp_path / "journeys.toml"), batch_rows)


CONFIG = """
[project]
name = "batches"
channels = ["web", "email"]
{sources}
"""
SOURCE = """
[[sources]]
name = "{name}"
path = "{name}/*.{ext}"
format = "{fmt}"
channel = {{ column = "medium" }}
event_id = "id"
customer_id = "cust"
event_type = {{ column = "ev" }}
timestamp = {{ column = "ts", format = "iso" }}
properties = ["note"]
"""
COLUMNS = ["id", "cust", "ev", "ts", "medium", "note"]

row = st.tuples(
    st.sampled_from(["e1", "e2", "e3", "e4", "e5", ""]),  # few ids: duplicates within and across batches and files
    st.sampled_from(["c1", "c2", ""]),  # empty: missing_customer
    st.sampled_from(["view", "buy"]),
    st.sampled_from(["2026-01-01T10:00:00Z", "2026-01-02 11:30:00", "nonsense"]),
    st.sampled_from(["web", "email", "sms"]),  # sms: unknown_channel
    st.sampled_from(["a", "b"]),  # the same id with another note: a conflict
)
files = st.lists(st.lists(row, min_size=0, max_size=12), min_size=1, max_size=3)


def write_files(root: Path, fmt: str, contents: list[list[tuple]]) -> None:
    folder = root / fmt
    folder.mkdir(parents=True, exist_ok=True)
    for i, rows in enumerate(contents):
        path = folder / f"part-{i}.{fmt}"
        if fmt == "parquet":
            pq.write_table(pa.table({c: [r[j] for r in rows] for j, c in enumerate(COLUMNS)},
                                    schema=pa.schema([(c, pa.string()) for c in COLUMNS])), path, row_group_size=3)
        elif fmt == "csv":
            path.write_text("\n".join([",".join(COLUMNS), *(",".join(r) for r in rows)]) + "\n")
        else:
            path.write_text("".join(json.dumps(dict(zip(COLUMNS, r))) + "\n" for r in rows))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parquet=files, csv=files, jsonl=files, batch_rows=st.integers(1, 5))
def test_batched_ingest_of_generated_logs_equals_one_batch_per_file(tmp_path_factory, parquet, csv, jsonl, batch_rows):
    """Generated Parquet, CSV and JSON lines files whose few event ids repeat within and across
    batches and files (exact duplicates and conflicts), with invalid rows: batches of 1 to 5
    rows give the same staging tables and counts as one batch per file."""
    root = tmp_path_factory.mktemp("logs")
    for fmt, contents in (("parquet", parquet), ("csv", csv), ("jsonl", jsonl)):
        write_files(root, fmt, contents)
    sources = "".join(SOURCE.format(name=fmt, ext=fmt, fmt=fmt) for fmt in ("parquet", "csv", "jsonl"))
    (root / "journeys.toml").write_text(CONFIG.format(sources=sources))
    assert_same(pipeline.config.load_config(root / "journeys.toml"), batch_rows)


def test_batch_size_from_the_environment(monkeypatch):
    """JOURNEYS_INGEST_BATCH_ROWS sets the batch size; anything but a positive whole number is
    a ConfigError that says what to write."""
    monkeypatch.setenv("JOURNEYS_INGEST_BATCH_ROWS", "5")
    assert pipeline.ingest.batch_rows_setting() == 5
    monkeypatch.delenv("JOURNEYS_INGEST_BATCH_ROWS")
    assert pipeline.ingest.batch_rows_setting() == pipeline.ingest.DEFAULT_BATCH_ROWS
    monkeypatch.setenv("JOURNEYS_INGEST_BATCH_ROWS", "0")
    with pytest.raises(ConfigError, match="positive whole number"):
        pipeline.ingest.batch_rows_setting()


def test_staging_events_has_no_index_and_the_uniqueness_law_catches_a_repeated_id(tmp_path):
    """staging.events has no primary key (its index is too costly at scale); the law
    event_ids_unique (sql/checks/) returns any event id held twice."""
    con = pipeline.warehouse.connect(tmp_path / "w.duckdb")
    assert con.execute("select count(*) from duckdb_indexes() where table_name = 'events'").fetchall()[0][0] == 0
    assert con.execute("select count(*) from duckdb_constraints() where table_name = 'events' "
                       "and constraint_type in ('PRIMARY KEY', 'UNIQUE')").fetchall()[0][0] == 0
    law = (pipeline.warehouse.sql_dir() / "checks" / "event_ids_unique.sql").read_text()
    con.execute("insert into staging.events (event_id, customer_id, ts, channel, event_type, source) "
                "values ('s:1', 'c', now(), 'web', 'view', 's'), ('s:2', 'c', now(), 'web', 'view', 's')")
    assert con.execute(law).fetchall() == []
    con.execute("insert into staging.events (event_id, customer_id, ts, channel, event_type, source) "
                "values ('s:1', 'd', now(), 'web', 'buy', 's')")
    assert con.execute(law).fetchall() == [("event_ids_unique", "s", "s:1", "2 rows in staging.events")]
    con.close()
