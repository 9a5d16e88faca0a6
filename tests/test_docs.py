"""Every table and column of the warehouse is documented in a contract beside its SQL
(sql/<layer>/<table>.md), docs/warehouse.md is generated from those contracts, and the
README's command reference matches `--help`."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from conftest import JOURNEYS_BIN, ROOT, SAMPLE, copy_config

spec = importlib.util.spec_from_file_location("gen_warehouse", ROOT / "docs" / "gen_warehouse.py")
gen_warehouse = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gen_warehouse)

CONFIGURED = "(segment columns)"  # staging.customers: the columns named in [customers] segments


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("docs")
    config = copy_config(SAMPLE / "journeys.toml", out)
    proc = subprocess.run([str(JOURNEYS_BIN), "run", "--config", str(config)], capture_output=True, text=True, env={"CI": "true"})
    assert proc.returncode == 0, proc.stderr
    return out / "build" / "journeys.duckdb"


def undocumented(db: Path) -> list[str]:
    """Every (table, column, type) of the warehouse that no contract describes, and every
    contract column the warehouse lacks."""
    documented = {c["table"]: {row[0]: row[1] for row in c["columns"]} for c in gen_warehouse.contracts()}
    con = duckdb.connect(str(db), read_only=True)
    actual: dict[str, dict[str, str]] = {}
    for schema, table, column, dtype in con.execute(
        "select schema_name, table_name, column_name, data_type from duckdb_columns() "
        "where database_name = current_database() and schema_name in ('staging', 'core', 'marts', 'meta', 'views') "
        "order by schema_name, table_name, column_index"
    ).fetchall():
        actual.setdefault(f"{schema}.{table}", {})[column] = dtype
    con.close()
    problems = []
    for table, columns in actual.items():
        if table not in documented:
            problems.append(f"{table}: no contract")
            continue
        for column, dtype in columns.items():
            doc = documented[table]
            if column in doc:
                if doc[column] != dtype:
                    problems.append(f"{table}.{column}: contract says {doc[column]}, warehouse has {dtype}")
            elif CONFIGURED not in doc:
                problems.append(f"{table}.{column}: not in the contract")
        for column in documented[table]:
            if column not in columns and column != CONFIGURED:
                problems.append(f"{table}.{column}: in the contract but not in the warehouse")
    return problems


def test_every_table_and_column_is_documented(warehouse):
    """Each table of staging, core, marts and meta has a contract listing exactly its columns and types."""
    assert undocumented(warehouse) == []


def test_a_table_without_docs_is_caught(warehouse, tmp_path):
    """The check fails when a table (or a column) is added to the warehouse without a contract."""
    copy = tmp_path / "w.duckdb"
    copy.write_bytes(warehouse.read_bytes())
    con = duckdb.connect(str(copy))
    con.execute("create table marts.undocumented_table as select 1 as a")
    con.execute("alter table marts.funnel add column undocumented_column integer")
    con.close()
    problems = undocumented(copy)
    assert "marts.undocumented_table: no contract" in problems
    assert "marts.funnel.undocumented_column: not in the contract" in problems


def test_generated_warehouse_docs_are_up_to_date():
    """docs/warehouse.md is what docs/gen_warehouse.py makes from the contracts (regenerate it after editing one)."""
    proc = subprocess.run([sys.executable, str(ROOT / "docs" / "gen_warehouse.py"), "--check"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
