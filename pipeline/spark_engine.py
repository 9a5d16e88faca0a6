"""The Spark engine: the build step's sessionize + label on Apache Spark (`--engine spark`).

`build_journeys` is a pure function of complete customer histories, so Spark
runs it unchanged: staging.events is written as Parquet, Spark reads it,
repartitions it by customer id (every event of a customer lands in the same
partition), and `mapInArrow` hands each partition's Arrow batches to one
Python call that concatenates them and runs `build_journeys` on them. The
four core tables (steps, sessions, journeys, visits; core.moves is their view) come out of that
one pass as one Arrow schema with a `table` tag and the partition number
(the union of their columns, each row filling its own table's), and Spark
writes them with `partitionBy("table", "part")`: one scan, one shuffle, one
Parquet write through Spark's output committer, so retried or speculative
tasks never leave a duplicate file. Each partition is then one bucket of
customers for the warehouse (pipeline.marts.write_core, as in the local
engine's bucket loop), and every later step (marts, checks, export, report)
is the local engine's.

pyspark is imported lazily (the extra `journeys[spark]`): the package imports
without it. Settings come from the config's [spark] section and the
environment (docs/engines.md); a local master binds to 127.0.0.1 only, with
the web UI off.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import sys
import tempfile
import warnings
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import duckdb
import polars as pl
import pyarrow as pa

from pipeline import marts, schema
from pipeline.config import Config, SparkSettings
from pipeline.journeys import BuildSettings, CoreTables, build_journeys

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

TABLES = ("steps", "sessions", "journeys", "visits")
PART = "part"  # the Spark partition a row was built in: each partition is one bucket of customers
TAG = "table"  # the column naming which core table a row of the one-pass output belongs to
EVENTS_PER_PARTITION = 1_000_000  # default partitioning: about this many events per build call
ENV = {  # the environment overrides [spark]: one config runs on a laptop and on a cluster
    "master": "JOURNEYS_SPARK_MASTER",
    "driver_memory": "JOURNEYS_SPARK_DRIVER_MEMORY",
    "executor_memory": "JOURNEYS_SPARK_EXECUTOR_MEMORY",
    "partitions": "JOURNEYS_SPARK_PARTITIONS",
    "scratch_dir": "JOURNEYS_SPARK_SCRATCH_DIR",
}
LOOPBACK = "127.0.0.1"


class SparkEngineError(RuntimeError):
    """The Spark engine cannot run as set up; says what to fix."""


def resolve_settings(settings: SparkSettings | None = None, env: dict | None = None) -> SparkSettings:
    """[spark] with the JOURNEYS_SPARK_* environment variables applied over it."""
    settings = settings or SparkSettings()
    env = os.environ if env is None else env
    changes: dict = {}
    for field, var in ENV.items():
        value = env.get(var)
        if not value:
            continue
        if field == "partitions":
            if not value.isdigit() or int(value) < 1:
                raise SparkEngineError(f"{var}={value!r} is not a whole number >= 1. Fix: set e.g. {var}=64, or unset it")
            changes[field] = int(value)
        elif field == "scratch_dir":
            changes[field] = Path(value).absolute()
        else:
            changes[field] = value
    return dataclasses.replace(settings, **changes)


def session_conf(settings: SparkSettings, already: dict[str, str]) -> dict[str, str]:
    """The Spark settings to give the session builder, given those `already` set (by
    spark-submit's --master and --conf, or spark-defaults.conf), which always win.

    Master: spark-submit's, else JOURNEYS_SPARK_MASTER / [spark] master, else local[*].
    A local master binds the driver to 127.0.0.1 and turns the web UI off."""
    master = already.get("spark.master") or settings.master or "local[*]"
    wanted = {
        "spark.master": master,
        "spark.app.name": "journeys",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",  # a UTC instant, read back as TIMESTAMPTZ
        "spark.sql.execution.arrow.pyspark.enabled": "true",
    }
    if settings.driver_memory:
        wanted["spark.driver.memory"] = settings.driver_memory
    if settings.executor_memory:
        wanted["spark.executor.memory"] = settings.executor_memory
    if settings.partitions:
        wanted["spark.sql.shuffle.partitions"] = str(settings.partitions)
    if master.startswith("local"):
        wanted.update({
            "spark.driver.host": LOOPBACK,
            "spark.driver.bindAddress": LOOPBACK,
            "spark.ui.enabled": "false",
            "spark.ui.showConsoleProgress": "false",
        })
        if "spark.sql.shuffle.partitions" not in wanted:
            wanted["spark.sql.shuffle.partitions"] = "8"  # not Spark's 200: one machine
    wanted.update(dict(settings.conf))
    return {k: v for k, v in wanted.items() if k not in already}


def pyspark_available() -> bool:
    """Whether pyspark is installed (the extra journeys[spark])."""
    import importlib.util

    return importlib.util.find_spec("pyspark") is not None


def spark_session(settings: SparkSettings | None = None) -> "SparkSession":
    """The active SparkSession (spark-submit, Databricks, a notebook or a test made it), else a
    new one from [spark] and the environment (see `session_conf`)."""
    try:
        from pyspark import SparkConf
        from pyspark.sql import SparkSession
    except ImportError:
        raise SparkEngineError("--engine spark needs pyspark. Fix: pip install 'journeys[spark]' (and Java 17 or later)") from None
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    settings = resolve_settings(settings)
    conf = session_conf(settings, dict(SparkConf().getAll()))
    if conf.get("spark.master", "").startswith("local"):
        # read by the JVM and the workers it starts, so they are set before it starts:
        # bind to loopback only, and run the workers with this Python (it has pipeline)
        os.environ.setdefault("SPARK_LOCAL_IP", LOOPBACK)
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder
    for key, value in conf.items():
        builder = builder.config(key, value)
    with _no_pandas_warning():
        return builder.getOrCreate()


@contextlib.contextmanager
def _no_pandas_warning():
    """pyspark warns about pandas >= 3 wherever Arrow is set up; the engine uses no pandas."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
        yield


def _arrow(dtype: pl.DataType) -> pa.DataType:
    """The Arrow type Spark exchanges for a Polars type (plain, not large, strings)."""
    t = pl.DataFrame(schema={"c": dtype}).to_arrow().schema.field("c").type
    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return pa.string()
    if pa.types.is_large_list(t) or pa.types.is_list(t) or pa.types.is_list_view(t):
        return pa.list_(_arrow(dtype.inner))
    return t


def core_schemas() -> dict[str, dict[str, pl.DataType]]:
    """Columns and dtypes of the core tables, taken from build_journeys itself."""
    empty = build_journeys(pl.DataFrame(schema=schema.EVENTS_SCHEMA), BuildSettings(), datetime(2000, 1, 1))
    return {name: dict(getattr(empty, name).schema) for name in TABLES}


def output_schema() -> pa.Schema:
    """The one-pass output: the tag, then the union of the core tables' columns (a column
    two tables share, such as customer_id or started_at, has the same type in both)."""
    fields: dict[str, pa.DataType] = {TAG: pa.string(), PART: pa.int32()}
    for columns in core_schemas().values():
        for name, dtype in columns.items():
            fields.setdefault(name, _arrow(dtype))
    return pa.schema(list(fields.items()))


def build_partition(batches: Iterator[pa.RecordBatch], settings: BuildSettings, as_of: datetime,
                    out: pa.Schema) -> Iterator[pa.RecordBatch]:
    """One partition of customers: its complete histories -> the tagged rows of the four core
    tables, each with the partition's number (run on the executors by mapInArrow)."""
    from pyspark import TaskContext

    received = list(batches)
    if not received or not sum(b.num_rows for b in received):
        return
    context = TaskContext.get()  # None when called outside a Spark task (tests)
    part = context.partitionId() if context else 0
    events = pl.from_arrow(pa.Table.from_batches(received)).cast(schema.EVENTS_SCHEMA)
    core = build_journeys(events, settings, as_of)
    for name in TABLES:
        frame = getattr(core, name)
        tagged = frame.select(
            pl.lit(name).alias(TAG),
            pl.lit(part, dtype=pl.Int32).alias(PART),
            *(pl.col(f.name) if f.name in frame.columns else pl.lit(None).alias(f.name)
              for f in out if f.name not in (TAG, PART)),
        )
        yield from tagged.to_arrow().cast(out).to_batches(max_chunksize=65_536)


def build_core_spark(spark: "SparkSession", events_parquet: str, settings: BuildSettings, as_of: datetime,
                     out_dir: Path, partitions: int) -> dict[str, Path]:
    """Staging events (Parquet) -> the core tables as Parquet, built by Spark: events
    repartitioned by customer id into `partitions`, `build_partition` on each. Returns the
    folder of each table (out_dir/table=<name>/part=<partition>, holding the union columns;
    read a partition with `read_part`). A table without rows has no folder."""
    from pyspark.sql.pandas.types import from_arrow_schema

    settings.check()  # on the driver, before any task starts
    out = output_schema()
    events = spark.read.parquet(events_parquet)
    with _no_pandas_warning():
        built = events.repartition(partitions, "customer_id").mapInArrow(
            lambda batches: build_partition(batches, settings, as_of, out),
            from_arrow_schema(out, prefer_timestamp_ntz=False),
        )
        built.write.mode("overwrite").partitionBy(TAG, PART).parquet(str(out_dir))
    return {name: out_dir / f"{TAG}={name}" for name in TABLES}


def read_part(paths: dict[str, Path], part: int) -> CoreTables:
    """The core tables Spark built in one partition (one bucket of customers), read from
    build_core_spark's folders with exactly the columns and dtypes of build_journeys'
    CoreTables (an absent folder is an empty table)."""
    frames = {}
    for name, columns in core_schemas().items():
        folder = paths[name] / f"{PART}={part}"
        files = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
        if files:
            frames[name] = pl.read_parquet(files, hive_partitioning=False).select(list(columns)).cast(columns)
        else:
            frames[name] = pl.DataFrame(schema=columns)
    return CoreTables(**frames)


def default_partitions(spark: "SparkSession", events: int) -> int:
    """At least one partition per core Spark offers; more so each holds about a million events."""
    return max(spark.sparkContext.defaultParallelism, math.ceil(events / EVENTS_PER_PARTITION))


def build_core(con: duckdb.DuckDBPyConnection, config: Config, as_of: datetime, only_affected: bool = False,
               spark: "SparkSession | None" = None, partitions: int | None = None) -> tuple[int, int]:
    """The build step's core tables, made by Spark from the warehouse's staging.events (only
    the customers in _affected_customers when `only_affected`, whose old rows are taken out
    first): each Spark partition's output is added to core as one bucket (marts.write_core),
    so the warehouse gets exactly what the local engine writes. Returns (partitions,
    customers built)."""
    settings = resolve_settings(config.spark)
    spark = spark or spark_session(settings)

    root = settings.scratch_dir or config.versions_dir  # there, a killed run's leftovers go with the next run
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".spark-", dir=root) as scratch:
        events_path = Path(scratch) / "events.parquet"
        build = BuildSettings.from_config(config)
        query = marts.events_sql(only_affected, config.anonymous == "exclude", build.reads_properties)
        con.execute(f"copy ({query}) to '{_quote(events_path)}' (format parquet, compression zstd)")
        events = con.execute(f"select count(*) from ({query})").fetchall()[0][0]
        partitions = partitions or settings.partitions or default_partitions(spark, events)
        paths = build_core_spark(spark, str(events_path), build, as_of,
                                 Path(scratch) / "core", partitions)
        events_path.unlink()
        marts.clear_core(con, only_customers=only_affected)
        built = 0
        for part in range(partitions):
            core = read_part(paths, part)
            marts.write_core(con, core)
            built += core.journeys["customer_id"].n_unique()
    return partitions, built


def _quote(path: Path) -> str:
    """A path as the body of a SQL string literal (DuckDB's COPY takes no bound file name)."""
    return str(path).replace("'", "''")
