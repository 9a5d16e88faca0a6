"""The DuckDB warehouse: where the SQL files live, and running them.

Every table's SQL is a file in sql/ (one object a file, named for the table);
the pipeline runs these same files, so what analysts read is what runs.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import duckdb

MEMORY_LIMIT_CAP = 2 << 30  # bytes: with the rest of the process (Python, Polars), a run stays within 4 GiB
MEMORY_LIMIT_SHARE = 0.6  # of the physical memory, on a smaller machine
_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)\s*", re.IGNORECASE)

DDL = (
    "meta/schemas.sql",
    "staging/events.sql",
    "staging/quarantine.sql",
    "staging/duplicates.sql",
    "meta/runs.sql",
    "meta/ingest_files.sql",
    "meta/settings.sql",
    "meta/funnel_stages.sql",
    "meta/segment_keys.sql",
    "meta/source_files.sql",
)
BUILT = {"core/steps.sql": "core.steps", "core/sessions.sql": "core.sessions", "core/journeys.sql": "core.journeys"}  # from the build output
CORE = ("core/journey_status.sql", "core/customer_segments.sql", "core/visits.sql", "core/moves.sql")  # from core, every run
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


def default_memory_limit() -> str:
    """DuckDB's memory limit when none is given: 60% of the physical memory, at most 2 GiB."""
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not known on this platform
        physical = MEMORY_LIMIT_CAP / MEMORY_LIMIT_SHARE
    return f"{int(min(physical * MEMORY_LIMIT_SHARE, MEMORY_LIMIT_CAP)) >> 20}MiB"


def memory_limit_problem(value: str) -> str | None:
    """Why `value` is not a memory size DuckDB takes (e.g. 4GiB, 2.5GB, 800MB), or None."""
    if not isinstance(value, str) or not _SIZE.fullmatch(value):
        return f"{value!r} is not a memory size"
    return None


def connect(path: Path | str, read_only: bool = False, memory_limit: str | None = None) -> duckdb.DuckDBPyConnection:
    """Open the warehouse; creates it (with every schema and staging/meta table) when writable.

    DuckDB keeps within `memory_limit` (default: default_memory_limit()) by spilling to its
    temp directory, `<warehouse>.tmp` beside the warehouse file."""
    con = duckdb.connect(str(path), read_only=read_only)
    con.execute("set TimeZone = 'UTC'")
    con.execute("set memory_limit = ?", [memory_limit or default_memory_limit()])
    if not read_only:
        for name in DDL:
            run_sql_file(con, name)
    return con
