"""The DuckDB warehouse: where the SQL files live, and running them.

Every table's SQL is a file in sql/ (one object a file, named for the table);
the pipeline runs these same files, so what analysts read is what runs.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

DDL = (
    "meta/schemas.sql",
    "staging/events.sql",
    "staging/quarantine.sql",
    "staging/duplicates.sql",
    "staging/identity_map.sql",
    "staging/identity_conflicts.sql",
    "core/identities.sql",
    "meta/runs.sql",
    "meta/ingest_files.sql",
    "meta/settings.sql",
    "meta/funnel_stages.sql",
    "meta/segment_keys.sql",
    "meta/source_files.sql",
)
# from the build output (pipeline.journeys.build_journeys), bucket by bucket
BUILT = {
    "core/steps.sql": "core.steps",
    "core/sessions.sql": "core.sessions",
    "core/journeys.sql": "core.journeys",
    "core/visits.sql": "core.visits",
    "core/moves.sql": "core.moves",
}
STATUS = ("core/journey_status.sql",)  # incremental runs: every journey's status at the new as-of
CORE = ("core/customer_segments.sql",)  # from core, after the buckets
MARTS = (
    "marts/transitions.sql",
    "marts/stage_stats.sql",
    "marts/funnel.sql",
    "marts/segment_summary.sql",
    "marts/bottlenecks.sql",
    "marts/drop_offs.sql",
    "marts/bottleneck_journeys.sql",
    "marts/drop_off_journeys.sql",
    "marts/repeat_contacts.sql",
    "marts/segment_comparison.sql",
)
# Analyst views over core and marts (schema views, made by each file): run after the marts.
VIEWS = ("views/journey_paths.sql", "views/stage_dwell.sql", "views/rankings.sql")


def sql_dir() -> Path:
    """sql/ of the checkout, or the copy packaged inside an installed wheel."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "sql", here / "sql"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("the sql/ folder of journeys is missing from this installation")


def run_sql_file(con: duckdb.DuckDBPyConnection, name: str) -> None:
    con.execute((sql_dir() / name).read_text())


def connect(path: Path | str, read_only: bool = False, memory_limit: str | None = None) -> duckdb.DuckDBPyConnection:
    """Open the warehouse; creates it (with every schema and staging/meta table) when writable."""
    con = duckdb.connect(str(path), read_only=read_only)
    con.execute("set TimeZone = 'UTC'")
    if memory_limit:
        con.execute("set memory_limit = ?", [memory_limit])
    if not read_only:
        for name in DDL:
            run_sql_file(con, name)
    return con
