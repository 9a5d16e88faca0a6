"""Bucketed execution: the customers are split by a hash of their id into buckets, and the
pure build function (pipeline.journeys.build_journeys) runs on one bucket at a time.

A bucket holds the complete history of each of its customers, and the build of a customer
depends only on that customer's events, so the core tables are the same for any number of
buckets; only the memory a bucket needs changes. The number of buckets is chosen from the
events to build and the memory budget (or given): memory stays flat as the data grows.

The hash is DuckDB's `hash(customer_id)`: the same within a run, which is all bucketing
needs (buckets are not stored).
"""

from __future__ import annotations

import contextlib
import math
import tempfile
from pathlib import Path

import duckdb
import polars as pl

from pipeline import schema, warehouse

# Peak memory of the Polars build per event of a bucket: the events read from DuckDB, the
# sorted, split and labelled frame, steps, sessions, journeys, visits and moves and their
# Arrow copies for DuckDB. Measured 1,470-1,560 bytes on 1M- and 2M-event buckets of a
# generated log (peak RSS over the baseline); rounded up for headroom.
BYTES_PER_EVENT = 1600
# On a small budget the process's own memory counts: Python with polars, duckdb and pyarrow
# loaded and a DuckDB connection open take about 150-200 MB before any data, and a build then
# needs about 2,340 bytes more per event of its largest bucket (peak RSS of whole 10M-event
# builds at 400MiB-1GiB budgets, with DuckDB held to its share during the buckets). So a
# bucket is also kept to what is left of HEADROOM of the budget after DuckDB's share during
# the buckets and PROCESS_BYTES, at MARGINAL_BYTES_PER_EVENT. From about 3.4 GiB up (so at the
# default 4 GiB) the BYTES_PER_EVENT rule is the smaller one and decides alone.
PROCESS_BYTES = 200 << 20
# Those figures are of events without properties. A stage rule on properties makes the build
# read them (BuildSettings.reads_properties), and a bucket then holds about two copies of each
# event's properties at its peak (the frame read from DuckDB, and the sorted one): on 1M events
# of the benchmark's log with properties of 267 and 1,035 bytes an event, the peak of reading
# and building the bucket grew by 2.4 and 2.0 bytes per byte of properties. So each event of a
# bucket counts PROPERTY_COPIES times its properties' mean size on top.
PROPERTY_COPIES = 2.5
MARGINAL_BYTES_PER_EVENT = 2450
HEADROOM = 0.92
MIN_BUCKET_EVENTS = 10_000  # below this a bucket's fixed costs dominate
# DuckDB's partitioned write of the bucket files holds more than its memory_limit allows when
# one write takes too many events into small buckets: at a 700MiB budget (DuckDB 300 MiB) the
# 869 buckets of 100M events ran out of memory in one write, and so did 400 of them (46M
# events), while 200 (23M events) held. So one write takes at most this many events per MiB
# of DuckDB's limit (15M at 300 MiB; at the default 4GiB budget, 102M events in one write,
# as the 100M benchmark has always done), and a larger split makes several passes.
SPLIT_ROWS_PER_MIB = 50_000
# Up to this many buckets, each bucket is read from staging.events by a scan that keeps its
# customers (read_bucket) and no files are written. One such scan of the benchmark's 10M events
# took 0.3 s: the 10 buckets of the default budget were read in 3.2 s, where the split's
# partitioned write and the reads of its files took 7.3 s. The scans grow with buckets times
# events and the split only with events: inside whole builds of the 10M events in 16 buckets,
# the 16 scans still took 5.3-6.0 s against 6.4-6.8 s for the split and its reads. Above this
# the events are split into bucket files once (split_buckets), which keeps 100M events linear.
SCAN_MAX_BUCKETS = 16
# The bucket files are scratch, read once and deleted, so they are written uncompressed: on the
# benchmark's 100M events the split took 55.3 and 62.9 s and its 94 reads 2.3 and 3.3 s, against
# 74.5 and 77.8 s and 5.7 and 6.4 s with zstd (snappy: 65.7 s and 3.9 s), for 4.0 GB of files
# (40 bytes an event) on the disk beside the warehouse instead of 1.3 GB.
SPLIT_COMPRESSION = "uncompressed"


def events_per_bucket(budget: int, property_bytes: float = 0) -> int:
    """The most events one bucket may hold within a memory budget of `budget` bytes (the whole
    command's): the build's share of it at BYTES_PER_EVENT, and no more than fits beside the
    process itself and DuckDB on a small budget; at least MIN_BUCKET_EVENTS. `property_bytes`:
    the mean size of the properties the build reads an event (0 when it reads none)."""
    extra = math.ceil(PROPERTY_COPIES * property_bytes)
    by_share = int(budget * warehouse.BUILD_SHARE) // (BYTES_PER_EVENT + extra)
    room = int(budget * (HEADROOM - warehouse.DUCKDB_SHARE_DURING_BUCKETS)) - PROCESS_BYTES
    return max(MIN_BUCKET_EVENTS, min(by_share, room // (MARGINAL_BYTES_PER_EVENT + extra)))


def duckdb_memory_limit(con: duckdb.DuckDBPyConnection) -> int:
    """The connection's DuckDB memory_limit in bytes."""
    return warehouse.parse_size(con.execute("select current_setting('memory_limit')").fetchall()[0][0])


def bucket_count(con: duckdb.DuckDBPyConnection, only_affected: bool = False, budget: int | None = None,
                 known_only: bool = False, properties: bool = True) -> int:
    """How many buckets keep one bucket's build within the memory budget of `budget` bytes
    (default: the run's, found from the connection's DuckDB memory_limit, warehouse.budget_of),
    each bucket at most events_per_bucket(budget, the mean size of the properties the build
    reads): at least 1."""
    from pipeline import marts

    query = marts.events_sql(only_affected, known_only, properties)
    events, property_bytes = con.execute(
        f"select count(*), coalesce(avg(strlen(properties)), 0) from ({query})").fetchall()[0]
    budget = budget or warehouse.budget_of(duckdb_memory_limit(con))
    return max(1, math.ceil(events / events_per_bucket(budget, property_bytes)))


def bucket_sql(buckets: int) -> str:
    """The SQL expression of a customer's bucket among `buckets`, the one place it is written:
    read_bucket and split_buckets must agree on it. The number goes into the SQL as an int
    (never a config value): bound as a parameter, DuckDB did not push read_bucket's filter into
    the scan, and 10 scans of the 10M events took 18.6 s, not 3.1."""
    return f"hash(customer_id) % {int(buckets)}"


def read_bucket(con: duckdb.DuckDBPyConnection, bucket: int, buckets: int, only_affected: bool = False,
                known_only: bool = False, properties: bool = True) -> pl.DataFrame:
    """The events of bucket `bucket` of `buckets`, by a scan of staging.events that keeps the
    customers hashing to it (bucket_sql, as split_buckets); with one bucket, every event the
    build reads: staging.events, or only the customers in the temp table _affected_customers
    when `only_affected`, only known customers when `known_only`; properties null unless
    `properties`."""
    from pipeline import marts

    query = marts.events_sql(only_affected, known_only, properties)
    if buckets > 1:
        query = f"select * from ({query}) where {bucket_sql(buckets)} = {int(bucket)}"
    frame = con.sql(query).pl()
    return frame.select(list(schema.EVENTS_SCHEMA)).cast(schema.EVENTS_SCHEMA)


def split_passes(events: int, duckdb_limit: int) -> int:
    """How many partitioned writes split_buckets makes: each takes at most SPLIT_ROWS_PER_MIB
    events per MiB of DuckDB's memory_limit (`duckdb_limit`, bytes)."""
    return max(1, math.ceil(events / (SPLIT_ROWS_PER_MIB * max(duckdb_limit >> 20, 1))))


def split_buckets(con: duckdb.DuckDBPyConnection, folder: Path, buckets: int, only_affected: bool = False,
                  known_only: bool = False, properties: bool = True) -> int:
    """Write the build's events to `folder`/bucket=<b>/*.parquet, one folder per bucket (DuckDB's
    partitioned write, within its memory limit), so each bucket is then read alone: the cost
    stays linear in the events however many buckets. One pass over staging.events, or on a
    small budget several (split_passes), each writing a range of the buckets. Returns the
    number of passes. Properties are written only when `properties`."""
    from pipeline import marts

    query = marts.events_sql(only_affected, known_only, properties)
    events = con.execute(f"select count(*) from ({query})").fetchall()[0][0]
    passes = min(buckets, split_passes(events, duckdb_memory_limit(con)))
    per_pass = math.ceil(buckets / passes)
    target = str(folder).replace("'", "''")  # COPY takes no bound file name; the path is ours
    for first in range(0, buckets, per_pass):
        # each pass writes its own bucket folders: append only adds files beside the others
        con.execute(
            f"copy (select * from (select *, {bucket_sql(buckets)} as bucket from ({query})) "
            f"where bucket >= {int(first)} and bucket < {int(first + per_pass)}) "
            f"to '{target}' (format parquet, partition_by (bucket), compression {SPLIT_COMPRESSION}, append)"
        )
    return passes


def read_split_bucket(folder: Path, bucket: int) -> pl.DataFrame:
    """One bucket written by split_buckets (an empty frame when no customer hashed to it)."""
    files = sorted((folder / f"bucket={bucket}").glob("*.parquet"))
    if not files:
        return pl.DataFrame(schema=schema.EVENTS_SCHEMA)
    return pl.read_parquet(files, hive_partitioning=False).select(list(schema.EVENTS_SCHEMA)).cast(schema.EVENTS_SCHEMA)


def scratch_root(con: duckdb.DuckDBPyConnection) -> Path | None:
    """The folder beside the warehouse file for the build's scratch files (None in memory)."""
    path = con.execute("select path from duckdb_databases() where database_name = current_database()").fetchall()[0][0]
    return Path(path).parent if path else None


def build_core(con: duckdb.DuckDBPyConnection, settings, as_of, buckets: int, only_affected: bool = False,
               progress=None, known_only: bool = False, split: bool | None = None) -> int:
    """core.steps / sessions / journeys / visits (and with them core.moves) from staging.events, one bucket at a
    time (only the customers of _affected_customers when `only_affected`; their old rows are
    taken out first; only known customers when `known_only`). With more than SCAN_MAX_BUCKETS
    buckets (or `split`), the events are first split into bucket files beside the warehouse
    (removed after); with fewer, each bucket is read by its own scan of staging.events.
    Returns the number of customers built."""
    from pipeline import marts
    from pipeline.journeys import build_journeys

    marts.clear_core(con, only_customers=only_affected)
    built = 0
    if split is None:
        split = buckets > SCAN_MAX_BUCKETS
    with tempfile.TemporaryDirectory(prefix=".buckets-", dir=scratch_root(con)) as scratch:
        folder = Path(scratch) / "events"
        if split:
            if progress:
                progress(f"split the events into {buckets} buckets (duckdb)")
            with warehouse.failing_in(f"in the split of the events into {buckets} bucket files"):
                split_buckets(con, folder, buckets, only_affected, known_only, settings.reads_properties)
        with duckdb_held_to(con, warehouse.DUCKDB_SHARE_DURING_BUCKETS / warehouse.DUCKDB_SHARE):
            for b in range(buckets):
                if progress:
                    progress(f"sessionize and label (polars), bucket {b + 1} of {buckets}")
                with warehouse.failing_in(f"in bucket {b + 1} of {buckets}"):
                    if split:
                        events = read_split_bucket(folder, b)
                    else:
                        events = read_bucket(con, b, buckets, only_affected, known_only, settings.reads_properties)
                    core = build_journeys(events, settings, as_of)
                    del events
                    marts.write_core(con, core)
                built += core.journeys["customer_id"].n_unique()
                del core
    return built


@contextlib.contextmanager
def duckdb_held_to(con: duckdb.DuckDBPyConnection, fraction: float):
    """DuckDB's memory_limit lowered to `fraction` of itself inside the block (at least 64 MiB),
    then restored: while Polars builds a bucket, DuckDB needs memory only to append rows."""
    limit = duckdb_memory_limit(con)
    con.execute("set memory_limit = ?", [f"{max(int(limit * fraction), 64 << 20) >> 20}MiB"])
    try:
        yield
    finally:
        con.execute("set memory_limit = ?", [f"{limit >> 20}MiB"])
