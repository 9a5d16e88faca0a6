"""The `journeys` command line, run for real in a subprocess (DESIGN.md, "Command line").

Runs use the tiny project in tests/data/tiny, copied into tmp_path: 11 rows, of
which 8 load, 1 is an exact duplicate and 2 are quarantined.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from conftest import JOURNEYS_BIN, ROOT

TINY = Path(__file__).resolve().parent / "data" / "tiny"
COMMANDS = ("run", "ingest", "build", "export", "validate", "sql", "sample")


def journeys(args: list[str], env: dict, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(JOURNEYS_BIN), *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


@pytest.fixture
def project(tmp_path) -> Path:
    """A fresh copy of the tiny project; outputs go to project/out."""
    dst = tmp_path / "project"
    shutil.copytree(TINY, dst)
    return dst


def run_ok(project: Path, env: dict) -> dict:
    """`journeys run --json` on the project: exit 0, the JSON summary."""
    proc = journeys(["run", "--config", str(project / "journeys.toml"), "--json"], env, cwd=project)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree_checksums(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder`, by relative path."""
    return {str(p.relative_to(folder)): sha256(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def table_names(con: duckdb.DuckDBPyConnection, schemas: tuple[str, ...]) -> list[str]:
    rows = con.execute(
        "select table_schema || '.' || table_name from information_schema.tables "
        "where table_schema in (select unnest(?)) order by 1",
        [list(schemas)],
    ).fetchall()
    return [r[0] for r in rows]


def snapshot(db: Path, schemas: tuple[str, ...] = ("staging", "core", "marts"), skip: tuple[str, ...] = ()) -> dict:
    """Every table and view of `schemas` as sorted rows (read-only)."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        out = {}
        for name in table_names(con, schemas):
            if name in skip:
                continue
            rows = con.execute(f"select * from {name}").fetchall()
            out[name] = sorted(rows, key=repr)
        return out
    finally:
        con.close()


# --------------------------------------------------------------------------- help and version


def test_group_help_lists_every_command(journeys_env):
    """`journeys --help` exits 0, names every command and shows an example."""
    proc = journeys(["--help"], journeys_env)
    assert proc.returncode == 0, proc.stderr
    for command in COMMANDS:
        assert f"  {command}" in proc.stdout
    assert "Example" in proc.stdout
    assert "journeys run" in proc.stdout


def test_short_help_flag(journeys_env):
    """-h is --help."""
    short, long = journeys(["-h"], journeys_env), journeys(["--help"], journeys_env)
    assert short.returncode == long.returncode == 0, short.stderr
    assert short.stdout == long.stdout and "Usage:" in short.stdout


def test_version(journeys_env):
    """`journeys --version` exits 0 and prints the package version."""
    from pipeline import __version__

    proc = journeys(["--version"], journeys_env)
    assert proc.returncode == 0, proc.stderr
    assert __version__ in proc.stdout
    assert "journeys" in proc.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help_has_example(command, journeys_env):
    """`journeys CMD --help` exits 0, and its help has an Example block with a `journeys CMD` line."""
    proc = journeys([command, "--help"], journeys_env)
    assert proc.returncode == 0, proc.stderr
    assert "Example" in proc.stdout, proc.stdout
    example = proc.stdout.split("Example", 1)[1]
    lines = [line.strip() for line in example.splitlines()]
    assert any(line.startswith(f"journeys {command}") for line in lines), proc.stdout


def test_python_m_pipeline_help(journeys_env):
    """`python -m pipeline --help` is the same command."""
    proc = subprocess.run([sys.executable, "-m", "pipeline", "--help"], capture_output=True, text=True,
                          env=journeys_env, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "Usage:" in proc.stdout
    for command in COMMANDS:
        assert f"  {command}" in proc.stdout


def test_unknown_command_is_usage_error(journeys_env):
    """A command that does not exist is a usage error: exit 2."""
    proc = journeys(["frobnicate"], journeys_env)
    assert proc.returncode == 2
    assert "frobnicate" in proc.stderr


# --------------------------------------------------------------------------- sql is read-only


def test_sql_select_works(project, journeys_env):
    """`journeys sql` answers a SELECT on the warehouse of a run (csv and json formats too)."""
    run_ok(project, journeys_env)
    config = str(project / "journeys.toml")
    proc = journeys(["sql", "-c", config, "select count(*) as n_steps from core.steps"], journeys_env, cwd=project)
    assert proc.returncode == 0, proc.stderr
    assert "n_steps" in proc.stdout and "8" in proc.stdout
    proc = journeys(["sql", "-c", config, "--format", "csv", "select customer_id from core.journeys order by 1"], journeys_env, cwd=project)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["customer_id", "c1", "c2", "c3"]
    proc = journeys(["sql", "--db", str(project / "out" / "journeys.duckdb"), "--json", "select status, count(*) as n from core.journeys group by 1 order by 1"],
                    journeys_env, cwd=project)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [{"status": "converted", "n": 2}, {"status": "open", "n": 1}]


@pytest.mark.parametrize(
    "statement",
    [
        "create table x(a int)",
        "create table core.x as select 1 as a",
        "insert into core.journeys select * from core.journeys",
        "delete from core.steps",
        "update core.journeys set status = 'dropped'",
        "drop table marts.funnel",
        "create view marts.v as select 1 as a",
    ],
)
def test_sql_refuses_writes(statement, project, journeys_env):
    """A statement that writes fails with exit 1 and leaves the warehouse file unchanged."""
    run_ok(project, journeys_env)
    db = project / "out" / "journeys.duckdb"
    before_sha, before = sha256(db), snapshot(db, ("staging", "core", "marts", "meta"))
    proc = journeys(["sql", "-c", str(project / "journeys.toml"), statement], journeys_env, cwd=project)
    assert proc.returncode == 1, f"exit {proc.returncode}: {proc.stdout}{proc.stderr}"
    assert "read-only" in proc.stderr.lower() or "read only" in proc.stderr.lower(), proc.stderr
    assert "Traceback" not in proc.stderr
    assert sha256(db) == before_sha
    assert snapshot(db, ("staging", "core", "marts", "meta")) == before
    assert not (db.parent / (db.name + ".wal")).exists()


def test_sql_cannot_write_files(project, journeys_env, tmp_path):
    """COPY ... TO (and other non-SELECT statements) are refused: journeys sql writes nothing anywhere."""
    run_ok(project, journeys_env)
    target = tmp_path / "leak.csv"
    proc = journeys(["sql", "-c", str(project / "journeys.toml"), f"copy (select 1 as a) to '{target}'"], journeys_env, cwd=project)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "read-only" in proc.stderr and "COPY" in proc.stderr
    assert not target.exists()


def test_sql_without_warehouse_is_config_problem(project, journeys_env):
    """`journeys sql` before any run: exit 2, naming the missing warehouse, and creating nothing."""
    proc = journeys(["sql", "-c", str(project / "journeys.toml"), "select 1"], journeys_env, cwd=project)
    assert proc.returncode == 2
    assert str(project / "out" / "journeys.duckdb") in proc.stderr
    assert "Fix:" in proc.stderr
    assert not (project / "out").exists()


# --------------------------------------------------------------------------- run --json


def test_run_json_summary(project, journeys_env):
    """`journeys run --json` prints only JSON on stdout: run_id, status, ingest counts that add up."""
    proc = journeys(["run", "--config", str(project / "journeys.toml"), "--json"], journeys_env, cwd=project)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["status"] == "succeeded"
    assert isinstance(summary["run_id"], str) and summary["run_id"]
    ingest = summary["ingest"]
    assert ingest["rows_read"] == ingest["loaded"] + ingest["duplicates"] + ingest["quarantined"]
    assert (ingest["rows_read"], ingest["loaded"], ingest["duplicates"], ingest["quarantined"]) == (11, 8, 1, 2)
    assert summary["quarantine_by_reason"] == {"unknown_channel": 1, "unparseable_timestamp": 1}
    assert summary["build"]["journeys"] == 3
    con = duckdb.connect(str(project / "out" / "journeys.duckdb"), read_only=True)
    try:
        runs = con.execute("select run_id, status from meta.runs").fetchall()
    finally:
        con.close()
    assert runs == [(summary["run_id"], "succeeded")]


def test_run_human_summary(project, journeys_env):
    """Without --json, `journeys run` prints a readable summary with the counts."""
    proc = journeys(["run", "--config", str(project / "journeys.toml")], journeys_env, cwd=project)
    assert proc.returncode == 0, proc.stderr
    assert "11 rows read, 8 loaded, 1 duplicates, 2 quarantined" in proc.stdout
    assert "Traceback" not in proc.stderr


# --------------------------------------------------------------------------- atomic publish


def break_by_dropping_column(project: Path) -> int:
    """The data file loses a mapped column: a config problem, exit 2."""
    path = project / "events.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(line.rsplit(",", 1)[0] for line in lines) + "\n")
    return 2


def break_customers_file(project: Path) -> int:
    """The customers file has a row with too many fields: the run fails while loading it, exit 1."""
    path = project / "customers.csv"
    path.write_text(path.read_text() + "c4,east,extra,fields\n")
    return 1


@pytest.mark.parametrize("breaker", [break_by_dropping_column, break_customers_file], ids=lambda f: f.__name__)
def test_failed_run_leaves_previous_outputs_whole(breaker, project, journeys_env):
    """A run that fails (exit 1 or 2) leaves the previous warehouse, export and graph files as they were;
    only meta.runs gains the failed run."""
    first = run_ok(project, journeys_env)
    out = project / "out"
    db = out / "journeys.duckdb"
    tables = snapshot(db, ("staging", "core", "marts", "meta"), skip=("meta.runs",))
    export_files = tree_checksums(out / "export")
    graph_files = tree_checksums(out / "graph")
    assert "manifest.json" in export_files and len(export_files) > 5 and graph_files

    expected_exit = breaker(project)
    proc = journeys(["run", "--config", str(project / "journeys.toml"), "--json"], journeys_env, cwd=project)
    assert proc.returncode == expected_exit, proc.stderr
    assert "Traceback" not in proc.stderr

    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["export", "graph", "journeys.duckdb", "report.html"]
    versions = [p.name for p in (out / ".versions").iterdir() if p.name != "current"]
    assert versions == [os.readlink(out / ".versions" / "current")], "leftovers of the failed run"
    assert snapshot(db, ("staging", "core", "marts", "meta"), skip=("meta.runs",)) == tables
    assert tree_checksums(out / "export") == export_files
    assert tree_checksums(out / "graph") == graph_files
    manifest = json.loads((out / "export" / "manifest.json").read_text())
    assert manifest["run_id"] == first["run_id"]
    con = duckdb.connect(str(db), read_only=True)
    try:
        statuses = con.execute("select status from meta.runs order by started_at").fetchall()
        assert con.execute("select count(*) from core.steps").fetchall()[0][0] == 8
    finally:
        con.close()
    if expected_exit == 1:  # a config problem is refused before the run starts; a failed run is recorded
        assert statuses == [("succeeded",), ("failed",)]
    else:
        assert statuses[0] == ("succeeded",)


# --------------------------------------------------------------------------- reruns


def test_rerun_gives_identical_tables_and_ids(project, journeys_env):
    """Two runs on the same input: the same staging, core and marts rows, the same journey and session ids."""
    db = project / "out" / "journeys.duckdb"
    first_run = run_ok(project, journeys_env)
    first = snapshot(db, skip=("staging.events", "staging.quarantine"))
    first_staging = snapshot(db, ("staging",))
    second_run = run_ok(project, journeys_env)
    second = snapshot(db, skip=("staging.events", "staging.quarantine"))
    second_staging = snapshot(db, ("staging",))
    assert first_run["run_id"] != second_run["run_id"]

    assert {n for n in first if n.startswith("core.")} >= {"core.steps", "core.sessions", "core.journeys"}
    assert {n for n in first if n.startswith("marts.")} >= {"marts.transitions", "marts.stage_stats", "marts.funnel"}
    assert first.keys() == second.keys()
    for name in first:
        assert first[name] == second[name], f"{name} differs between reruns"

    def without_batch(rows: dict, table: str) -> list:
        """staging rows differ only by batch_id (the run's id), its last column."""
        return [r[:-1] for r in rows[table]]

    for table in ("staging.events", "staging.quarantine"):
        assert without_batch(first_staging, table) == without_batch(second_staging, table)

    con = duckdb.connect(str(db), read_only=True)
    try:
        ids = con.execute("select count(distinct journey_id), count(distinct session_id) from core.steps").fetchall()[0]
    finally:
        con.close()
    assert ids == (3, 4)
