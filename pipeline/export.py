"""Export core, marts and the analyst views as Parquet for dashboards, with a manifest.json.

Layout (zstd-compressed Parquet):

- `<schema>.<table>.parquet`: one file per table, for every table and view except
- the event-grain tables (PARTITIONED: core.steps and core.moves), where the same name is
  a folder of Hive partitions by the UTC date their rows happened (as Spark writes them):
  `core.steps.parquet/date=2026-06-01/data_0.parquet`. The partition column `date` (DATE) is in
  the folder names, not in the files: readers with Hive partitioning (DuckDB, pyarrow,
  Spark, Trino, Evidence, Superset through DuckDB) give it back as a column.

Which tables are partitioned is fixed, not decided by their row count, so a dashboard's
paths never change as the data grows; the other tables grow with journeys and segments,
not with events, and stay one file each (see docs/bi.md).

manifest.json lists, for each table, its path (`path`, and the same in `file`), whether
and how it is partitioned, its partitions with their row counts, its row count, columns
and types, and the run id, so a dashboard can check what it reads.

Nothing from the config is pasted into SQL: files are written with DuckDB's relation API
(`write_parquet`), which takes the path as a value; table names come from the catalog and
are quoted.
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

import duckdb

from pipeline import __version__
from pipeline.ingest import quote_ident

EXPORTED_SCHEMAS = ("core", "marts", "views")
COMPRESSION = "zstd"
PARTITION_COLUMN = "date"
NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"  # Hive's name for a null value; DuckDB and pyarrow read it as null

# The event-grain tables and how each row gets its partition date (UTC): a step on the date
# of its event; a move on the date of the event that makes it (core.moves.ts: the event
# entered, or the repeated event of a self-loop; for START the journey's first event, for
# the terminal move its last). Both read their own table alone: dating a move through a join
# to core.steps ran out of DuckDB's memory on 100M events.
PARTITIONED = {
    "core.steps": f"select *, cast(timezone('UTC', ts) as date) as {PARTITION_COLUMN} from core.steps",
    "core.moves": f"select *, cast(timezone('UTC', ts) as date) as {PARTITION_COLUMN} from core.moves",
}
PARTITION_RULE = (
    "core.steps and core.moves (the event-grain tables) are always Hive-partitioned by the UTC date "
    "their rows happened (`date`: a step's ts; a move's event: the one entered, the journey's first "
    "for START, its last for the terminal move); every other table is one file, whatever its size"
)


class ExportError(RuntimeError):
    """The exported files do not hold the warehouse's rows."""


def exported_tables(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    """(schema, table) of every table and view the export writes, in name order."""
    return con.execute(
        "select table_schema, table_name from information_schema.tables "
        "where table_catalog = current_database() and table_schema in (select unnest(?)) "
        "order by table_schema, table_name",
        [list(EXPORTED_SCHEMAS)],
    ).fetchall()


def _count(con: duckdb.DuckDBPyConnection, source: str) -> int:
    return con.execute(f"select count(*) from {source}").fetchall()[0][0]


def _write_partitioned(con: duckdb.DuckDBPyConnection, name: str, source: str, folder: Path) -> list[dict]:
    """Write `name` as Hive partitions by date into `folder`; returns its partitions."""
    rel = con.sql(PARTITIONED[name])
    rel.write_parquet(str(folder), compression=COMPRESSION, partition_by=[PARTITION_COLUMN])
    counts = rel.aggregate(f"{PARTITION_COLUMN}, count(*) as rows", PARTITION_COLUMN).order(PARTITION_COLUMN).fetchall()
    if not counts:
        # An empty table still gets a readable file with its columns, in the null partition,
        # so readers see the schema instead of "no files found".
        empty = folder / f"{PARTITION_COLUMN}={NULL_PARTITION}"
        empty.mkdir(parents=True, exist_ok=True)
        con.sql(f"select * from {source} limit 0").write_parquet(str(empty / "data_0.parquet"), compression=COMPRESSION)
    return [
        {PARTITION_COLUMN: value.isoformat(), "path": f"{folder.name}/{PARTITION_COLUMN}={value.isoformat()}", "rows": rows}
        for value, rows in counts
    ]


def export_tables(con: duckdb.DuckDBPyConnection, out_dir: Path, run_id: str) -> dict:
    """Write every table and view of core, marts and views to out_dir; returns the manifest."""
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for schema_name, table in exported_tables(con):
        name = f"{schema_name}.{table}"
        source = f"{quote_ident(schema_name)}.{quote_ident(table)}"
        rows = _count(con, source)
        partitions = None
        path = out_dir / f"{name}.parquet"
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        if name in PARTITIONED:
            partitions = _write_partitioned(con, name, source, path)
            written = sum(p["rows"] for p in partitions)
            if written != rows:
                raise ExportError(f"{name}: {rows} rows in the warehouse but {written} in its date partitions")
            rel = con.sql(PARTITIONED[name])
        else:
            rel = con.sql(f"select * from {source}")
            rel.write_parquet(str(path), compression=COMPRESSION)
        entry = {
            "table": name,
            "path": path.name,
            "file": path.name,  # the same relative path (a file, or a folder of partitions); kept for older readers
            "partitioned_by": [PARTITION_COLUMN] if partitions is not None else None,
            "rows": rows,
            "columns": [{"name": n, "type": str(t)} for n, t in zip(rel.columns, rel.types)],
            "run_id": run_id,
        }
        if partitions is not None:
            entry["partitions"] = partitions
        entries.append(entry)
    manifest = {
        "run_id": run_id,
        "created_at": datetime.now(timezone.utc).isoformat(),
        "package_version": __version__,
        "format": "parquet",
        "compression": COMPRESSION,
        "partitioning": {"style": "hive", "column": PARTITION_COLUMN, "tables": sorted(PARTITIONED), "rule": PARTITION_RULE},
        "tables": entries,
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
