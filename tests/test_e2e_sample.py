"""End to end on the bundled sample: the real CLI in a subprocess, real DuckDB and Parquet,
checked against the generator's ground truth (data/sample/ground_truth.json) and against
independent counts of the raw files."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from conftest import JOURNEYS_BIN, SAMPLE, copy_config
from pipeline import schema

TRUTH = json.loads((SAMPLE / "ground_truth.json").read_text()) if (SAMPLE / "ground_truth.json").exists() else None
pytestmark = pytest.mark.skipif(TRUTH is None, reason="data/sample/ground_truth.json missing: run `make sample`")


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory, ) -> dict:
    out = tmp_path_factory.mktemp("sample")
    config = copy_config(SAMPLE / "journeys.toml", out)
    env = {"CI": "true", "PATH": str(JOURNEYS_BIN.parent)}
    proc = subprocess.run([str(JOURNEYS_BIN), "run", "--config", str(config)], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    build = out / "build"
    con = duckdb.connect(str(build / "journeys.duckdb"), read_only=True)
    yield {"out": out, "build": build, "stdout": proc.stdout, "con": con, "config": config}
    con.close()


def _rel(path: str) -> str:
    return Path(path).resolve().relative_to(SAMPLE.resolve()).as_posix()


def _data_rows(path: Path) -> int:
    """Independent count: non-blank physical lines, minus the header for CSV (no field spans lines here)."""
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    return len(lines) - (1 if path.suffix == ".csv" else 0)


def test_outputs_exist(sample_run):
    """make run's outputs: a warehouse with the four schemas, Parquet + manifest, GraphML, a summary."""
    schemas = {r[0] for r in sample_run["con"].execute("select schema_name from duckdb_schemas() where database_name = current_database()").fetchall()}
    assert {"staging", "core", "marts", "meta"} <= schemas
    export = sample_run["build"] / "export"
    assert (export / "manifest.json").exists()
    assert len(list(export.glob("*.parquet"))) >= 10
    assert list((sample_run["build"] / "graph").glob("*.graphml"))
    assert "top bottlenecks" in sample_run["stdout"] and "drop-offs" in sample_run["stdout"]
    report = sample_run["build"] / "report.html"
    html = report.read_text()
    assert 'id="segment-picker"' in html and 'data-segment="region=south"' in html
    assert "<script src" not in html  # everything inlined: it opens offline


def test_report_html_from_the_cli(sample_run, tmp_path):
    """`journeys report --html PATH` writes the same standalone report from the published warehouse."""
    out = tmp_path / "again.html"
    proc = subprocess.run([str(JOURNEYS_BIN), "report", "-c", str(sample_run["config"]), "--html", str(out)],
                          capture_output=True, text=True, env={"CI": "true"})
    assert proc.returncode == 0, proc.stderr
    assert 'id="segment-picker"' in out.read_text()


def test_every_input_row_is_accounted_for(sample_run):
    """For every file: rows in the file = loaded + duplicates + quarantined (and = the ground truth's count)."""
    rows = sample_run["con"].execute(
        "select source_file, rows_read, loaded, duplicates, quarantined from meta.ingest_files"
    ).fetchall()
    seen = set()
    for source_file, rows_read, loaded, duplicates, quarantined in rows:
        rel = _rel(source_file)
        seen.add(rel)
        assert rows_read == loaded + duplicates + quarantined, rel
        assert rows_read == _data_rows(Path(source_file)), rel
        assert rows_read == TRUTH["files"][rel]["rows"], rel
    assert seen == set(TRUTH["files"])
    loaded = sample_run["con"].execute("select count(*) from staging.events").fetchall()[0][0]
    assert loaded == TRUTH["events"]["valid"]


def test_planted_bad_rows_are_quarantined_with_their_reason(sample_run):
    """Each planted bad row is in staging.quarantine at its file and line with the planted reason, and nothing else is."""
    got = {
        (_rel(f), r): reason
        for f, r, reason in sample_run["con"].execute("select source_file, source_row, reason from staging.quarantine").fetchall()
    }
    want = {(b["file"], b["row"]): b["reason"] for b in TRUTH["bad_rows"]}
    assert got == want
    assert set(got.values()) <= set(schema.QUARANTINE_REASONS)  # the documented vocabulary
    assert {b["reason"] for b in TRUTH["bad_rows"]} >= {
        "malformed_line", "missing_customer", "unparseable_timestamp", "timestamp_out_of_range",
        "unknown_channel", "missing_event_type", "unknown_timezone", "duplicate_event_id",
    }


def test_planted_duplicates_are_counted_not_loaded(sample_run):
    """Exact duplicate rows are dropped and counted, per file."""
    per_file = dict(
        (_rel(f), d) for f, d in sample_run["con"].execute("select source_file, duplicates from meta.ingest_files").fetchall()
    )
    want: dict[str, int] = {}
    for d in TRUTH["duplicates"]:
        want[d["file"]] = want.get(d["file"], 0) + 1
    assert {f: n for f, n in per_file.items() if n} == want


def test_planted_bottleneck_comes_first_in_its_segment(sample_run):
    """The planted slow transition is rank 1 by time lost (journeys x median wait) in its segment."""
    b = TRUTH["bottleneck"]
    top = sample_run["con"].execute(
        "select from_node, to_node from marts.bottlenecks where kind = 'edge' and rank = 1 and segment_key = ? and segment_value = ?",
        [b["segment_key"], b["segment_value"]],
    ).fetchall()
    assert top == [(b["from_node"], b["to_node"])]
    # and it is far slower there than in the other values of that segment key
    waits = dict(sample_run["con"].execute(
        "select segment_value, wait_p50_seconds from marts.transitions where segment_key = ? and from_node = ? and to_node = ?",
        [b["segment_key"], b["from_node"], b["to_node"]],
    ).fetchall())
    others = [w for v, w in waits.items() if v not in (b["segment_value"], "(unknown)")]
    assert others and all(waits[b["segment_value"]] > 5 * w for w in others)


def test_planted_drop_off_comes_first_in_its_segment(sample_run):
    """The planted drop-off stage is rank 1 by drop-offs in its segment, and loses most of its journeys there."""
    d = TRUTH["drop_off"]
    top = sample_run["con"].execute(
        "select node, drop_off_rate from marts.drop_offs where rank = 1 and segment_key = ? and segment_value = ?",
        [d["segment_key"], d["segment_value"]],
    ).fetchall()
    assert len(top) == 1 and top[0][0] == d["node"] and top[0][1] > 0.5


def test_export_matches_warehouse(sample_run):
    """Every exported Parquet file reads back with pyarrow with the manifest's row count and the warehouse's rows."""
    export = sample_run["build"] / "export"
    manifest = json.loads((export / "manifest.json").read_text())
    run_id = sample_run["con"].execute("select run_id from meta.runs where status = 'succeeded'").fetchall()
    assert manifest["run_id"] in {r[0] for r in run_id}
    assert {t["table"] for t in manifest["tables"]} >= {"core.steps", "core.sessions", "core.journeys", "marts.transitions", "marts.stage_stats", "marts.funnel"}
    for t in manifest["tables"]:
        table = pq.read_table(export / t["file"])
        count = sample_run["con"].execute(f"select count(*) from {t['table']}").fetchall()[0][0]
        assert table.num_rows == t["rows"] == count, t["table"]
        assert [c["name"] for c in t["columns"]] == table.column_names


def test_validate_counts_rows_like_a_run_and_writes_nothing(tmp_path):
    """`journeys validate` reads every row in memory: its counts match the ground truth, and no output exists after."""
    config = copy_config(SAMPLE / "journeys.toml", tmp_path)
    proc = subprocess.run([str(JOURNEYS_BIN), "validate", "-c", str(config), "--json"], capture_output=True, text=True, env={"CI": "true"})
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)
    assert sum(s["loaded"] for s in found["sources"].values()) == TRUTH["events"]["valid"]
    assert sum(s["quarantined"] for s in found["sources"].values()) == len(TRUTH["bad_rows"])
    assert sum(s["duplicates"] for s in found["sources"].values()) == len(TRUTH["duplicates"])
    assert not (tmp_path / "build").exists()
