"""Orchestrate a run: ingest -> build -> marts -> graph -> export, published atomically.

`run_pipeline` builds a whole new warehouse, export folder and graph folder in
a temporary folder beside the outputs, and only when every step (including the
flow-law check) has succeeded swaps them into place. A failed or killed run
leaves the previous outputs whole; its leftovers are removed by the next run.

The single-step functions (`ingest_step`, `build_step`, `export_step`) work on
an open warehouse; `run_step` runs one of them for a step sub-command, all or
nothing: ingest and build on a copy of the warehouse file swapped in when they
succeed, export in one transaction into a new folder.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import duckdb

from pipeline import __version__, export, graph, identity, ingest, marts, privacy, warehouse
from pipeline.html_report import write_report
from pipeline.lock import run_lock
from pipeline.report import summarize
from pipeline.config import Config, ConfigError
from pipeline.buckets import bucket_count, build_core
from pipeline.journeys import BuildError, BuildSettings

log = logging.getLogger(__name__)
Progress = Callable[[str], None]


@dataclasses.dataclass
class RunResult:
    run_id: str
    status: str
    counts: dict
    summary: dict


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


def _say(progress: Progress | None, message: str) -> None:
    if progress:
        progress(message)


def ingest_step(con: duckdb.DuckDBPyConnection, config: Config, run_id: str, progress: Progress | None = None,
                incremental: bool = False) -> dict:
    """Sources -> staging (events, duplicates, quarantine) and staging.customers; counts per file
    to meta.ingest_files and the files now in staging to meta.source_files.

    Incremental: only files that are new or whose checksum changed are read; the rows of
    changed or removed files are withdrawn first."""
    say = lambda s, p: _say(progress, f"read {s}: {Path(p).name}")  # noqa: E731
    current = {path: (source.name, os.path.getsize(path), ingest.file_sha256(path)) for source in config.sources for path in source.files}
    con.execute("create or replace temp table _affected_customers (customer_id varchar)")
    if incremental:
        known = dict(con.execute("select source_file, sha256 from meta.source_files").fetchall())
        gone = sorted(f for f, sha in known.items() if current.get(f, (None, None, None))[2] != sha)
        ingest.withdraw_files(con, gone, run_id)
        con.execute("delete from meta.source_files where source_file in (select unnest(?))", [gone or [""]])
        to_read = {f for f, (_, _, sha) in current.items() if known.get(f) != sha}
        files = ingest.ingest(con, config, batch_id=run_id, progress=say, files=to_read)
    else:
        con.execute("delete from meta.source_files")
        gone = []
        files = ingest.ingest(con, config, batch_id=run_id, progress=say)
    ingest.load_customers(con, config)
    pseudonymized = privacy.pseudonymize_staging(con, config)  # {} unless [privacy] pseudonymize = true
    # after pseudonymizing: pseudonyms keep every equality of values, so the graph is the same, and
    # core.identities, staging.identity_conflicts and the anonymous customer ids never hold a raw value
    _say(progress, "resolve identities (duckdb)")
    identity_map_rows = identity.load_identity_maps(con, config)
    resolved = identity.resolve(con, config)
    if files:
        con.executemany(
            "insert into meta.ingest_files values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [[run_id, f.source, f.source_file, f.bytes, f.sha256, f.rows_read, f.loaded, f.duplicates, f.quarantined] for f in files],
        )
        con.executemany("insert into meta.source_files values (?, ?, ?, ?, ?)",
                        [[f.source, f.source_file, f.bytes, f.sha256, run_id] for f in files])
    return {
        "mode": "incremental" if incremental else "full",
        "files": len(files),
        "files_withdrawn": len(gone),
        "rows_read": sum(f.rows_read for f in files),
        "loaded": sum(f.loaded for f in files),
        "duplicates": sum(f.duplicates for f in files),
        "quarantined": sum(f.quarantined for f in files),
        **({"pseudonymized": pseudonymized} if pseudonymized else {}),
        "identity": {**resolved, "identity_map_rows": identity_map_rows},
    }


def dry_ingest(config: Config) -> dict:
    """Read every source file into an in-memory warehouse, as a run would, and count what
    would load, be a duplicate or be quarantined, per source. Writes nothing."""
    con = warehouse.connect(":memory:", memory_limit=config.memory_limit)
    try:
        files = ingest.ingest(con, config, batch_id="validate")
        reasons = con.execute("select source, reason, count(*) from staging.quarantine group by all order by all").fetchall()
    finally:
        con.close()
    sources: dict[str, dict] = {}
    for f in files:
        c = sources.setdefault(f.source, {"files": 0, "rows_read": 0, "loaded": 0, "duplicates": 0, "quarantined": 0, "quarantine_by_reason": {}})
        c["files"] += 1
        for key in ("rows_read", "loaded", "duplicates", "quarantined"):
            c[key] += getattr(f, key)
    for source, reason, n in reasons:
        sources[source]["quarantine_by_reason"][reason] = n
    return {"config": str(config.path), "files": len(files), "sources": sources}


def resolve_as_of(con: duckdb.DuckDBPyConnection, config: Config, as_of: datetime | None) -> datetime:
    """--as-of, else the config's journeys.as_of, else the latest event time (reproducible)."""
    chosen = as_of or config.as_of
    if chosen is None:
        chosen = con.execute("select max(ts) from staging.events").fetchall()[0][0] or datetime.now(timezone.utc)
    return chosen.astimezone(timezone.utc)


def build_step(con: duckdb.DuckDBPyConnection, config: Config, graph_dir: Path, as_of: datetime | None = None,
               progress: Progress | None = None, incremental: bool = False, buckets: int | None = None,
               engine: str | None = None) -> dict:
    """staging -> core (Polars, one bucket of customers at a time, or the same function on
    Spark, one partition of customers at a time) -> marts (SQL) -> graph checks, likely
    paths, GraphML.

    Customers are split into `buckets` by a hash of their id (default: as many as keep one
    bucket's build within the memory budget, pipeline.buckets); each bucket holds complete
    histories, so the result does not depend on the number of buckets.

    Incremental: only the customers in _affected_customers (those an ingest touched) are
    sessionized again, from their complete histories; every journey's status is then
    judged again at the as-of time, and everything after core is rebuilt.
    `engine` (default: the config's [engine] name) is where sessionize + label runs."""
    if not incremental:  # a full build redoes every customer: the ingest's list of them only holds memory
        con.execute("drop table if exists _affected_customers")
    as_of = resolve_as_of(con, config, as_of)
    settings = BuildSettings.from_config(config)
    engine = engine or config.engine
    known_only = config.anonymous == "exclude"  # anonymous customers' events are counted and left out
    # the marts are built over every event of the core, also in an incremental build: refuse a
    # budget they cannot hold to now, not after the buckets (25 minutes into 100M events)
    events = con.execute(f"select count(*) from ({marts.events_sql(known_only=known_only)})").fetchall()[0][0]
    problem = warehouse.budget_too_small(events, warehouse.parse_size(config.memory_limit or warehouse.default_memory_limit()))
    if problem:
        raise BuildError(problem)
    marts.write_settings(con, marts.MartSettings.from_config(config), as_of)
    if engine == "spark":  # build_journeys per customer partition on Spark, each partition a bucket
        from pipeline import spark_engine

        _say(progress, "sessionize and label (spark)")
        n, rebuilt = spark_engine.build_core(con, config, as_of, only_affected=incremental, partitions=buckets)
    else:
        n = buckets or bucket_count(con, incremental, known_only=known_only, properties=settings.reads_properties)
        rebuilt = build_core(con, settings, as_of, n, only_affected=incremental, progress=progress, known_only=known_only)
    _say(progress, "core tables")
    sql, params = ingest.customers_segment_sql(config)
    marts.finish_core(con, con.sql(sql, params=params).pl(), only_customers=incremental)
    con.execute("drop table if exists _affected_customers")  # read by the core build only: free it for the marts
    marts.build_marts(con, progress)
    laws = marts.check_laws(con)
    _say(progress, "graph (networkx)")
    info = graph.analyse(con, graph_dir, config.top_edges, config.min_transitions)
    statuses = dict(con.execute("select status, count(*) from core.journeys group by status").fetchall())
    steps, sessions, journeys = con.execute(
        "select (select count(*) from core.steps), (select count(*) from core.sessions), (select count(*) from core.journeys)"
    ).fetchall()[0]
    return {
        "as_of": as_of.isoformat(),
        "customers_rebuilt": rebuilt,
        "buckets": n,
        "steps": steps,
        "sessions": sessions,
        "journeys": journeys,
        "journeys_by_status": {s: statuses.get(s, 0) for s in ("converted", "dropped", "open")},
        "laws_checked": laws,
        **({"anonymous_events_left_out": marts.anonymous_events(con)} if known_only else {}),
        "unlabelled_steps": int(con.execute("select count(*) from core.steps where stage = 'unlabelled'").fetchall()[0][0]),
        **info,
    }


def export_step(con: duckdb.DuckDBPyConnection, export_dir: Path, run_id: str) -> dict:
    manifest = export.export_tables(con, export_dir, run_id)
    return {"tables": len(manifest["tables"])}


def _record_start(con: duckdb.DuckDBPyConnection, run_id: str, command: str, config: Config, started: datetime,
                  mode: str | None = None) -> None:
    con.execute(
        "insert into meta.runs (run_id, command, started_at, status, mode, config_path, config_hash, package_version) "
        "values (?, ?, ?, 'running', ?, ?, ?, ?)",
        [run_id, command, started, mode, str(config.path), config.hash, __version__],
    )


def _record_end(con: duckdb.DuckDBPyConnection, run_id: str, status: str, counts: dict, error: str | None = None) -> None:
    con.execute(
        "update meta.runs set finished_at = ?, status = ?, counts = ?, error = ?, "
        "as_of = try_cast(json_extract_string(?, '$.build.as_of') as timestamptz) where run_id = ?",
        [datetime.now(timezone.utc), status, json.dumps(counts), error, json.dumps(counts), run_id],
    )


def _carry_history(con: duckdb.DuckDBPyConnection, previous: Path) -> None:
    """Copy meta.runs and meta.ingest_files of the published warehouse into the new one."""
    if not previous.exists():
        return
    con.execute("attach ? as previous (read_only)", [str(previous)])
    try:
        for table in ("runs", "ingest_files"):
            exists = con.execute(
                "select count(*) from duckdb_tables() where database_name = 'previous' and schema_name = 'meta' and table_name = ?",
                [table],
            ).fetchall()[0][0]
            if exists:
                con.execute(f"insert into meta.{table} by name select * from previous.meta.{table}")
    finally:
        con.execute("detach previous")


CURRENT = "current"  # symlink in Config.versions_dir to the published version's folder


def _outputs(config: Config) -> tuple[tuple[Path, str], ...]:
    """Each output path and its name inside a version folder."""
    return ((config.warehouse, config.warehouse.name), (config.export_dir, "export"),
            (config.graph_dir, "graph"), (config.report, "report.html"))


def _symlink(target: Path | str, link: Path) -> None:
    """Create or replace `link` -> `target` in one atomic rename."""
    staged = link.with_name(f".{link.name}.{os.getpid()}.link")
    staged.unlink(missing_ok=True)
    os.symlink(target, staged)
    try:
        os.replace(staged, link)
    except BaseException:
        staged.unlink(missing_ok=True)
        raise


def _clear_leftovers(config: Config) -> None:
    """Remove what killed or superseded runs and steps left: version folders other than the
    published one, and beside the (published) warehouse and export the scratch of a killed
    `journeys build` (its copy of the warehouse, as large as the warehouse, and its bucket
    files) or `journeys export`. Called under the run lock, so no live run or step owns them."""
    versions = config.versions_dir
    current = (versions / CURRENT).resolve() if (versions / CURRENT).is_symlink() else None
    for leftover in versions.glob("*"):
        if leftover.name != CURRENT and leftover.resolve() != current:
            shutil.rmtree(leftover, ignore_errors=True)
    for legacy in config.warehouse.parent.glob(".run-*"):  # temp folders of older releases
        shutil.rmtree(legacy, ignore_errors=True)
    db = config.warehouse.resolve()  # inside the published version when there is one
    for step in ("build", "ingest"):
        for copy in db.parent.glob(f".{db.name}.{step}-*"):  # _step_on_copy's copy, its .wal and .tmp (spill) folder
            if copy.is_dir():
                shutil.rmtree(copy, ignore_errors=True)
            else:
                copy.unlink(missing_ok=True)
    export = config.export_dir.resolve()
    for scratch in [*db.parent.glob(".buckets-*"), *export.parent.glob(".export-*")]:
        shutil.rmtree(scratch, ignore_errors=True)


def _publish(version: Path, config: Config) -> None:
    """Make `version` the published outputs with one atomic rename of the `current` symlink.

    Every output path (warehouse, export, graph, report) is a symlink through `current`,
    so readers see the previous version or the new one, whole, never a mix; a run killed
    at any point leaves the previous version published. The output links are made once;
    outputs of an older release found there (real files) are moved into the versions folder."""
    versions = version.parent
    _symlink(version.name, versions / CURRENT)
    for final, name in _outputs(config):
        want = versions / CURRENT / name
        if final.is_symlink() and os.readlink(final) == str(want):
            continue
        if final.exists() and not final.is_symlink():
            final.rename(versions / f"legacy-{version.name}-{name}")
        _symlink(want, final)


def check_outputs(config: Config) -> None:
    """Stop before any work when an output path is taken by something else."""
    for key, path, kind in (("output.warehouse", config.warehouse, "file"), ("output.export_dir", config.export_dir, "folder"),
                            ("output.graph_dir", config.graph_dir, "folder"), ("output.report", config.report, "file")):
        wrong = path.exists() and (path.is_dir() if kind == "file" else not path.is_dir())
        if wrong:
            raise ConfigError(f"{config.path}: key '{key}': {path} exists and is not a {kind}. Fix: point {key} elsewhere or move that path away")


def choose_mode(config: Config, full_refresh: bool = False) -> tuple[str, str]:
    """('incremental', why) when the published warehouse was made by a successful `journeys run`
    of this same config and package version; else ('full', why)."""
    if full_refresh:
        return "full", "--full-refresh"
    if not config.warehouse.exists():
        return "full", "no warehouse yet"
    try:
        con = duckdb.connect(str(config.warehouse), read_only=True)
    except duckdb.Error as e:
        return "full", f"the warehouse could not be read ({e})"
    try:
        last = con.execute(
            "select command, config_hash, package_version from meta.runs where status = 'succeeded' "
            "order by started_at desc limit 1"
        ).fetchall()
    except duckdb.Error:
        last = []
    finally:
        con.close()
    if not last:
        return "full", "no successful run in the warehouse"
    command, config_hash, version = last[0]
    if command != "run":
        return "full", f"the last successful step was `journeys {command}`, not a whole run"
    if config_hash != config.hash:
        return "full", "the config changed since the last run"
    if version != __version__:
        return "full", f"journeys changed from {version} to {__version__}"
    return "incremental", "new or changed input files only"


def run_pipeline(config: Config, as_of: datetime | None = None, progress: Progress | None = None,
                 full_refresh: bool = False, buckets: int | None = None, engine: str | None = None) -> RunResult:
    """Everything for a config, published atomically. Raises on failure (outputs untouched).

    Incremental by default (see choose_mode): only new or changed input files are read and
    only the customers they touch are sessionized again; the result equals a full rebuild."""
    ingest.validate_inputs(config)  # before any output folder is made
    check_outputs(config)
    run_id = new_run_id()
    with run_lock(config.warehouse.parent, run_id, "run"):
        mode, why = choose_mode(config, full_refresh)
        return _run_locked(config, run_id, as_of, progress, mode, why, buckets, engine)


def _run_locked(config: Config, run_id: str, as_of: datetime | None, progress: Progress | None,
                mode: str = "full", why: str = "", buckets: int | None = None, engine: str | None = None) -> RunResult:
    started = datetime.now(timezone.utc)
    final_db = config.warehouse
    build_dir = final_db.parent
    for folder in (build_dir, config.export_dir.parent, config.graph_dir.parent, config.report.parent):
        folder.mkdir(parents=True, exist_ok=True)
    _clear_leftovers(config)
    tmp = config.versions_dir / run_id  # the new version is built here and published in place
    tmp.mkdir(parents=True)
    counts: dict = {"mode": mode, "mode_reason": why}
    incremental = mode == "incremental"
    step = "ingest"
    try:
        if incremental:
            warehouse.copy_with_room(final_db, tmp / final_db.name)  # work on a copy: the published file stays whole
        con = warehouse.connect(tmp / final_db.name, memory_limit=config.memory_limit)
        try:
            if not incremental:
                _carry_history(con, final_db)
            _record_start(con, run_id, "run", config, started, mode)
            _say(progress, f"ingest (duckdb, {mode}: {why})")
            counts["ingest"] = ingest_step(con, config, run_id, progress, incremental=incremental)
            step = "build"
            counts["build"] = build_step(con, config, tmp / "graph", as_of, progress, incremental=incremental,
                                         buckets=buckets, engine=engine)
            # the export and the report start on a fresh connection, as `journeys export` and
            # `journeys report` do: the ingest's and build's temp tables and DuckDB's caches are
            # not carried into them (a 100M-event run ran out of DuckDB memory without this)
            con = _reconnect(con, tmp / final_db.name, config)
            step = "export"
            _say(progress, "export (parquet)")
            counts["export"] = export_step(con, tmp / "export", run_id)
            summary = summarize(con)
            _record_end(con, run_id, "succeeded", counts)
            con = _reconnect(con, tmp / final_db.name, config)
            step = "report"
            _say(progress, "report (html)")
            write_report(con, tmp / "report.html", progress=progress)
            con.execute("checkpoint")
        finally:
            con.close()
        step = "publish"
        if config.pseudonymize:
            privacy.rewrite_warehouse(tmp / final_db.name)  # no raw id left in freed pages of the file
        _say(progress, "publish")
        _publish(tmp, config)
    except BaseException as e:
        e.add_note(f"the run stopped in its {step} step")
        _record_failure(final_db, run_id, config, started, counts, e)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _clear_leftovers(config)  # the previous version (readers that still hold its files keep them open)
    return RunResult(run_id=run_id, status="succeeded", counts=counts, summary=summary)


def _reconnect(con: duckdb.DuckDBPyConnection, path: Path, config: Config) -> duckdb.DuckDBPyConnection:
    """Close `con` (committing and checkpointing its work) and open the warehouse again with the
    run's budget: a connection with nothing held over from the steps before."""
    con.close()
    return warehouse.connect(path, memory_limit=config.memory_limit)


def _step_on_copy(config: Config, step: str, run_id: str, started: datetime,
                  work: Callable[[duckdb.DuckDBPyConnection, dict], None]) -> RunResult:
    """`journeys build` or `ingest` on a copy of the warehouse file (a new file when there is
    none yet), swapped in by one atomic rename when the step succeeded: a failed or killed step
    leaves the warehouse as it was (the next step removes the copy: _clear_leftovers).

    Not one transaction: DuckDB holds a transaction's new tables in memory and cannot free the
    scratch tables it drops until the commit, so the core tables of a large log did not fit,
    and an ingest of 10M events at a 700MiB budget spilled 5 GB of temp files for a 0.4 GB
    warehouse (at 100M, the disk filled). On a copy each statement commits and is freed."""
    final = config.warehouse.resolve()  # the file itself, also when the path is a published symlink
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.{step}-{run_id}")
    counts: dict = {}
    try:
        if final.exists():
            warehouse.copy_with_room(final, tmp)
        con = warehouse.connect(tmp, memory_limit=config.memory_limit)
        try:
            _record_start(con, run_id, step, config, started)
            work(con, counts)
            _record_end(con, run_id, "succeeded", counts)
            summary = summarize(con) if step == "build" else {}
            con.execute("checkpoint")
        finally:
            con.close()
        if step == "ingest" and config.pseudonymize:
            privacy.rewrite_warehouse(tmp)  # no raw id left in freed pages of the file
        os.replace(tmp, final)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        tmp.with_name(tmp.name + ".wal").unlink(missing_ok=True)
        _record_failure(final, run_id, config, started, counts, e, command=step)
        raise
    return RunResult(run_id=run_id, status="succeeded", counts=counts, summary=summary)


def _record_failure(final_db: Path, run_id: str, config: Config, started: datetime, counts: dict, error: BaseException,
                    command: str = "run") -> None:
    """Append the failed run (or step) to meta.runs of the published warehouse (its data stays as it was)."""
    if not final_db.exists():
        return
    try:
        con = duckdb.connect(str(final_db))
        try:
            _record_start(con, run_id, command, config, started)
            _record_end(con, run_id, "failed", counts, warehouse.describe_error(error))
        finally:
            con.close()
    except Exception:  # the warehouse may be locked by a reader; the error is still raised to the caller
        log.warning("could not record the failed run in %s", final_db)


def run_step(config: Config, step: str, as_of: datetime | None = None, progress: Progress | None = None,
             buckets: int | None = None, engine: str | None = None) -> RunResult:
    """One step (ingest, build or export) on the published warehouse: ingest and build on a copy
    swapped in when they succeeded (_step_on_copy), export in one transaction."""
    if step == "ingest":
        ingest.validate_inputs(config)
    run_id = new_run_id()
    with run_lock(config.warehouse.parent, run_id, step):
        return _step_locked(config, step, run_id, as_of, progress, buckets, engine)


def _step_locked(config: Config, step: str, run_id: str, as_of: datetime | None, progress: Progress | None,
                 buckets: int | None = None, engine: str | None = None) -> RunResult:
    started = datetime.now(timezone.utc)
    _clear_leftovers(config)
    if step in ("ingest", "build"):
        def work(con: duckdb.DuckDBPyConnection, counts: dict) -> None:
            counts[step] = (ingest_step(con, config, run_id, progress) if step == "ingest" else
                            build_step(con, config, config.graph_dir, as_of, progress, buckets=buckets, engine=engine))

        return _step_on_copy(config, step, run_id, started, work)
    config.warehouse.parent.mkdir(parents=True, exist_ok=True)
    con = warehouse.connect(config.warehouse, memory_limit=config.memory_limit)
    counts: dict = {}
    try:
        _record_start(con, run_id, step, config, started)
        con.execute("begin transaction")
        try:
            if step == "export":
                final = config.export_dir.resolve()  # inside the published version when there is one
                tmp = final.parent / f".export-{run_id}"
                try:
                    counts["export"] = export_step(con, tmp / "export", run_id)
                    if final.exists():
                        final.rename(tmp / "old-export")
                    (tmp / "export").rename(final)
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
            else:
                raise ValueError(f"unknown step {step!r}")
            con.execute("commit")
        except BaseException as e:
            con.execute("rollback")
            _record_end(con, run_id, "failed", counts, f"{type(e).__name__}: {e}")
            raise
        _record_end(con, run_id, "succeeded", counts)
    finally:
        con.close()
    return RunResult(run_id=run_id, status="succeeded", counts=counts, summary={})
