"""Pseudonymize customer identifiers in staging ([privacy] pseudonymize = true).

Runs right after ingest, on staging.events, staging.duplicates, staging.quarantine
and staging.customers, so that every later table (core, marts, views, Parquet,
GraphML, the HTML report) is built from pseudonyms only:

- every customer id, identifier value and identifier property value becomes its
  pseudonym: ``'p_'`` and the first 32 hex digits of HMAC-SHA256(key, value),
  where value is the id's UTF-8 text (docs/config.md, "privacy");
- the raw lines of quarantined and duplicate rows are withheld (NULL), and the
  quarantine's detail says so.

An UPDATE leaves the old values readable in the freed pages of the DuckDB file
until they are reused, so a warehouse that held raw ids is written afresh
(`rewrite_warehouse`) before it is published.

The same value gets the same pseudonym wherever it appears (customer id,
identifier of any type, customers file), so every join and count is what it is
without pseudonymization. The HMAC is computed in DuckDB SQL from its
``sha256``: the key's inner and outer pads are derived here, once, and bound as
BLOB parameters; the key itself is neither stored nor pasted into SQL.

A value that already has the pseudonym's form is left as it is, so applying
the step twice (or after an incremental ingest that adds rows to pseudonymized
ones) changes nothing that was already done.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path
from typing import Mapping, Sequence

import duckdb

from pipeline.config import Config, ConfigError, pseudonym_key_fix, pseudonym_key_problem

PREFIX = "p_"
HEX_DIGITS = 32  # 128 bits of the HMAC
PATTERN = "^p_[0-9a-f]{32}$"  # the form of a pseudonym
WITHHELD = "raw line withheld for privacy"
_BLOCK = 64  # SHA-256's block size in bytes (RFC 2104)
_BLANKS = "' ' || chr(9) || chr(10) || chr(13)"  # as ingest trims a cell


def read_key(config: Config) -> str:
    """The secret key from the environment variable named by `config.key_env`; ConfigError
    when it is missing, empty or too short (it may have vanished since the config was loaded)."""
    problem = pseudonym_key_problem(config.key_env)
    if problem:
        raise ConfigError(f"{config.path}: key 'privacy.key_env': {problem}. Fix: {pseudonym_key_fix(config.key_env)}")
    return os.environ[config.key_env]


def key_params(key: str) -> dict[str, bytes]:
    """The HMAC-SHA256 inner and outer pads of `key`, as named SQL parameters for `pseudonym_sql`."""
    block = key.encode("utf-8")
    if len(block) > _BLOCK:
        block = hashlib.sha256(block).digest()
    block = block.ljust(_BLOCK, b"\0")
    return {
        "pseudonym_ipad": bytes(b ^ 0x36 for b in block),
        "pseudonym_opad": bytes(b ^ 0x5C for b in block),
    }


def pseudonym_sql(expr: str) -> str:
    """SQL for the pseudonym of the VARCHAR expression `expr` (code, never config text), with the
    named parameters of `key_params`. NULL stays NULL; a value that is already a pseudonym stays."""
    hmac_hex = f"sha256($pseudonym_opad || unhex(sha256($pseudonym_ipad || encode({expr}))))"
    return (
        f"case when {expr} is null or regexp_full_match({expr}, '{PATTERN}') then {expr} "
        f"else '{PREFIX}' || left({hmac_hex}, {HEX_DIGITS}) end"
    )


def pseudonym(key: str, value: str) -> str:
    """The pseudonym of one value, in Python: to find a known customer in the outputs
    (for example to answer a data subject's request). The same as `pseudonym_sql`."""
    return PREFIX + hmac.new(key.encode("utf-8"), value.encode("utf-8"), hashlib.sha256).hexdigest()[:HEX_DIGITS]


def identifier_properties(config: Config) -> dict[str, tuple[str, ...]]:
    """Per source, the properties that are also its customer or identifier columns
    (their values are identifiers too, e.g. the sample's `handle` and `loyalty_card`)."""
    found = {}
    for source in config.sources:
        id_columns = {*source.customer_id, *(column for _, column in source.identifiers)}
        names = tuple(p for p in source.properties if p in id_columns)
        if names:
            found[source.name] = names
    return found


def _has_temp_table(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    return con.execute("select count(*) from duckdb_tables() where temporary and table_name = ?", [table]).fetchall()[0][0] > 0


def _is_raw(expr: str) -> str:
    return f"({expr} is not null and not regexp_full_match({expr}, '{PATTERN}'))"


def _pseudonymize_events(con: duckdb.DuckDBPyConnection, table: str, params: dict, properties: Mapping[str, Sequence[str]]) -> tuple[int, int, int]:
    """customer_id, identifiers and identifier properties of staging.events or staging.duplicates.
    Returns how many customer ids, identifier values and property values were replaced."""
    raw_identifier = f"len(list_filter(map_values(identifiers), lambda v: {_is_raw('v')}))"
    customer_ids, identifier_values = con.execute(
        f"select count(*) filter (where {_is_raw('customer_id')}), coalesce(sum({raw_identifier}), 0) from {table}"
    ).fetchall()[0]
    con.execute(
        f"""
        update {table}
        set customer_id = {pseudonym_sql('customer_id')},
            identifiers = map_from_entries(list_transform(map_entries(identifiers),
                              lambda e: {{'key': e.key, 'value': {pseudonym_sql('e.value')}}}))
        where {_is_raw('customer_id')} or {raw_identifier} > 0
        """,
        params,
    )
    property_values = 0
    entries = "map_entries(cast(properties as map(varchar, varchar)))"
    cleaned = f"nullif(trim(e.value, {_BLANKS}), '')"  # as ingest cleans an identifier
    is_target = f"(list_contains($names, e.key) and {_is_raw(cleaned)})"
    raw_properties = f"len(list_filter({entries}, lambda e: {is_target}))"
    for source, names in properties.items():  # a loop over the config's sources, not over rows
        where = {"names": list(names), "source": source}
        property_values += con.execute(
            f"select coalesce(sum({raw_properties}), 0) from {table} where source = $source", where
        ).fetchall()[0][0]
        con.execute(
            f"""
            update {table}
            set properties = to_json(map_from_entries(list_transform({entries}, lambda e: {{
                    'key': e.key,
                    'value': case when {is_target} then {pseudonym_sql(cleaned)} else e.value end}})))
            where source = $source and {raw_properties} > 0
            """,
            {**params, **where},
        )
    return int(customer_ids), int(identifier_values), int(property_values)


def pseudonymize(con: duckdb.DuckDBPyConnection, key: str, properties: Mapping[str, Sequence[str]] | None = None) -> dict:
    """Replace the customer identifiers in staging with keyed pseudonyms; withhold raw lines.

    `properties` names, per source, the properties whose values are identifiers
    (`identifier_properties(config)`). Runs in the caller's transaction. Returns
    how many values were replaced or withheld: customer ids of staging.events
    (`events`) and staging.duplicates (`duplicates`), identifier values and
    identifier property values (of both), ids of staging.customers (`customers`),
    and raw lines of staging.quarantine and staging.duplicates (`raw_lines_withheld`).
    """
    params = key_params(key)
    properties = properties or {}
    counts = dict(zip(("events", "identifier_values", "property_values"), _pseudonymize_events(con, "staging.events", params, properties)))
    duplicates, identifier_values, property_values = _pseudonymize_events(con, "staging.duplicates", params, properties)
    counts["duplicates"] = duplicates
    counts["identifier_values"] += identifier_values
    counts["property_values"] += property_values
    counts["customers"] = con.execute(
        f"update staging.customers set customer_id = {pseudonym_sql('customer_id')} where {_is_raw('customer_id')}",
        params,
    ).fetchall()[0][0]
    counts["raw_lines_withheld"] = con.execute(
        "update staging.duplicates set raw_line = null where raw_line is not null"
    ).fetchall()[0][0]
    counts["raw_lines_withheld"] += con.execute(
        """
        update staging.quarantine
        set raw_line = null,
            detail = case when detail is null or detail = '' then $note else detail || '; ' || $note end
        where raw_line is not null or detail is null or not ends_with(detail, $note)
        """,
        {"note": WITHHELD},
    ).fetchall()[0][0]
    if _has_temp_table(con, "_affected_customers"):
        # ingest's list of the customers to rebuild must name them as staging now does
        con.execute(f"update _affected_customers set customer_id = {pseudonym_sql('customer_id')}", params)
    return counts


def pseudonymize_staging(con: duckdb.DuckDBPyConnection, config: Config) -> dict:
    """`pseudonymize` with the key from the environment when [privacy] pseudonymize is on;
    nothing (an empty dict) when it is off. Call it right after ingest and load_customers."""
    if not config.pseudonymize:
        return {}
    return pseudonymize(con, read_key(config), identifier_properties(config))


def rewrite_warehouse(path: Path | str) -> None:
    """Write the (closed) DuckDB file at `path` afresh, with every schema, table, view, macro,
    constraint and row, and put the copy in its place: the values `pseudonymize` replaced would
    otherwise stay readable in the old file's freed pages. Call it on a new warehouse before it
    is published (a symbolic link is followed: the file it points to is replaced)."""
    path = Path(path).resolve()
    fresh = path.with_name(path.name + ".fresh")
    fresh.unlink(missing_ok=True)
    con = duckdb.connect()
    try:
        con.execute("attach ? as old_warehouse (read_only)", [str(path)])
        con.execute("attach ? as fresh_warehouse", [str(fresh)])
        con.execute("copy from database old_warehouse to fresh_warehouse")
    finally:
        con.close()
    os.replace(fresh, path)
