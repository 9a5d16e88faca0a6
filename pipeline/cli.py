"""The `journeys` command: parse options, call one library function, print.

Exit codes: 0 success, 1 a failed run, 2 a usage or config error.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

import click

from pipeline import __version__
from pipeline.config import ConfigError, load_config

DEFAULT_CONFIG = "journeys.toml"


class ConfigProblem(click.ClickException):
    """A config or input problem: exit 2, like click's usage errors."""

    exit_code = 2


def _progress_enabled() -> bool:
    return sys.stderr.isatty() and not os.environ.get("CI")


class TerminalProgress:
    """Progress on a terminal (stderr): a bar of the input files read, then one line per step."""

    WIDTH = 24

    def __init__(self, files: int):
        self.files = max(files, 1)
        self.read = 0
        self.bar_open = False

    def __call__(self, message: str) -> None:
        if message.startswith("read "):
            self.read += 1
            filled = self.WIDTH * min(self.read, self.files) // self.files
            click.echo(f"\r  [{'#' * filled}{'.' * (self.WIDTH - filled)}] {self.read}/{self.files} files  {message[5:][:48]:<48}",
                       err=True, nl=False)
            self.bar_open = True
            return
        if self.bar_open:
            click.echo("", err=True)
            self.bar_open = False
        click.echo(f"  {message} ...", err=True)


def _progress_for(config, as_json: bool):
    """A TerminalProgress when stderr is a terminal (and not under CI or --json), else None."""
    if as_json or not _progress_enabled():
        return None
    return TerminalProgress(sum(len(s.files) for s in config.sources))


def _load(config_path: str, check_files: bool = True):
    try:
        return load_config(config_path, check_files=check_files)
    except ConfigError as e:
        raise ConfigProblem(str(e)) from None


def _as_of(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"'{value}' is not an ISO timestamp; write e.g. 2026-11-01T00:00:00Z", param_hint="--as-of") from None
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


def common_options(f):
    """--config and --json, shared by every command that reads a config."""

    @click.option("--config", "-c", "config_path", default=DEFAULT_CONFIG, show_default=True, metavar="FILE",
                  type=click.Path(dir_okay=False), help="The journeys TOML config (sources, stages, outputs).")
    @click.option("--json", "as_json", is_flag=True, help="Print a machine-readable JSON summary on stdout.")
    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        return f(*args, **kwargs)

    return wrapper


def _memory_limit(ctx, param, value: str | None) -> str | None:
    from pipeline.warehouse import memory_limit_problem

    if value is not None and memory_limit_problem(value):
        raise click.BadParameter(f"{memory_limit_problem(value)}; write e.g. 4GiB, 2.5GB or 800MB", ctx=ctx, param=param)
    return value


memory_limit_option = click.option(
    "--memory-limit", "memory_limit", metavar="SIZE", callback=_memory_limit,
    help="The run's memory budget, e.g. 4GiB, at least 700MiB, and for a build at least 20 bytes an "
         "event (2GiB for 100M events; a smaller one is refused before the build starts): DuckDB gets "
         "half (less under 800MiB) and spills to disk beyond it, the build's buckets are sized to 40% "
         "or less (default: engine.memory_limit, else 60% of the physical memory, at most 4 GiB).")


def _with_memory_limit(config, memory_limit: str | None):
    """The config with --memory-limit in place of its engine.memory_limit, when given."""
    import dataclasses

    return dataclasses.replace(config, memory_limit=memory_limit) if memory_limit else config


as_of_option = click.option("--as-of", "as_of", metavar="TIMESTAMP",
                            help="Judge open vs dropped journeys at this time (default: journeys.as_of, else the latest event).")
buckets_option = click.option(
    "--buckets", type=click.IntRange(min=1), default=None, metavar="N",
    help="Build the customers in N hash buckets, one at a time (default: as many as the memory limit needs; "
         "the result is the same for any N).")


engine_option = click.option(
    "--engine", type=click.Choice(["local", "spark"]), default=None,
    help="Where to sessionize and label: local (Polars, this process) or spark (pip install 'journeys[spark]'; "
         "docs/engines.md). Default: the config's [engine] name, else local.")


def _fail(e: Exception) -> click.ClickException:
    if isinstance(e, ConfigError):
        return ConfigProblem(str(e))
    from pipeline.warehouse import DISK_FIX, describe_error, disk_filled

    message = describe_error(e)
    if disk_filled(e):  # NoRoomOnDisk, raised before the disk filled, carries the fix itself
        message += "\n" + DISK_FIX
    if "Out of Memory" in str(e):
        message += ("\nFix: give the command a larger budget with --memory-limit (or [engine] memory_limit; "
                    "DuckDB gets half of it), and keep free disk beside the warehouse for what DuckDB spills "
                    "(<warehouse>.tmp).")
    return click.ClickException(message)


def _print_result(result, as_json: bool, human) -> None:
    if as_json:
        click.echo(json.dumps({"run_id": result.run_id, "status": result.status, **result.counts, **result.summary}, default=str))
    else:
        human(result)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="journeys")
@click.option("-v", "--verbose", is_flag=True, help="Log details to stderr.")
def cli(verbose: bool) -> None:
    """Turn raw omnichannel touchpoint logs into customer journeys: where customers
    move, where they wait (bottlenecks) and where they leave (drop-offs), per segment.

    \b
    Example, on the bundled sample:
        journeys sample --out data/sample          # (re)write the synthetic raw data
        journeys run --config data/sample/journeys.toml
        journeys sql -c data/sample/journeys.toml "select * from marts.drop_offs where rank = 1"
    """
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")


@cli.command()
@common_options
@as_of_option
@click.option("--full-refresh", is_flag=True, help="Read every input file and rebuild everything (default: only new or changed files).")
@buckets_option
@memory_limit_option
@engine_option
def run(config_path: str, as_json: bool, as_of: str | None, full_refresh: bool, buckets: int | None,
        memory_limit: str | None, engine: str | None) -> None:
    """Run the whole pipeline for a config and publish its outputs atomically.

    Ingests the sources into the DuckDB warehouse, sessionizes and labels
    journeys, builds the marts and the transition graph, exports Parquet and
    writes the HTML report. Incremental by default: only new or changed input
    files are read and only the customers they touch are sessionized again
    (a changed config, or --full-refresh, rebuilds everything). A failed run
    leaves the previous outputs whole.

    \b
    Example:
        journeys run --config data/sample/journeys.toml
        journeys run -c data/sample/journeys.toml --json > summary.json
        journeys run -c data/sample/journeys.toml --engine spark
    """
    from pipeline.run import run_pipeline

    config = _with_memory_limit(_load(config_path), memory_limit)
    try:
        result = run_pipeline(config, as_of=_as_of(as_of), progress=_progress_for(config, as_json),
                              full_refresh=full_refresh, buckets=buckets, engine=engine)
    except click.ClickException:
        raise
    except Exception as e:
        raise _fail(e) from None
    _print_result(result, as_json, lambda r: click.echo(format_summary(r, config)))


def _step(step: str, config_path: str, as_json: bool, as_of: str | None = None, buckets: int | None = None,
          memory_limit: str | None = None, engine: str | None = None):
    from pipeline.run import run_step

    config = _with_memory_limit(_load(config_path), memory_limit)
    try:
        result = run_step(config, step, as_of=_as_of(as_of), progress=_progress_for(config, as_json), buckets=buckets,
                          engine=engine)
    except click.ClickException:
        raise
    except Exception as e:
        raise _fail(e) from None
    _print_result(result, as_json, lambda r: click.echo(f"{step}: " + json.dumps(r.counts[step], default=str)))


@cli.command()
@common_options
@memory_limit_option
def ingest(config_path: str, as_json: bool, memory_limit: str | None) -> None:
    """Load the raw sources into staging.events (bad rows to staging.quarantine).

    \b
    Example:
        journeys ingest -c data/sample/journeys.toml
        journeys sql -c data/sample/journeys.toml "select reason, count(*) from staging.quarantine group by 1"
    """
    _step("ingest", config_path, as_json, memory_limit=memory_limit)


@cli.command()
@common_options
@as_of_option
@buckets_option
@memory_limit_option
@engine_option
def build(config_path: str, as_json: bool, as_of: str | None, buckets: int | None, memory_limit: str | None,
          engine: str | None) -> None:
    """Build core (steps, sessions, journeys), the marts and the graph from staging.

    \b
    Example:
        journeys build -c data/sample/journeys.toml --as-of 2026-11-01T00:00:00Z
        journeys build -c data/sample/journeys.toml --engine spark
    """
    _step("build", config_path, as_json, as_of, buckets, memory_limit, engine)


@cli.command()
@common_options
def export(config_path: str, as_json: bool) -> None:
    """Export core, marts and views as Parquet (core.steps and core.moves partitioned by date), with manifest.json.

    \b
    Example:
        journeys export -c data/sample/journeys.toml
        python -c "import pyarrow.parquet as pq; print(pq.read_table('build/export/marts.funnel.parquet'))"
    """
    _step("export", config_path, as_json)


@cli.command()
@common_options
def validate(config_path: str, as_json: bool) -> None:
    """Check a config and its sources without writing anything.

    Loads the config, checks every file's columns, then reads every row into an
    in-memory database exactly as `journeys run` would, and reports per source
    how many rows would load, be duplicates or be quarantined (by reason).
    Exit 2 with the file, line and fix on the first problem that stops a run.

    \b
    Example:
        journeys validate -c data/sample/journeys.toml
        journeys validate -c data/sample/journeys.toml --json
    """
    from pipeline.run import dry_ingest

    config = _load(config_path)
    try:
        found = dry_ingest(config)
    except ConfigError as e:
        raise ConfigProblem(str(e)) from None
    if as_json:
        click.echo(json.dumps(found, default=str))
        return
    click.echo(f"ok: {found['files']} files in {len(found['sources'])} sources, {len(config.rules)} stage rules")
    for name, c in found["sources"].items():
        reasons = ", ".join(f"{k} {v}" for k, v in c["quarantine_by_reason"].items())
        click.echo(f"  {name}: {c['rows_read']} rows: {c['loaded']} would load, {c['duplicates']} duplicates, "
                   f"{c['quarantined']} quarantined" + (f" ({reasons})" if reasons else ""))


@cli.command()
@click.argument("query")
@click.option("--config", "-c", "config_path", default=DEFAULT_CONFIG, show_default=True, metavar="FILE",
              type=click.Path(dir_okay=False), help="The config whose warehouse to query.")
@click.option("--db", "db_path", type=click.Path(dir_okay=False), help="Query this DuckDB file instead of the config's warehouse.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
def sql(query: str, config_path: str, db_path: str | None, fmt: str, as_json: bool) -> None:
    """Run a read-only SQL query against the warehouse.

    The connection is opened read-only: statements that write fail.

    \b
    Example:
        journeys sql -c data/sample/journeys.toml "select * from marts.funnel where segment_key = 'all'"
        journeys sql --db build/journeys.duckdb --format csv "select * from marts.bottlenecks where rank = 1"
    """
    import duckdb

    path = Path(db_path) if db_path else _load(config_path, check_files=False).warehouse
    if not path.exists():
        raise ConfigProblem(f"{path}: no warehouse there yet. Fix: run `journeys run --config {config_path}` first, or pass --db")
    try:
        con = duckdb.connect(str(path), read_only=True)
        allowed = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}
        for statement in con.extract_statements(query):
            if statement.type not in allowed:
                raise click.ClickException(
                    f"journeys sql is read-only: only SELECT (and EXPLAIN) queries run here, not {statement.type.name}. "
                    "Fix: query with SELECT; to write, open the warehouse with duckdb yourself"
                )
        rel = con.sql(query)
        if rel is None:
            return
        df = rel.pl()
    except duckdb.Error as e:
        raise click.ClickException(str(e)) from None
    fmt = "json" if as_json else fmt
    if fmt == "csv":
        click.echo(df.write_csv(), nl=False)
    elif fmt == "json":
        click.echo(df.write_json())
    else:
        import polars as pl

        with pl.Config(tbl_rows=200, tbl_cols=50, fmt_str_lengths=80, tbl_width_chars=200):
            click.echo(str(df))


@cli.command()
@click.option("--config", "-c", "config_path", default=DEFAULT_CONFIG, show_default=True, metavar="FILE",
              type=click.Path(dir_okay=False), help="The config whose warehouse to read.")
@click.option("--json", "as_json", is_flag=True, help="Print the runs as JSON on stdout.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1), help="How many of the latest runs.")
def runs(config_path: str, as_json: bool, limit: int) -> None:
    """List the latest runs recorded in meta.runs (status, times, counts), newest first.

    \b
    Example:
        journeys runs -c data/sample/journeys.toml
        journeys runs -c data/sample/journeys.toml --json --limit 1
    """
    import duckdb

    path = _load(config_path, check_files=False).warehouse
    if not path.exists():
        raise ConfigProblem(f"{path}: no warehouse there yet. Fix: run `journeys run --config {config_path}` first")
    con = duckdb.connect(str(path), read_only=True)
    try:
        df = con.sql(
            "select run_id, command, status, mode, started_at, finished_at, "
            "round(epoch(finished_at) - epoch(started_at), 2) as seconds, as_of, config_hash, package_version, "
            "cast(counts as varchar) as counts, error from meta.runs order by started_at desc limit $limit",
            params={"limit": limit},
        ).pl()
    finally:
        con.close()
    if as_json:
        click.echo(df.write_json())
        return
    import polars as pl

    with pl.Config(tbl_rows=limit, tbl_cols=8, fmt_str_lengths=40, tbl_width_chars=160):
        click.echo(str(df.select("run_id", "command", "status", "mode", "started_at", "seconds", "error")))


class EventCount(click.ParamType):
    """A whole number of events, optionally with a suffix k or M (thousands, millions): 50000, 50k, 10M."""

    name = "N"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        text = str(value).strip()
        scale = {"k": 1_000, "K": 1_000, "m": 1_000_000, "M": 1_000_000}.get(text[-1:], 1)
        try:
            number = int(text[:-1] if scale > 1 else text)
        except ValueError:
            self.fail(f"'{value}' is not a number of events; write e.g. 50000, 50k or 10M", param, ctx)
        if number * scale < 1:
            self.fail(f"'{value}' is not at least 1 event", param, ctx)
        return number * scale


@cli.command()
@click.option("--customers", default=2000, show_default=True, type=click.IntRange(min=1), help="How many customers to simulate (the realistic sample).")
@click.option("--events", type=EventCount(), default=None,
              help="Write this many events (e.g. 50k, 10M) as bulk Parquet for benchmarks instead of the realistic sample.")
@click.option("--seed", default=7, show_default=True, type=int, help="Random seed: the same seed writes the same files.")
@click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False),
              help="Folder to write the raw files into (default: data/sample; required with --events).")
def sample(customers: int, events: int | None, seed: int, out_dir: str | None) -> None:
    """Write synthetic raw channel files with planted truths (ground_truth.json).

    Web clickstream (JSON lines), social (CSV), call center (CSV, local times),
    store receipts (CSV), email/app (CSV) and customers.csv, each in its own
    layout, plus a planted bottleneck, a planted drop-off and bad rows of every
    kind, all listed in ground_truth.json.

    With --events N it writes N events of bulk data instead, fast and in
    bounded memory: Parquet files OUT/events/part-NNNNN.parquet (event_id,
    customer_id, ts, channel, event_type) and OUT/journeys.toml, a config whose
    journeys are the 30-minute sessions and whose graph is at event-type level.

    \b
    Example:
        journeys sample --customers 2000 --seed 7 --out data/sample
        journeys sample --events 10M --seed 1 --out build/bench/10M
    """
    if events is None:
        from pipeline.sample import write_sample

        out_dir = out_dir or "data/sample"
        truth = write_sample(Path(out_dir), customers=customers, seed=seed)
        click.echo(f"wrote {sum(f['rows'] for f in truth['files'].values())} rows in {len(truth['files'])} files to {out_dir}")
        return
    if out_dir is None:
        raise click.UsageError("--events needs --out DIR, the folder to write the bulk data into")
    from pipeline.synth import write_events

    written = write_events(Path(out_dir), events=events, seed=seed)
    click.echo(f"wrote {written.events} events of {written.customers} customers in {len(written.files)} files "
               f"to {out_dir}/events; config {written.config}")


def _identity_line(identity: dict, build: dict) -> str:
    """The summary's line on identity resolution: stitched, anonymous (kept or left out), conflicts."""
    anonymous = identity.get("anonymous_events", 0)
    fate = ("left out of the journeys ([identity] anonymous = \"exclude\")" if "anonymous_events_left_out" in build
            else "kept as customers of their own")
    return (f"identity: {identity.get('identifiers', 0)} identifiers, {identity.get('stitched_events', 0)} events stitched "
            f"to a known customer, {anonymous} anonymous events {fate}, {identity.get('conflicts', 0)} conflicts "
            "(staging.identity_conflicts)")


def format_summary(result, config) -> str:
    """The human summary `journeys run` ends with."""
    from pipeline.report import format_findings

    ing, bld, s = result.counts["ingest"], result.counts["build"], result.summary
    lines = [
        f"run {result.run_id}: {result.status} ({result.counts['mode']}: {result.counts['mode_reason']})",
        f"events in: {ing['files']} files read ({ing['files_withdrawn']} withdrawn), {ing['rows_read']} rows read, "
        f"{ing['loaded']} loaded, {ing['duplicates']} duplicates, {ing['quarantined']} quarantined"
        + (f" ({', '.join(f'{k} {v}' for k, v in s['quarantine_by_reason'].items())})" if s["quarantine_by_reason"] else ""),
        *([_identity_line(ing["identity"], bld)] if ing.get("identity") else []),
        f"journeys: {bld['journeys']} ({', '.join(f'{k} {v}' for k, v in bld['journeys_by_status'].items())}), "
        f"{bld['sessions']} sessions, {bld['unlabelled_steps']} unlabelled steps, as of {bld['as_of']}",
        f"laws checked: {bld['laws_checked']} (flow balance, START and terminals, funnel, row accounting, unique event ids): all hold",
        f"outputs: {config.warehouse}, {config.export_dir}/ (Parquet + manifest.json), {config.graph_dir}/ (GraphML + DOT), "
        f"{config.report} (open it in a browser)",
        "",
        *format_findings(s),
        "",
        "more: journeys report -c CONFIG --journeys (the journeys behind each number), journeys sql -c CONFIG \"select ...\"",
    ]
    return "\n".join(lines)


@cli.command()
@click.option("--config", "-c", "config_path", default=DEFAULT_CONFIG, show_default=True, metavar="FILE",
              type=click.Path(dir_okay=False), help="The config whose warehouse to read.")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON on stdout.")
@click.option("--top", default=3, show_default=True, type=click.IntRange(min=1), help="How many bottlenecks and drop-offs per segment.")
@click.option("--journeys", "show_journeys", is_flag=True, help="List example journey ids behind each number.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False), default=None,
              help="Also write the standalone HTML journey report to this file (journeys run writes output.report).")
@memory_limit_option
def report(config_path: str, as_json: bool, top: int, show_journeys: bool, html_path: str | None,
           memory_limit: str | None) -> None:
    """Print the findings of the last run: per segment, the top bottlenecks and
    drop-offs with their numbers and the journeys behind them (read-only).

    \b
    Example:
        journeys report -c data/sample/journeys.toml --top 5 --journeys
        journeys report -c data/sample/journeys.toml --json | jq '.drop_offs[0]'
        journeys report -c data/sample/journeys.toml --html /tmp/journeys.html
    """
    from pipeline import warehouse
    from pipeline.html_report import write_report
    from pipeline.report import format_findings, summarize, trim_findings

    config = _with_memory_limit(_load(config_path, check_files=False), memory_limit)
    path = config.warehouse
    if not path.exists():
        raise ConfigProblem(f"{path}: no warehouse there yet. Fix: run `journeys run --config {config_path}` first")
    progress = _progress_for(config, as_json)
    con = warehouse.connect(path, read_only=True, memory_limit=config.memory_limit)
    try:
        if progress:
            progress("findings")
        # once, for the printout and for the HTML report (which lists at least 5 per segment)
        found = summarize(con, top=max(top, 5) if html_path else top)
        if html_path:
            write_report(con, Path(html_path), top=max(top, 5), progress=progress, findings=found)
            found = trim_findings(found, top)
    finally:
        con.close()
    click.echo(json.dumps(found, indent=2, default=str) if as_json else "\n".join(format_findings(found, show_journeys)))


def main() -> None:
    """Entry point: an unexpected error is one line on stderr and exit 1 (the traceback with -v)."""
    try:
        cli(prog_name="journeys", standalone_mode=False)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.Abort:
        click.echo("Aborted!", err=True)
        sys.exit(1)
    except Exception as e:  # a bug: say so plainly, keep the details for -v
        logging.getLogger("journeys").info("internal error", exc_info=True)
        click.echo(f"Error: internal error: {type(e).__name__}: {e} (run with -v for the traceback, and please report it)", err=True)
        sys.exit(1)
