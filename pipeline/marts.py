"""Marts: run the SQL models of sql/core and sql/marts against the warehouse.

Inputs are the core tables written by the build step; the settings the SQL
needs (graph level, funnel stages, segment keys) are written to meta first,
so the SQL files stay static.
"""

from __future__ import annotations

from datetime import datetime
from typing import Sequence

import duckdb
import polars as pl
import pyarrow as pa

from pipeline import warehouse
from pipeline.journeys import CoreTables

SEGMENTS_LONG_SCHEMA = {"customer_id": pl.String, "segment_key": pl.String, "segment_value": pl.String}


def write_settings(
    con: duckdb.DuckDBPyConnection,
    level: str,
    goal_stage: str,
    as_of: datetime,
    stage_order: Sequence[str],
    segment_keys: Sequence[str],
) -> None:
    """meta.settings, meta.funnel_stages and meta.segment_keys: what the SQL models read."""
    con.execute("delete from meta.settings; delete from meta.funnel_stages; delete from meta.segment_keys")
    con.executemany(
        "insert into meta.settings values (?, ?)",
        [["level", level], ["goal_stage", goal_stage], ["as_of", as_of.isoformat()]],
    )
    con.executemany("insert into meta.funnel_stages values (?, ?)", [[i + 1, s] for i, s in enumerate(stage_order)])
    if segment_keys:
        con.executemany("insert into meta.segment_keys values (?)", [[s] for s in segment_keys])


def write_core(con: duckdb.DuckDBPyConnection, core: CoreTables, segments_long: pa.Table | pl.DataFrame | None = None) -> None:
    """core.steps / sessions / journeys from the build output, then customer segments, visits and moves.

    `segments_long` has one row per customer and segment key (customer_id,
    segment_key, segment_value); customers absent from it get '(unknown)'.
    """
    if segments_long is None:
        segments_long = pl.DataFrame(schema=SEGMENTS_LONG_SCHEMA)
    if isinstance(segments_long, pl.DataFrame):
        segments_long = segments_long.to_arrow()
    inputs = {
        "_build_steps": core.steps.to_arrow(),
        "_build_sessions": core.sessions.to_arrow(),
        "_build_journeys": core.journeys.to_arrow(),
        "_segments_long": segments_long,
    }
    for name, table in inputs.items():
        con.register(name, table)
    try:
        for name in warehouse.CORE:
            warehouse.run_sql_file(con, name)
    finally:
        for name in inputs:
            con.unregister(name)


def build_marts(con: duckdb.DuckDBPyConnection) -> None:
    for name in warehouse.MARTS:
        warehouse.run_sql_file(con, name)


def read_events(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """staging.events, the columns the build step reads."""
    return con.sql(
        "select event_id, customer_id, ts, channel, event_type, source, source_file, source_row, "
        "cast(properties as varchar) as properties from staging.events"
    ).pl()
