"""What a killed step leaves beside the outputs is removed by the next step or run.

`journeys build` works on a copy of the warehouse (as large as the warehouse) and writes bucket
files beside it; `journeys export` writes into a scratch folder; `journeys report --html` into
a scratch folder and a temporary page. Each test pauses a real CLI process inside its step,
kills it (SIGKILL: no chance to clean up), checks that the leftovers are there (so the test
can fail) and that the outputs are untouched, then runs the step again and checks that they
are gone and the result equals the one before."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

import pipeline.config
from conftest import JOURNEYS_BIN, SAMPLE, copy_config
from test_kill import checksums, table_rows

AS_OF = "2026-11-01T00:00:00Z"

# Runs the CLI with one function replaced by one that says "paused" and sleeps: killed there.
PAUSED = """
import sys, time
import importlib
module, name = sys.argv[1].rsplit(".", 1)
def paused(*args, **kwargs):
    print("paused", flush=True)
    time.sleep(60)
setattr(importlib.import_module(module), name, paused)
from pipeline.cli import main
sys.argv = ["journeys", *sys.argv[2:]]
main()
"""


def kill_paused_in(function: str, *args: str) -> None:
    proc = subprocess.Popen([sys.executable, "-c", PAUSED, function, *args], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "CI": "true"}, start_new_session=True)
    try:
        line = proc.stdout.readline().strip()
        assert line == "paused", f"the step ended before {function}: {proc.communicate()}"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def journeys(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(JOURNEYS_BIN), *args], capture_output=True, text=True, env={**os.environ, "CI": "true"})


@pytest.fixture
def published(tmp_path):
    config_path = copy_config(SAMPLE / "journeys.toml", tmp_path)
    config = pipeline.config.load_config(config_path)
    done = journeys("run", "-c", str(config_path), "--as-of", AS_OF)
    assert done.returncode == 0, done.stderr
    return config_path, config


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") and p.name != ".journeys.lock")


@pytest.mark.slow
def test_a_killed_build_leaves_its_copy_and_buckets_and_the_next_build_removes_them(published):
    config_path, config = published
    folder = config.warehouse.resolve().parent  # the published version's folder
    before, rows = checksums([config.warehouse]), table_rows(config.warehouse)
    kill_paused_in("pipeline.journeys.build_journeys", "build", "-c", str(config_path), "--as-of", AS_OF, "--buckets", "2")
    # what DuckDB spills beside the copy on a large build (too small a build here to spill)
    copy = next(folder.glob(f".{config.warehouse.name}.build-*"))
    (folder / f"{copy.name}.tmp").mkdir()
    (folder / f"{copy.name}.tmp" / "duckdb_temp_storage-0.tmp").write_bytes(b"spilled")
    left = hidden(folder)
    assert any(n.startswith(f".{config.warehouse.name}.build-") for n in left), left
    assert any(n.startswith(".buckets-") for n in left), left
    assert checksums([config.warehouse]) == before  # the killed build never touched the warehouse
    again = journeys("build", "-c", str(config_path), "--as-of", AS_OF, "--buckets", "2")
    assert again.returncode == 0, again.stderr
    assert hidden(folder) == []
    assert table_rows(config.warehouse) == rows


@pytest.mark.slow
def test_a_run_also_removes_a_killed_builds_copy(published):
    config_path, config = published
    old_folder = config.warehouse.resolve().parent
    kill_paused_in("pipeline.journeys.build_journeys", "build", "-c", str(config_path), "--as-of", AS_OF)
    assert any(n.startswith(f".{config.warehouse.name}.build-") for n in hidden(old_folder))
    again = journeys("run", "-c", str(config_path), "--as-of", AS_OF, "--full-refresh")
    assert again.returncode == 0, again.stderr
    # the run published a new version and removed the old one with what the killed build left in it
    assert not old_folder.exists()
    assert hidden(config.warehouse.resolve().parent) == []


@pytest.mark.slow
def test_a_killed_export_leaves_its_scratch_and_the_next_export_removes_it(published):
    config_path, config = published
    before = checksums([config.export_dir])
    kill_paused_in("pipeline.export._write_partitioned", "export", "-c", str(config_path))
    parent = config.export_dir.resolve().parent
    assert any(n.startswith(".export-") for n in hidden(parent)), hidden(parent)
    assert checksums([config.export_dir]) == before
    again = journeys("export", "-c", str(config_path))
    assert again.returncode == 0, again.stderr
    assert not any(n.startswith(".export-") for n in hidden(parent))


@pytest.mark.slow
def test_a_killed_report_leaves_its_scratch_and_the_next_report_removes_only_dead_ones(published, tmp_path):
    config_path, config = published
    page = tmp_path / "out" / "report.html"
    kill_paused_in("pipeline.html_report._page", "report", "-c", str(config_path), "--html", str(page))
    left = hidden(page.parent)
    assert left and all(n.startswith(".report.html.") for n in left), left
    assert not page.exists()
    live = page.parent / f".report.html.{os.getpid()}.live"  # as if a report of this (live) process were writing
    live.mkdir()
    again = journeys("report", "-c", str(config_path), "--html", str(page))
    assert again.returncode == 0, again.stderr
    assert page.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert hidden(page.parent) == [live.name]


@pytest.mark.slow
def test_a_killed_ingest_leaves_the_warehouse_whole_and_the_next_ingest_removes_its_copy(published):
    """`journeys ingest` works on a copy of the warehouse (not in one transaction, whose dropped
    scratch tables DuckDB keeps until the commit: 5 GB of temp files for 10M events at 700MiB)."""
    config_path, config = published
    folder = config.warehouse.resolve().parent
    before, rows, staged = checksums([config.warehouse]), table_rows(config.warehouse), staging(config.warehouse)
    kill_paused_in("pipeline.ingest._count_outcomes", "ingest", "-c", str(config_path))
    assert any(n.startswith(f".{config.warehouse.name}.ingest-") for n in hidden(folder)), hidden(folder)
    assert checksums([config.warehouse]) == before
    again = journeys("ingest", "-c", str(config_path))
    assert again.returncode == 0, again.stderr
    assert hidden(folder) == []
    assert table_rows(config.warehouse) == rows  # core and marts: an ingest leaves them
    assert staging(config.warehouse) == staged


def staging(db: Path) -> list:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return sorted(con.execute("select event_id, customer_id, ts, event_type from staging.events").fetchall())
    finally:
        con.close()
