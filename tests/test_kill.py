"""A killed run (SIGKILL, no chance to clean up) leaves the previous outputs whole, and the next
run recovers by itself (stale lock cleared, leftovers removed) and equals a clean run."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

import pipeline.config
from conftest import JOURNEYS_BIN, SAMPLE, copy_config

KILL_AFTER_SECONDS = (0.05, 0.3, 0.6, 0.9, 1.2, 1.5, 1.8, 2.1)  # spread over ingest, build, export and report


def checksums(paths: list[Path]) -> dict[str, str]:
    out = {}
    for root in paths:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for f in files:
            out[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def table_rows(db: Path) -> dict[str, list]:
    """Every core and marts table as sorted rows (ids included)."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        names = con.execute("select schema_name || '.' || table_name from duckdb_tables() "
                            "where schema_name in ('core', 'marts') order by 1").fetchall()
        return {n: sorted(map(repr, con.execute(f"select * from {n}").fetchall())) for (n,) in names}
    finally:
        con.close()


def run(config: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(JOURNEYS_BIN), "run", "-c", str(config), "--as-of", "2026-11-01T00:00:00Z"],
                          capture_output=True, text=True, env={"CI": "true"})


@pytest.mark.slow
def test_sigkill_at_many_points_keeps_previous_outputs_and_the_next_run_recovers(tmp_path):
    config_path = copy_config(SAMPLE / "journeys.toml", tmp_path)
    config = pipeline.config.load_config(config_path)
    outputs = [config.warehouse, config.export_dir, config.graph_dir, config.report]
    assert run(config_path).returncode == 0
    before = checksums(outputs)
    before_rows = table_rows(config.warehouse)
    current = config.warehouse.parent / ".versions" / "current"
    killed_in_flight = 0
    for delay in KILL_AFTER_SECONDS:
        published = os.readlink(current)
        proc = subprocess.Popen([str(JOURNEYS_BIN), "run", "-c", str(config_path), "--as-of", "2026-11-01T00:00:00Z"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={"CI": "true"}, start_new_session=True)
        time.sleep(delay)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            killed_in_flight += 1
        proc.wait()
        if os.readlink(current) == published:
            assert checksums(outputs) == before, f"outputs changed by a run killed after {delay}s"
            continue
        # the run got as far as the flip (killed later, or done): a whole new version, all of it from that run
        new_run = os.readlink(current)
        con = duckdb.connect(str(config.warehouse), read_only=True)
        assert con.execute("select status from meta.runs where run_id = ?", [new_run]).fetchall() == [("succeeded",)]
        con.close()
        assert json.loads((config.export_dir / "manifest.json").read_text())["run_id"] == new_run
        assert table_rows(config.warehouse) == before_rows
        before = checksums(outputs)
    assert killed_in_flight >= 5, "too few kills landed inside a run to test anything"
    # the next run clears the stale lock and the leftovers, and equals the clean run
    again = run(config_path)
    assert again.returncode == 0, again.stderr
    assert table_rows(config.warehouse) == before_rows
    build = config.warehouse.parent
    versions = [p.name for p in (build / ".versions").iterdir() if p.name != "current"]
    assert versions == [os.readlink(build / ".versions" / "current")]  # only the published version is left
    assert not (build / ".journeys.lock").exists()


PAUSED_PUBLISH = """
import sys, time
import pipeline.run as run
real = run._symlink
def paused(target, link):
    if link.name == "current":
        print("publishing", flush=True)
        time.sleep(30)  # killed here, just before the flip
    real(target, link)
run._symlink = paused
from pipeline.cli import main
sys.argv = ["journeys", "run", "-c", sys.argv[1], "--as-of", "2026-11-01T00:00:00Z"]
main()
"""


@pytest.mark.slow
def test_sigkill_during_publish_keeps_the_previous_version(tmp_path):
    """Killed at the last moment of publishing (the new version complete beside the old one, the
    `current` link not yet flipped): every output still shows the previous version byte for byte
    (the new one would differ: its meta.runs has one more run); the next run publishes normally
    and its tables equal the previous ones."""
    config_path = copy_config(SAMPLE / "journeys.toml", tmp_path)
    config = pipeline.config.load_config(config_path)
    outputs = [config.warehouse, config.export_dir, config.graph_dir, config.report]
    assert run(config_path).returncode == 0
    before, before_rows = checksums(outputs), table_rows(config.warehouse)
    proc = subprocess.Popen([sys.executable, "-c", PAUSED_PUBLISH, str(config_path)], stdout=subprocess.PIPE, text=True,
                            env={"CI": "true"}, start_new_session=True)
    assert proc.stdout.readline().strip() == "publishing"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert checksums(outputs) == before
    again = run(config_path)
    assert again.returncode == 0, again.stderr
    assert checksums([config.warehouse]) != {k: v for k, v in before.items() if k == str(config.warehouse)}  # a new version
    assert table_rows(config.warehouse) == before_rows
