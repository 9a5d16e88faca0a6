"""Export core and marts as Parquet for dashboards, with a manifest.json.

Files are named <schema>.<table>.parquet; manifest.json lists each table's
file, columns and types, row count, and the run id, so a dashboard can check
what it reads.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import duckdb

from pipeline import __version__
from pipeline.ingest import quote_ident

EXPORTED_SCHEMAS = ("core", "marts")


def export_tables(con: duckdb.DuckDBPyConnection, out_dir: Path, run_id: str) -> dict:
    """Write every table of core and marts to out_dir; returns the manifest."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = con.execute(
        "select schema_name, table_name from duckdb_tables() where database_name = current_database() "
        "and schema_name in (select unnest(?)) order by schema_name, table_name",
        [list(EXPORTED_SCHEMAS)],
    ).fetchall()
    entries = []
    for schema_name, table in tables:
        name = f"{schema_name}.{table}"
        rel = con.sql(f"select * from {quote_ident(schema_name)}.{quote_ident(table)}")
        path = out_dir / f"{name}.parquet"
        rel.write_parquet(str(path), compression="zstd")
        rows = con.execute(f"select count(*) from {quote_ident(schema_name)}.{quote_ident(table)}").fetchall()[0][0]
        entries.append(
            {
                "table": name,
                "file": path.name,
                "rows": rows,
                "columns": [{"name": n, "type": str(t)} for n, t in zip(rel.columns, rel.types)],
            }
        )
    manifest = {
        "run_id": run_id,
        "created_at": datetime.now(timezone.utc).isoformat(),
        "package_version": __version__,
        "tables": entries,
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
