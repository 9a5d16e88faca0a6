"""A whole run: `pipeline.run.run_pipeline` and its atomic publish (DESIGN.md, "Warehouse
(DuckDB) and exports": a run publishes atomically; a failed or killed run leaves the
previous outputs whole).

Runs use the tiny project of tests/data/tiny, copied into tmp_path; its outputs go to
project/out (warehouse out/journeys.duckdb, out/export, out/graph).
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

import pipeline.config
import pipeline.marts
import pipeline.run
import pipeline.warehouse
from pipeline.cli import cli

TINY = Path(__file__).resolve().parent / "data" / "tiny"


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def project(tmp_path) -> Path:
    """A fresh copy of the tiny project."""
    dst = tmp_path / "project"
    shutil.copytree(TINY, dst)
    return dst


def load(project: Path, name: str = "journeys.toml") -> pipeline.config.Config:
    return pipeline.config.load_config(project / name)


def out(project: Path) -> Path:
    return project / "out"


def tree_checksums(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder`, by relative path."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def tables(db: Path, schemas=("staging", "core", "marts")) -> dict[str, list]:
    """Every table of `schemas` in the warehouse file, as sorted rows (read-only)."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        names = [
            r[0]
            for r in con.execute(
                "select table_schema || '.' || table_name from information_schema.tables "
                "where table_schema in (select unnest(?)) order by 1",
                [list(schemas)],
            ).fetchall()
        ]
        return {n: sorted(con.execute(f"select * from {n}").fetchall(), key=repr) for n in names}
    finally:
        con.close()


def runs(db: Path) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("select run_id, status, error from meta.runs order by started_at").fetchall()
    finally:
        con.close()


def outputs(project: Path) -> dict:
    """What a reader sees of the published outputs: warehouse tables, export and graph files."""
    return {
        "tables": tables(out(project) / "journeys.duckdb"),
        "export": tree_checksums(out(project) / "export"),
        "graph": tree_checksums(out(project) / "graph"),
    }


def leftovers(project: Path) -> list[str]:
    """Version folders other than the published one (and temp folders of older releases)."""
    versions = out(project) / ".versions"
    current = os.readlink(versions / "current") if (versions / "current").is_symlink() else None
    found = [p.name for p in versions.glob("*") if p.name not in ("current", current)] if versions.exists() else []
    return sorted(found + [p.name for p in out(project).glob(".run-*")])


# --------------------------------------------------------------------------- reruns


def test_rerun_on_the_same_input_gives_identical_core_and_marts(project):
    """Two runs on the same input give the same core and marts tables (sorted rows),
    including the same journey, session and event ids; only the run ids differ."""
    config = load(project)
    first = pipeline.run.run_pipeline(config)
    before = tables(out(project) / "journeys.duckdb", ("core", "marts"))
    second = pipeline.run.run_pipeline(config)
    after = tables(out(project) / "journeys.duckdb", ("core", "marts"))
    assert first.run_id != second.run_id
    assert set(before) == set(after) and {"core.steps", "core.journeys", "marts.transitions"} <= set(after)
    for name in before:
        assert after[name] == before[name], name
    con = duckdb.connect(str(out(project) / "journeys.duckdb"), read_only=True)
    try:
        journeys = con.execute("select count(distinct journey_id), count(*) from core.journeys").fetchall()
        events = con.execute("select count(*) from core.steps").fetchall()
    finally:
        con.close()
    # tiny: 8 loaded events of c1, c2, c3; each customer's history is one journey
    assert journeys == [(3, 3)] and events == [(8,)]
    assert [r[1] for r in runs(out(project) / "journeys.duckdb")] == ["succeeded", "succeeded"]


# --------------------------------------------------------------------------- failed publish


class _OsWithFailingReplace:
    """The os module as seen by pipeline.run, except that os.replace fails."""

    def __getattr__(self, name):
        return getattr(os, name)

    @staticmethod
    def replace(src, dst):
        raise OSError(28, "No space left on device (test)")


def test_failed_publish_leaves_the_previous_outputs_whole(project, monkeypatch):
    """When the final swap of the warehouse fails, the previous warehouse tables, export files
    and graph files are unchanged, no .run-* folder is left, and the published warehouse's
    meta.runs records the failed run with its error."""
    config = load(project)
    good = pipeline.run.run_pipeline(config)
    before = outputs(project)
    assert before["export"] and before["graph"]
    monkeypatch.setattr(pipeline.run, "os", _OsWithFailingReplace())
    with pytest.raises(OSError, match="No space left"):
        pipeline.run.run_pipeline(config)
    monkeypatch.undo()
    assert outputs(project) == before
    assert leftovers(project) == []
    recorded = runs(out(project) / "journeys.duckdb")
    assert [(r[0] == good.run_id, r[1]) for r in recorded] == [(True, "succeeded"), (False, "failed")]
    assert "No space left" in recorded[1][2]


def test_outputs_are_links_into_one_published_version(project):
    """Every output path is a link through .versions/current, so one rename publishes them all;
    after a run only the published version folder is kept, and all outputs point into it."""
    config = load(project)
    first = pipeline.run.run_pipeline(config)
    second = pipeline.run.run_pipeline(config)
    versions = out(project) / ".versions"
    assert os.readlink(versions / "current") == second.run_id != first.run_id
    assert sorted(p.name for p in versions.iterdir()) == sorted(["current", second.run_id])
    for path in (config.warehouse, config.export_dir, config.graph_dir, config.report):
        assert path.is_symlink() and path.resolve().parent == (versions / second.run_id).resolve()
    assert leftovers(project) == []


def test_graph_dir_that_is_an_existing_file_fails_and_keeps_the_file(project):
    """A graph_dir naming an existing regular file is not replaced: the run fails, the file
    and the previous warehouse and export stay as they were."""
    pipeline.run.run_pipeline(load(project))
    before = outputs(project)
    precious = project / "notes.txt"
    precious.write_text("not a folder\n")
    text = (project / "journeys.toml").read_text().replace('graph_dir = "out/graph"', 'graph_dir = "notes.txt"')
    (project / "other.toml").write_text(text)
    with pytest.raises(Exception):
        pipeline.run.run_pipeline(load(project, "other.toml"))
    assert precious.is_file() and precious.read_text() == "not a folder\n"
    assert outputs(project) == before
    assert leftovers(project) == []


def test_missing_parent_folders_of_export_and_graph_dirs_are_created(project):
    """export_dir and graph_dir whose parent folders do not exist yet are created, and the
    run succeeds with its files in them."""
    text = (project / "journeys.toml").read_text()
    text = text.replace('export_dir = "out/export"', 'export_dir = "deep/a/b/export"')
    text = text.replace('graph_dir = "out/graph"', 'graph_dir = "elsewhere/x/graph"')
    (project / "journeys.toml").write_text(text)
    assert not (project / "deep").exists() and not (project / "elsewhere").exists()
    result = pipeline.run.run_pipeline(load(project))
    assert result.status == "succeeded"
    assert (project / "deep/a/b/export/manifest.json").is_file()
    assert (project / "deep/a/b/export/core.steps.parquet").exists()  # a file, or a folder of date partitions
    assert (project / "elsewhere/x/graph/all=all.graphml").is_file()
    assert (project / "out/journeys.duckdb").is_file()
    assert leftovers(project) == []


# --------------------------------------------------------------------------- flow laws


def _break_laws(con):
    raise pipeline.marts.LawError("the marts break a flow law:\n  node_balance: segment all, node purchase: in 3 != out 2")


def test_broken_flow_law_fails_the_run_and_publishes_nothing(project, monkeypatch):
    """A run whose marts break a flow law raises LawError and publishes nothing: the
    previous outputs are unchanged, no .run-* is left, and meta.runs records the failure."""
    config = load(project)
    pipeline.run.run_pipeline(config)
    before = outputs(project)
    monkeypatch.setattr(pipeline.marts, "check_laws", _break_laws)
    with pytest.raises(pipeline.marts.LawError, match="node_balance"):
        pipeline.run.run_pipeline(config)
    assert outputs(project) == before
    assert leftovers(project) == []
    recorded = runs(out(project) / "journeys.duckdb")
    assert [r[1] for r in recorded] == ["succeeded", "failed"]
    assert "LawError" in recorded[1][2] and "node_balance" in recorded[1][2]


def test_journeys_run_exits_1_with_the_law_message_when_a_law_breaks(project, monkeypatch):
    """`journeys run` on marts that break a flow law exits 1, prints the law's message, and
    leaves the previous outputs unchanged."""
    output = failed_cli_run(project, monkeypatch, pipeline.marts, "check_laws", _break_laws)
    assert "LawError (the run stopped in its build step): the marts break a flow law" in output
    assert "node_balance: segment all, node purchase" in output


def failed_cli_run(project: Path, monkeypatch, module, name: str, replacement) -> str:
    """`journeys run` once as is, then with module.name replaced: the second exits 1 and leaves the
    first's outputs whole, with no version folder left; returns what it printed."""
    config_path = str(project / "journeys.toml")
    first = CliRunner().invoke(cli, ["run", "--config", config_path])
    assert first.exit_code == 0, first.output
    before = outputs(project)
    monkeypatch.setattr(module, name, replacement)
    result = CliRunner().invoke(cli, ["run", "--config", config_path])
    assert result.exit_code == 1
    assert outputs(project) == before
    assert leftovers(project) == []
    return result.output


def test_export_and_report_start_on_a_connection_with_nothing_held_over(project, monkeypatch):
    """The export and the report each get a connection of their own, as `journeys export` and
    `journeys report` do, so DuckDB's caches from the build are not carried into them (a 100M-event
    run ran out of DuckDB memory in its last steps); and the ingest's temp list of customers to
    rebuild is gone once the build no longer reads it, on a full build and on an incremental one."""
    seen = {}

    def looking(step: str, function):
        def wrapped(con, *args, **kwargs):
            seen.setdefault(step, []).append((con, "before"))  # the object, kept alive: ids are not reused
            result = function(con, *args, **kwargs)
            tables = con.execute("select table_name from duckdb_tables() where temporary").fetchall()
            seen[step].append((con, tables))
            return result
        return wrapped

    for name in ("ingest_step", "build_step", "export_step", "write_report"):
        monkeypatch.setattr(pipeline.run, name, looking(name, getattr(pipeline.run, name)))
    pipeline.run.run_pipeline(load(project))
    ingest, build, export, report = (seen[name] for name in ("ingest_step", "build_step", "export_step", "write_report"))
    assert ("_affected_customers",) in ingest[1][1]  # what the build's connection holds when it starts
    assert ingest[0][0] is build[0][0]
    assert len({id(build[0][0]), id(export[0][0]), id(report[0][0])}) == 3
    assert ("_affected_customers",) not in build[1][1]
    assert export[1][1] == []
    (project / "events_2.csv").write_text("event_id,customer,ts,event,medium,page\n"
                                          "e900,c1,2026-01-03T10:00:00Z,PageView,web,/home\n", encoding="utf-8")
    seen.clear()
    result = pipeline.run.run_pipeline(load(project))
    assert result.counts["mode"] == "incremental"
    assert ("_affected_customers",) not in seen["build_step"][1][1]


def test_a_run_out_of_memory_names_its_step_and_the_fix(project, monkeypatch):
    """A run that DuckDB stops for memory says in which step, and how to give it more; the
    previous outputs stay whole."""
    def out_of_memory(*args, **kwargs):
        raise duckdb.OutOfMemoryException("Out of Memory Error: could not allocate block of size 256.0 KiB "
                                          "(1.9 GiB/2.0 GiB used)")

    output = failed_cli_run(project, monkeypatch, pipeline.run, "export_step", out_of_memory)
    assert "OutOfMemoryException (the run stopped in its export step): Out of Memory Error" in output
    assert "Fix: give the command a larger budget with --memory-limit" in output


# --------------------------------------------------------------------------- killed runs


def test_leftover_run_folders_of_a_killed_run_are_removed_by_the_next_run(project):
    """Temporary `.run-*` folders left beside the warehouse by a killed run (with a partial
    warehouse, export and graph inside) are removed by the next run, which succeeds."""
    config = load(project)
    for name in (".run-20260101T000000Z-dead01", ".run-20260102T000000Z-dead02"):
        dead = out(project) / name
        (dead / "export").mkdir(parents=True)
        (dead / "graph").mkdir()
        (dead / "journeys.duckdb").write_bytes(b"half written")
        (dead / "export" / "core.steps.parquet").write_bytes(b"partial")
    assert len(leftovers(project)) == 2
    result = pipeline.run.run_pipeline(config)
    assert result.status == "succeeded"
    assert leftovers(project) == []
    assert (out(project) / "export" / "manifest.json").is_file()
    assert tables(out(project) / "journeys.duckdb", ("core",))["core.journeys"]


def test_an_output_path_taken_by_a_file_stops_the_run_before_any_work(project):
    """graph_dir (or export_dir) that exists as a file is a config problem: ConfigError naming the key,
    raised before anything is written, and the file is left as it was."""
    config = load(project)
    config.graph_dir.parent.mkdir(parents=True, exist_ok=True)
    config.graph_dir.write_text("not a folder")
    with pytest.raises(pipeline.config.ConfigError, match="output.graph_dir"):
        pipeline.run.run_pipeline(config)
    assert config.graph_dir.read_text() == "not a folder"
    assert not config.warehouse.exists()


# --------------------------------------------------------------------------- a full disk


@pytest.mark.parametrize("command", ["build", "run"])
def test_too_little_disk_for_the_warehouse_copy_stops_before_copying(project, monkeypatch, command):
    """`journeys build` and an incremental `journeys run` work on a copy of the warehouse file:
    when its disk has less room than the file, the command stops before copying, says how much
    is free and needed and what to do, and the published outputs stay whole with nothing left
    beside them. (The free space is the one thing faked: this machine's disk is not full.)"""
    config_path = str(project / "journeys.toml")
    first = CliRunner().invoke(cli, ["run", "--config", config_path])
    assert first.exit_code == 0, first.output
    before = outputs(project)
    size = (out(project) / "journeys.duckdb").resolve().stat().st_size
    copies = []
    monkeypatch.setattr(pipeline.run.shutil, "copy2", lambda *a, **k: copies.append(a))
    monkeypatch.setattr(pipeline.warehouse, "free_disk", lambda folder: size - 1)
    result = CliRunner().invoke(cli, [command, "--config", config_path])
    assert result.exit_code == 1
    assert copies == []
    assert f"{(size - 1) / 1e9:.2f} GB free" in result.output and f"({size / 1e9:.2f} GB)" in result.output
    assert "Fix: free disk space beside the warehouse" in result.output
    assert outputs(project) == before
    assert leftovers(project) == []
    assert [p.name for p in out(project).rglob("*") if ".build-" in p.name] == []
    con = duckdb.connect(str(out(project) / "journeys.duckdb"), read_only=True)
    try:
        last = con.execute("select command, status, error from meta.runs order by started_at desc limit 1").fetchall()[0]
    finally:
        con.close()
    assert last[:2] == (command, "failed") and "NoRoomOnDisk" in last[2]


def test_room_enough_for_the_copy_lets_the_build_run(project, monkeypatch):
    """The check asks for the file's size, no more: with exactly that much free the build runs."""
    config_path = str(project / "journeys.toml")
    assert CliRunner().invoke(cli, ["run", "--config", config_path]).exit_code == 0
    size = (out(project) / "journeys.duckdb").resolve().stat().st_size
    monkeypatch.setattr(pipeline.warehouse, "free_disk", lambda folder: size)
    result = CliRunner().invoke(cli, ["build", "--config", config_path])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("error", [
    OSError(errno.ENOSPC, "No space left on device"),
    duckdb.IOException('IO Error: Could not write file "out/journeys.duckdb.tmp/x.block": No space left on device'),
])
def test_a_disk_that_fills_during_a_command_is_named_with_the_fix(error):
    """The disk can still fill after the check (DuckDB's spill, the bucket files): the message
    the command prints then says what to do, once."""
    from pipeline.cli import _fail

    message = _fail(error).message
    assert message.count("Fix: free disk space beside the warehouse") == 1
    assert _fail(RuntimeError("something else")).message.count("Fix: free disk") == 0
