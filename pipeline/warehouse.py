"""The DuckDB warehouse: where the SQL files live, and running them.

Every table's SQL is a file in sql/ (one object a file, named for the table);
the pipeline runs these same files, so what analysts read is what runs.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import duckdb

# The memory limit is the whole run's budget: DuckDB gets DUCKDB_SHARE of it, the Polars build
# of one bucket is sized to BUILD_SHARE of it (pipeline.buckets), the rest is Python and Arrow.
MEMORY_LIMIT_CAP = 4 << 30  # bytes: the default budget on a large machine
MEMORY_LIMIT_SHARE = 0.6  # of the physical memory, on a smaller machine
DUCKDB_SHARE = 0.5
# while the buckets are sessionized, DuckDB only appends their rows: it is held to this share of
# the budget then, so its cached blocks and a bucket's Polars build together stay within it
DUCKDB_SHARE_DURING_BUCKETS = 0.25
BUILD_SHARE = 0.4
# the least budget a command keeps to: its own process (Python, polars, duckdb, pyarrow and a
# connection) takes about 200 MB before any data (pipeline.buckets.PROCESS_BYTES), and DuckDB
# needs about 300 MiB beside that for the bucket split's partitioned write (at a 512MiB budget,
# with 112 MiB, it ran out of memory); a 10M-event build at 700MiB peaked at 648 MiB
MIN_MEMORY_LIMIT = 700 << 20
# what the process holds beside DuckDB's memory_limit while DuckDB works (the process itself,
# DuckDB's allocations outside its buffer pool, the Python side): measured up to 362 MiB in the
# marts of a 10M-event build at a 700MiB budget. On a budget under 800MiB DuckDB gets what is
# left after it, not DUCKDB_SHARE (duckdb_limit)
OUTSIDE_DUCKDB = 400 << 20
_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)\s*", re.IGNORECASE)

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
}
STATUS = ("core/journey_status.sql",)  # incremental runs: every journey's status at the new as-of
# from core, after the buckets: core.moves, a view of the moves the steps and journeys carry, then segments
CORE = ("core/moves.sql", "core/customer_segments.sql")
MACROS = ("marts/quantiles.sql",)  # temp macros the marts use (exact quantiles within the memory limit)
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


@contextmanager
def failing_in(where: str) -> Iterator[None]:
    """An error raised inside the block gets the note `where` (e.g. "in marts.transitions"), which
    the command's error line and meta.runs show: an out-of-memory error from DuckDB names no
    statement, and a 100M-event build runs dozens."""
    try:
        yield
    except Exception as e:
        e.add_note(where)
        raise


# what a failed command adds when the disk filled (cli) or would fill (copy_with_room)
DISK_FIX = ("Fix: free disk space beside the warehouse, or point output.warehouse to a disk with room. "
            "A build or an incremental run works on a copy of the warehouse file, a large build writes "
            "its buckets' events beside it (about 40 bytes an event, deleted after) and DuckDB spills "
            "to <warehouse>.tmp. The published outputs are as they were.")


class NoRoomOnDisk(RuntimeError):
    """The disk beside the warehouse cannot hold the copy a step works on (checked before it)."""


def free_disk(folder: Path) -> int:
    """Bytes free for this user on the disk of `folder`."""
    return shutil.disk_usage(folder).free


def copy_with_room(source: Path, target: Path) -> None:
    """Copy the warehouse file `source` to `target` (the copy a step works on), after checking
    that target's disk has room for it: when it has less than the file, stop before copying
    (the copy would fill the disk partway, and the step after it needs more still), raising
    NoRoomOnDisk with both paths, the sizes and the fix."""
    size, free = source.stat().st_size, free_disk(target.parent)
    if free < size:
        raise NoRoomOnDisk(
            f"{target.parent} has {free / 1e9:.2f} GB free, and this step works on a copy of {source} "
            f"({size / 1e9:.2f} GB), so it stopped before copying. {DISK_FIX}")
    shutil.copy2(source, target)


def disk_filled(e: BaseException) -> bool:
    """Whether `e` is the disk filling up (an OSError ENOSPC, or DuckDB's error that wraps one)."""
    return getattr(e, "errno", None) == errno.ENOSPC or "No space left on device" in str(e)


def describe_error(e: BaseException) -> str:
    """`Type (note) (note): message`: the one line a failed command prints and meta.runs keeps."""
    where = "".join(f" ({note})" for note in getattr(e, "__notes__", []))
    return f"{type(e).__name__}{where}: {e}"


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
    """The run's memory budget when none is given: 60% of the physical memory, at most 4 GiB."""
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not known on this platform
        physical = MEMORY_LIMIT_CAP / MEMORY_LIMIT_SHARE
    return f"{int(min(physical * MEMORY_LIMIT_SHARE, MEMORY_LIMIT_CAP)) >> 20}MiB"


def memory_limit_problem(value: str) -> str | None:
    """Why `value` is not a memory budget journeys takes (a size such as 4GiB, 2.5GB, 800MB, of
    at least MIN_MEMORY_LIMIT), or None."""
    if not isinstance(value, str) or not _SIZE.fullmatch(value):
        return f"{value!r} is not a memory size"
    if parse_size(value) < MIN_MEMORY_LIMIT:
        return (f"{value!r} is below {MIN_MEMORY_LIMIT >> 20}MiB, the least budget journeys keeps to "
                "(its own process takes about 200 MB before any data, and DuckDB about 300 MiB beside it)")
    return None


# DuckDB memory a build needs per event of the core: the marts' and flow laws' passes over
# core.moves and core.steps hold part of their hash tables in memory even when they spill.
# Measured on the benchmark's 100M events by building at smaller budgets and mending what ran
# out of memory each time (docs/scaling.md has every run): a whole build now completes at a 2GiB
# budget (DuckDB at 1 GiB, 10.7 bytes an event; 21:53, peak RSS 1.91 GiB) and, on 10M events,
# at 700MiB. 10 bytes an event makes 2GiB the least budget for 100M events (2,000,000,000
# bytes, named as 2GiB); between the measured sizes the figure is interpolated.
MARTS_DUCKDB_BYTES_PER_EVENT = 10


def least_budget(events: int) -> int:
    """The least memory budget (bytes) a build of `events` events is known to hold to: what
    gives DuckDB MARTS_DUCKDB_BYTES_PER_EVENT an event, and at least MIN_MEMORY_LIMIT."""
    return max(MIN_MEMORY_LIMIT, budget_of(events * MARTS_DUCKDB_BYTES_PER_EVENT))


def budget_too_small(events: int, budget: int) -> str | None:
    """Why a build of `events` events cannot hold to a budget of `budget` bytes, or None."""
    least = least_budget(events)
    if budget >= least:
        return None
    need = f"{-(-least // (1 << 30))}GiB" if least >= 1 << 30 else f"{-(-least // (1 << 20))}MiB"
    return (f"building {events:,} events needs a memory budget of at least {need} "
            f"(the marts' aggregations over the moves need about {MARTS_DUCKDB_BYTES_PER_EVENT} bytes "
            f"an event of DuckDB's memory, half the budget); this run's budget is {budget >> 20}MiB. "
            f"Fix: give --memory-limit {need} (or [engine] memory_limit), on a machine with that much memory")


_UNITS = {"b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
          "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4}


def parse_size(value: str) -> int:
    """A memory size ('4GiB', '2.5GB', '800MB') in bytes (memory_limit_problem checks it)."""
    m = _SIZE.fullmatch(value)
    if not m:
        raise ValueError(f"{value!r} is not a memory size; write e.g. 4GiB, 2.5GB or 800MB")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def duckdb_limit(budget: int) -> int:
    """DuckDB's memory_limit in bytes for a budget of `budget` bytes: DUCKDB_SHARE of it, but no
    more than leaves OUTSIDE_DUCKDB beside it (on a budget under 800MiB), and at least 64 MiB."""
    return max(64 << 20, min(int(budget * DUCKDB_SHARE), budget - OUTSIDE_DUCKDB))


def budget_of(duckdb_memory_limit: int) -> int:
    """The budget whose duckdb_limit is `duckdb_memory_limit` (bytes): its inverse, for code that
    has only the connection."""
    if duckdb_memory_limit >= int(OUTSIDE_DUCKDB * DUCKDB_SHARE / (1 - DUCKDB_SHARE)):
        return int(duckdb_memory_limit / DUCKDB_SHARE)
    return duckdb_memory_limit + OUTSIDE_DUCKDB


def connect(path: Path | str, read_only: bool = False, memory_limit: str | None = None) -> duckdb.DuckDBPyConnection:
    """Open the warehouse; creates it (with every schema and staging/meta table) when writable.

    `memory_limit` (default: default_memory_limit()) is the run's budget: DuckDB keeps
    within duckdb_limit of it (DUCKDB_SHARE, less on a small budget) by spilling to its temp
    directory, `<warehouse>.tmp` beside the warehouse file."""
    con = duckdb.connect(str(path), read_only=read_only)
    con.execute("set TimeZone = 'UTC'")
    budget = parse_size(memory_limit or default_memory_limit())
    con.execute("set memory_limit = ?", [f"{duckdb_limit(budget) >> 20}MiB"])
    if not read_only:
        for name in DDL:
            run_sql_file(con, name)
    return con


@contextmanager
def unordered_writes(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Within the block, DuckDB need not keep row order in what it writes (preserve_insertion_order
    off), which takes far less memory on large tables; the setting is restored after."""
    order = con.execute("select current_setting('preserve_insertion_order')").fetchall()[0][0]
    con.execute("set preserve_insertion_order = false")
    try:
        yield
    finally:
        con.execute("set preserve_insertion_order = ?", [order])
