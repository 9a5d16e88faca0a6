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

import math

import duckdb
import polars as pl

from pipeline import warehouse

# Peak memory of the Polars build per event of a bucket: the events read from DuckDB, the
# sorted, split and labelled frame, steps, sessions, journeys, visits and moves and their
# Arrow copies for DuckDB. Measured 1,470-1,560 bytes on 1M- and 2M-event buckets of a
# generated log (peak RSS over the baseline); rounded up for headroom.
BYTES_PER_EVENT = 1600
MIN_BUCKET_EVENTS = 200_000  # below this a bucket's fixed costs dominate

def duckdb_memory_limit(con: duckdb.DuckDBPyConnection) -> int:
    """The connection's DuckDB memory_limit in bytes."""
    return warehouse.parse_size(con.execute("select current_setting('memory_limit')").fetchall()[0][0])


def bucket_count(con: duckdb.DuckDBPyConnection, only_affected: bool = False, budget: int | None = None) -> int:
    """How many buckets keep one bucket's build within `budget` bytes (default: the build's
    share of the run's memory budget, warehouse.BUILD_SHARE; DuckDB's memory_limit is
    warehouse.DUCKDB_SHARE of it): at least 1."""
    where = " where customer_id in (select customer_id from _affected_customers)" if only_affected else ""
    events = con.execute("select count(*) from staging.events" + where).fetchall()[0][0]
    budget = budget or int(duckdb_memory_limit(con) * warehouse.BUILD_SHARE / warehouse.DUCKDB_SHARE)
    per_bucket = max(MIN_BUCKET_EVENTS, budget // BYTES_PER_EVENT)
    return max(1, math.ceil(events / per_bucket))


def read_bucket(con: duckdb.DuckDBPyConnection, bucket: int, buckets: int, only_affected: bool = False) -> pl.DataFrame:
    """The events of staging.events whose customer hashes to `bucket` of `buckets` (only
    the customers in the temp table _affected_customers when `only_affected`): the
    columns the build reads."""
    where = ["hash(customer_id) % $buckets = $bucket"] if buckets > 1 else []
    params = {"buckets": buckets, "bucket": bucket} if buckets > 1 else {}
    if only_affected:
        where.append("customer_id in (select customer_id from _affected_customers)")
    return con.sql(
        "select event_id, customer_id, ts, channel, event_type, source, source_file, source_row, "
        "cast(properties as varchar) as properties from staging.events"
        + (" where " + " and ".join(where) if where else ""),
        params=params,
    ).pl()


def build_core(con: duckdb.DuckDBPyConnection, settings, as_of, buckets: int, only_affected: bool = False,
               progress=None) -> int:
    """core.steps / sessions / journeys / visits / moves from staging.events, one bucket at a
    time (only the customers of _affected_customers when `only_affected`; their old rows are
    taken out first). Returns the number of customers built."""
    from pipeline import marts
    from pipeline.journeys import build_journeys

    marts.clear_core(con, only_customers=only_affected)
    built = 0
    for b in range(buckets):
        if progress:
            progress(f"sessionize and label (polars), bucket {b + 1} of {buckets}")
        core = build_journeys(read_bucket(con, b, buckets, only_affected=only_affected), settings, as_of)
        marts.write_core(con, core)
        built += core.journeys["customer_id"].n_unique()
        del core
    return built
