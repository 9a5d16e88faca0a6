"""Marts: run the SQL models of sql/core and sql/marts against the warehouse.

Inputs are the core tables written by the build step; the settings the SQL
needs (graph level, funnel stages, segment keys) are written to meta first,
so the SQL files stay static.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from pathlib import Path
from typing import Callable, Sequence

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


_KEYS = ("journey_no", "journey_key", "session_no", "session_key")  # the build's, replaced by ids


def with_ids(con: duckdb.DuckDBPyConnection, core: CoreTables) -> dict[str, pl.DataFrame]:
    """The build output with journey_id / session_id in place of the keys and numbers: `j_` /
    `s_` + the first 16 hex digits of md5(journey or session key). md5 runs once per journey and session (in
    DuckDB) and the ids reach steps, visits and moves by position (journey_no, session_no)."""
    con.register("_journey_keys", core.journeys.select("journey_no", "journey_key").to_arrow())
    con.register("_session_keys", core.sessions.select("session_no", "session_key").to_arrow())
    try:
        journey_ids = con.sql(
            "select journey_no, 'j_' || substr(md5(journey_key), 1, 16) as id from _journey_keys"
        ).pl().sort("journey_no")["id"]
        session_ids = con.sql(
            "select session_no, 's_' || substr(md5(session_key), 1, 16) as id from _session_keys"
        ).pl().sort("session_no")["id"]
    finally:
        con.unregister("_journey_keys")
        con.unregister("_session_keys")

    def attach(frame: pl.DataFrame, session: bool = False) -> pl.DataFrame:
        cols = [journey_ids.gather(frame["journey_no"]).alias("journey_id")]
        if session:
            cols.append(session_ids.gather(frame["session_no"]).alias("session_id"))
        # the ids replace the keys and numbers, which no SQL file reads: they are not copied to
        # Arrow for DuckDB (the keys are long strings: 30% of the Arrow copy of a bucket's output)
        return frame.with_columns(cols).drop(_KEYS, strict=False)

    return {
        "_build_steps": attach(core.steps, session=True),
        "_build_sessions": attach(core.sessions, session=True),
        "_build_journeys": attach(core.journeys),
        "_build_visits": attach(core.visits),
    }


def clear_core(con: duckdb.DuckDBPyConnection, only_customers: bool = False) -> None:
    """Before the buckets: empty every core table (a full build), or take out the rows of the
    customers in _affected_customers (an incremental build)."""
    for table in warehouse.BUILT.values():  # our own constant table names, never config values
        if only_customers:
            con.execute(f"delete from {table} where customer_id in (select customer_id from _affected_customers)")
        else:
            con.execute(f"drop table if exists {table}")
    if not only_customers:
        # core.moves is a view of steps and journeys (made again by finish_core); a warehouse of
        # journeys 0.3 or older holds it as a table
        kind = con.execute(
            "select 'view' from duckdb_views() where database_name = current_database() and schema_name = 'core' "
            "and view_name = 'moves' union all select 'table' from duckdb_tables() where database_name = "
            "current_database() and schema_name = 'core' and table_name = 'moves'").fetchall()
        if kind:
            con.execute("drop view core.moves" if kind[0][0] == "view" else "drop table core.moves")
        # the dropped tables' blocks are free for the new ones only after a checkpoint: without
        # it a rebuild writes the new core beside the old, and the file grows by about 1.7x
        con.execute("checkpoint")


def write_core(con: duckdb.DuckDBPyConnection, core: CoreTables) -> None:
    """Add the build output of one bucket of customers to core.steps / sessions / journeys /
    visits (each SQL file of warehouse.BUILT; the first bucket of a full build
    creates the tables)."""
    inputs = with_ids(con, core)
    for name, frame in inputs.items():
        # plain Arrow strings: DuckDB reads them faster than Polars' string views
        con.register(name, frame.to_arrow(compat_level=pl.CompatLevel.oldest()))
    try:
        for name, table in warehouse.BUILT.items():
            sql = (warehouse.sql_dir() / name).read_text()
            schema_name, table_name = table.split(".")
            exists = con.execute(
                "select count(*) from duckdb_tables() where database_name = current_database() "
                "and schema_name = ? and table_name = ?", [schema_name, table_name]
            ).fetchall()[0][0]
            if exists:
                sql = sql.replace(f"create or replace table {table} as", f"insert into {table}")
            con.execute(sql)
    finally:
        for name in inputs:
            con.unregister(name)


def finish_core(
    con: duckdb.DuckDBPyConnection,
    segments_long: pa.Table | pl.DataFrame | None = None,
    only_customers: bool = False,
) -> None:
    """After the buckets: journey status at the as-of time (incremental: every journey's,
    also those not rebuilt, whose status can move as time passes; the terminal moves of
    journeys whose status changed follow), then customer segments. `segments_long` has one
    row per customer and segment key (customer_id, segment_key, segment_value); customers
    absent from it get '(unknown)'."""
    if segments_long is None:
        segments_long = pl.DataFrame(schema=SEGMENTS_LONG_SCHEMA)
    if isinstance(segments_long, pl.DataFrame):
        segments_long = segments_long.to_arrow()
    if only_customers:
        for name in warehouse.STATUS:
            warehouse.run_sql_file(con, name)
    con.register("_segments_long", segments_long)
    try:
        for name in warehouse.CORE:
            warehouse.run_sql_file(con, name)
    finally:
        con.unregister("_segments_long")


def write_all_core(
    con: duckdb.DuckDBPyConnection,
    core: CoreTables,
    segments_long: pa.Table | pl.DataFrame | None = None,
    only_customers: bool = False,
) -> None:
    """All core tables from one build output (one bucket holding every customer, or with
    `only_customers` the rebuilt customers of _affected_customers): clear, write, finish."""
    clear_core(con, only_customers)
    write_core(con, core)
    finish_core(con, segments_long, only_customers)


def build_marts(con: duckdb.DuckDBPyConnection, progress: Callable[[str], None] | None = None) -> None:
    """Every mart of sql/marts, the p-values of marts.segment_comparison, then the analyst
    views of sql/views (views read the marts when queried, so they are made last).
    `progress` is told each mart as it starts (on 100M events the marts take minutes)."""
    # every mart that needs an order says so (order by); the others may be written in any order,
    # which DuckDB does with far less memory on large tables (marts.bottleneck_journeys)
    with warehouse.unordered_writes(con):
        for name in warehouse.MACROS:
            warehouse.run_sql_file(con, name)
        for i, name in enumerate(warehouse.MARTS, start=1):
            if progress:
                progress(f"marts: {Path(name).stem} ({i} of {len(warehouse.MARTS)})")
            with warehouse.failing_in(f"in marts.{Path(name).stem}, sql/{name}"):
                warehouse.run_sql_file(con, name)
    with warehouse.failing_in("in the p-values of marts.segment_comparison"):
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
        with warehouse.failing_in(f"in the flow-law check sql/checks/{path.name}"):
            broken += con.execute(path.read_text()).fetchall()
    if broken:
        lines = [f"{law}: segment {segment}, node {node}: {numbers}" for law, segment, node, numbers in broken[:10]]
        more = f" (and {len(broken) - 10} more)" if len(broken) > 10 else ""
        raise LawError("the marts break a flow law" + more + ":\n  " + "\n  ".join(lines))
    return len(checks)


def events_sql(only_affected: bool = False, known_only: bool = False, properties: bool = True) -> str:
    """The query of staging.events' columns the build step reads: only the customers in the
    temp table _affected_customers when `only_affected`, only known customers (identity
    resolution found their customer id: `[identity] anonymous = "exclude"`) when `known_only`;
    `properties` null unless asked for (BuildSettings.reads_properties).
    pipeline.buckets.split_buckets adds the bucket number."""
    conditions = (["customer_id in (select customer_id from _affected_customers)"] if only_affected else []) + (
        [KNOWN_CUSTOMERS] if known_only else [])
    return (
        "select event_id, customer_id, ts, channel, event_type, source, source_file, source_row, "
        + ("cast(properties as varchar)" if properties else "cast(null as varchar)")
        + " as properties from staging.events"
        + (" where " + " and ".join(conditions) if conditions else "")
    )


# the customers identity resolution knows by their customer id (the others are anonymous)
KNOWN_CUSTOMERS = "customer_id in (select customer_id from core.identities where status = 'customer')"


def anonymous_events(con: duckdb.DuckDBPyConnection) -> int:
    """How many events belong to anonymous customers (left out of the build when
    `[identity] anonymous = "exclude"`)."""
    return con.execute("select count(*) from staging.events where not " + KNOWN_CUSTOMERS).fetchall()[0][0]
