"""Marts: run the SQL models of sql/core and sql/marts against the warehouse.

Inputs are the core tables written by the build step; the settings the SQL
needs (graph level, funnel stages, segment keys) are written to meta first,
so the SQL files stay static.
"""

from __future__ import annotations

import duckdb
import polars as pl

from pipeline import ingest, warehouse
from pipeline.config import Config
from pipeline.journeys import CoreTables


def write_settings(con: duckdb.DuckDBPyConnection, config: Config, as_of) -> None:
    con.execute("delete from meta.settings; delete from meta.funnel_stages; delete from meta.segment_keys")
    con.executemany(
        "insert into meta.settings values (?, ?)",
        [["level", config.level], ["goal_stage", config.goal_stage], ["as_of", as_of.isoformat()]],
    )
    con.executemany("insert into meta.funnel_stages values (?, ?)", [[i + 1, s] for i, s in enumerate(config.stage_order)])
    segs = config.customers.segments if config.customers else ()
    if segs:
        con.executemany("insert into meta.segment_keys values (?)", [[s] for s in segs])


def write_core(con: duckdb.DuckDBPyConnection, core: CoreTables, config: Config) -> None:
    """core.steps / sessions / journeys from the build output, then customer segments, visits and moves."""
    con.register("_build_steps", core.steps.to_arrow())
    con.register("_build_sessions", core.sessions.to_arrow())
    con.register("_build_journeys", core.journeys.to_arrow())
    sql, params = ingest.customers_segment_sql(config)
    con.execute(f"create or replace temp table _segments_long as {sql}", params)
    try:
        for name in warehouse.CORE:
            warehouse.run_sql_file(con, name)
    finally:
        for view in ("_build_steps", "_build_sessions", "_build_journeys"):
            con.unregister(view)
        con.execute("drop table if exists _segments_long")


def build_marts(con: duckdb.DuckDBPyConnection) -> None:
    for name in warehouse.MARTS:
        warehouse.run_sql_file(con, name)


def read_events(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """staging.events, the columns the build step reads."""
    return con.sql(
        "select event_id, customer_id, ts, channel, event_type, source, source_file, source_row, "
        "cast(properties as varchar) as properties from staging.events"
    ).pl()
