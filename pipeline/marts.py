"""Marts: run the SQL models of sql/core and sql/marts against the warehouse.

Inputs are the core tables written by the build step; the settings the SQL
needs (graph level, funnel stages, segment keys) are written to meta first,
so the SQL files stay static.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Sequence

import duckdb
import polars as pl
import pyarrow as pa

from pipeline import schema, stats, warehouse
from pipeline.journeys import CoreTables

SEGMENTS_LONG_SCHEMA = {"customer_id": pl.String, "segment_key": pl.String, "segment_value": pl.String}


@dataclasses.dataclass(frozen=True)
class MartSettings:
    """The config values the SQL models read (written to meta.settings and friends)."""

    level: str = "stage"
    goal_stage: str = "purchase"
    funnel_stages: Sequence[str] = schema.DEFAULT_STAGES
    funnel_mode: str = "strict"
    funnel_window: int | None = None
    segment_keys: Sequence[str] = ()
    min_journeys: int = 30
    alpha: float = 0.05
    contact_channels: Sequence[str] = ("call_center",)
    contact_window: int = 7 * 86400
    journey_timeout: int | None = 30 * 86400

    @classmethod
    def from_config(cls, config) -> "MartSettings":
        return cls(
            level=config.level,
            goal_stage=config.goal_stage,
            funnel_stages=config.funnel_stages or config.stage_order,
            funnel_mode=config.funnel_mode,
            funnel_window=config.funnel_window,
            segment_keys=config.customers.segments if config.customers else (),
            min_journeys=config.min_journeys,
            alpha=config.alpha,
            contact_channels=config.contact_channels,
            contact_window=config.contact_window,
            journey_timeout=config.journey_timeout,
        )


def write_settings(con: duckdb.DuckDBPyConnection, settings: MartSettings, as_of: datetime) -> None:
    """meta.settings, meta.funnel_stages and meta.segment_keys: what the SQL models read."""
    con.execute("delete from meta.settings; delete from meta.funnel_stages; delete from meta.segment_keys")
    values = {
        "level": settings.level,
        "goal_stage": settings.goal_stage,
        "as_of": as_of.isoformat(),
        "funnel_mode": settings.funnel_mode,
        "funnel_window_seconds": None if settings.funnel_window is None else str(settings.funnel_window),
        "min_journeys": str(settings.min_journeys),
        "alpha": str(settings.alpha),
        "contact_channels": "[" + ", ".join(settings.contact_channels) + "]",
        "contact_window_seconds": str(settings.contact_window),
        "journey_timeout_seconds": None if settings.journey_timeout is None else str(settings.journey_timeout),
    }
    con.executemany("insert into meta.settings values (?, ?)", [[k, v] for k, v in values.items()])
    con.executemany("insert into meta.funnel_stages values (?, ?)", [[i + 1, s] for i, s in enumerate(settings.funnel_stages)])
    if settings.segment_keys:
        con.executemany("insert into meta.segment_keys values (?)", [[s] for s in settings.segment_keys])


def write_core(
    con: duckdb.DuckDBPyConnection,
    core: CoreTables,
    segments_long: pa.Table | pl.DataFrame | None = None,
    only_customers: bool = False,
) -> None:
    """core.steps / sessions / journeys from the build output, then journey status at the
    as-of time, customer segments, visits and moves.

    With `only_customers`, `core` holds the rebuilt histories of the customers in the temp
    table _affected_customers: their rows are replaced and every other customer's kept (an
    incremental run). `segments_long` has one row per customer and segment key
    (customer_id, segment_key, segment_value); customers absent from it get '(unknown)'.
    """
    if segments_long is None:
        segments_long = pl.DataFrame(schema=SEGMENTS_LONG_SCHEMA)
    if isinstance(segments_long, pl.DataFrame):
        segments_long = segments_long.to_arrow()
    inputs = {  # DataFrames as Arrow; LazyFrames (the Spark engine's Parquet scans) as they are
        "_build_steps": _registrable(core.steps),
        "_build_sessions": _registrable(core.sessions),
        "_build_journeys": _registrable(core.journeys),
        "_segments_long": segments_long,
    }
    for name, table in inputs.items():
        con.register(name, table)
    try:
        for name, table in warehouse.BUILT.items():
            sql = (warehouse.sql_dir() / name).read_text()
            if only_customers:
                con.execute(f"delete from {table} where customer_id in (select customer_id from _affected_customers)")
                sql = sql.replace(f"create or replace table {table} as", f"insert into {table}")
            con.execute(sql)
        for name in warehouse.CORE:
            warehouse.run_sql_file(con, name)
    finally:
        for name in inputs:
            con.unregister(name)


def _registrable(frame: pl.DataFrame | pl.LazyFrame) -> pa.Table | pl.LazyFrame:
    return frame.to_arrow() if isinstance(frame, pl.DataFrame) else frame


def build_marts(con: duckdb.DuckDBPyConnection) -> None:
    """Every mart of sql/marts, the p-values of marts.segment_comparison, then the analyst
    views of sql/views (views read the marts when queried, so they are made last)."""
    for name in warehouse.MARTS:
        warehouse.run_sql_file(con, name)
    stats.add_p_values(con)
    for name in warehouse.VIEWS:
        warehouse.run_sql_file(con, name)


class LawError(RuntimeError):
    """The marts break a flow law (sql/checks/): the run fails and publishes nothing."""


def check_laws(con: duckdb.DuckDBPyConnection) -> int:
    """Run every check in sql/checks/ (each returns the rows breaking its law); raise
    LawError naming the law, segment, node and numbers of the first breaks. Returns
    the number of laws checked."""
    checks = sorted((warehouse.sql_dir() / "checks").glob("*.sql"))
    broken = []
    for path in checks:
        broken += con.execute(path.read_text()).fetchall()
    if broken:
        lines = [f"{law}: segment {segment}, node {node}: {numbers}" for law, segment, node, numbers in broken[:10]]
        more = f" (and {len(broken) - 10} more)" if len(broken) > 10 else ""
        raise LawError("the marts break a flow law" + more + ":\n  " + "\n  ".join(lines))
    return len(checks)


def events_sql(only_affected: bool = False) -> str:
    """The query of staging.events' columns the build step reads (only the customers in the
    temp table _affected_customers when `only_affected`)."""
    where = " where customer_id in (select customer_id from _affected_customers)" if only_affected else ""
    return (
        "select event_id, customer_id, ts, channel, event_type, source, source_file, source_row, "
        "cast(properties as varchar) as properties from staging.events" + where
    )


def read_events(con: duckdb.DuckDBPyConnection, only_affected: bool = False) -> pl.DataFrame:
    """staging.events, the columns the build step reads (see events_sql)."""
    return con.sql(events_sql(only_affected)).pl()
