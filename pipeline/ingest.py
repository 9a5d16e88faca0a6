"""Sources -> staging.events + staging.quarantine, with DuckDB's readers.

Each configured source is read file by file with DuckDB (CSV with a reject
table, JSON lines as text checked with `json_valid`, Parquet), mapped to the
canonical event of DESIGN.md, validated, deduplicated and loaded. Every input
row ends in exactly one of: loaded, duplicate, quarantined (with its reason);
the counts per file go to meta.ingest_files.

No config string is pasted into SQL: values are bound parameters, CSV columns
are renamed to positional names (h0, h1, ...) through the reader's `columns`
argument, and Parquet column names are quoted.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import logging
import os
import re
from datetime import datetime, timedelta, timezone
from typing import Any

import duckdb

from pipeline import warehouse
from pipeline.config import Config, ConfigError, Source

log = logging.getLogger(__name__)

# a zone only counts after a time of day (so the date 2026-03-01 has none)
_TZ_SUFFIX = r"[0-9]:[0-9]{2}(:[0-9]{2}([.,][0-9]*)?)?\s*(Z|z|[+-][0-9]{2}(:?[0-9]{2})?)$"
_BLANKS = "' ' || chr(9) || chr(10) || chr(13)"  # what trim() strips: spaces, tabs, line ends


def quote_ident(name: str) -> str:
    """A SQL identifier, double-quoted with embedded quotes doubled."""
    return '"' + name.replace('"', '""') + '"'


@dataclasses.dataclass
class FileCount:
    source: str
    source_file: str
    bytes: int
    sha256: str
    rows_read: int = 0
    loaded: int = 0
    duplicates: int = 0
    quarantined: int = 0


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def csv_header(path: str, delimiter: str, encoding: str = "utf-8") -> list[str]:
    """The header names of a CSV file (first record), BOM stripped."""
    python_encoding = {"utf-8": "utf-8-sig", "utf-16": "utf-16", "latin-1": "latin-1"}[encoding]
    with open(path, newline="", encoding=python_encoding, errors="replace") as f:
        try:
            return next(csv.reader(f, delimiter=delimiter))
        except StopIteration:
            return []


def check_source_columns(source: Source, path: str) -> None:
    """Stop with a ConfigError when a file lacks a column the source's mapping names."""
    if source.format == "jsonl":
        return  # JSON keys may be absent per line: a missing value is judged per row
    if source.format == "csv":
        header = csv_header(path, source.delimiter, source.encoding)
        if not header:
            return  # an empty file has no rows to map
    else:
        header = [r[0] for r in duckdb.execute("select name from parquet_schema(?)", [path]).fetchall()]
    missing = [c for c in source.columns() if c not in header]
    if missing:
        raise ConfigError(
            f"{path}, line 1: source '{source.name}' maps column(s) {', '.join(repr(m) for m in missing)}, "
            f"which the file does not have (it has: {', '.join(header) or 'no columns'}). "
            f"Fix: correct the column names in the [[sources]] table named '{source.name}' of the config, or the file"
        )


# --------------------------------------------------------------------------- raw reading


def _raw_columns(n: int) -> str:
    return ", ".join(f"c{i} varchar" for i in range(n))


def _read_jsonl(con: duckdb.DuckDBPyConnection, source: Source, path: str) -> None:
    cols = source.columns()
    # malformed lines read as '{}' so the extraction never sees invalid JSON
    extracts = ", ".join(f"json_extract_string(case when ok then raw_line else '{{}}' end, ?) as c{i}" for i in range(len(cols)))
    paths = ['$."' + c.replace("\\", "\\\\").replace('"', '\\"') + '"' for c in cols]
    con.execute(
        f"""
        insert into _raw
        with lines as (
            select ordinality as source_row, raw_line
            from read_csv(?, columns = {{'raw_line': 'VARCHAR'}}, header = false, delim = ?, quote = '',
                          escape = '', auto_detect = false, strict_mode = false, null_padding = true, encoding = ?,
                          max_line_size = 67108864)
                 with ordinality
        ),
        checked as (
            select source_row, raw_line,
                   case when json_valid(raw_line) then json_type(raw_line) = 'OBJECT' else false end as ok
            from lines
            where raw_line is not null and trim(raw_line) <> ''
        )
        select ? as source_file, source_row, raw_line, not ok as malformed,
               case when not ok then 'not a JSON object' end as detail, {extracts}
        from checked
        """,
        [path, "\x1e", source.encoding, path, *paths],
    )


def _read_csv(con: duckdb.DuckDBPyConnection, source: Source, path: str) -> None:
    header = csv_header(path, source.delimiter, source.encoding)
    if not header:
        return
    positional = {f"h{j}": "VARCHAR" for j in range(len(header))}
    index = {name: j for j, name in enumerate(header)}
    picks = ", ".join(f"p.h{index[c]} as c{i}" for i, c in enumerate(source.columns()))
    con.execute("drop table if exists _rejects; drop table if exists _reject_scans")
    con.execute(
        """
        create temp table _parsed as
        select * from read_csv(?, columns = ?, header = true, delim = ?, quote = '"', escape = '"',
                               auto_detect = false, store_rejects = true, encoding = ?, max_line_size = 67108864,
                               rejects_table = '_rejects', rejects_scan = '_reject_scans')
             with ordinality
        """,
        [path, positional, source.delimiter, source.encoding],
    )
    con.execute(
        """
        create temp table _lines as
        select ordinality as line, raw_line
        from read_csv(?, columns = {'raw_line': 'VARCHAR'}, header = false, delim = ?, quote = '',
                      escape = '', auto_detect = false, strict_mode = false, null_padding = true, encoding = ?,
                          max_line_size = 67108864)
             with ordinality
        """,
        [path, "\x1e", source.encoding],
    )
    parsed, data_lines = con.execute(
        """
        select (select count(*) from _parsed),
               (select count(*) from _lines where line > 1 and raw_line is not null and trim(raw_line) <> ''
                  and line not in (select line from _rejects))
        """
    ).fetchall()[0]
    if parsed == data_lines:
        # one record a line: the k-th parsed record is the k-th good data line
        join = """
            good_lines as (
                select line, raw_line, row_number() over (order by line) as k
                from _lines
                where line > 1 and raw_line is not null and trim(raw_line) <> ''
                  and line not in (select line from _rejects)
            )
            select ? as source_file, g.line as source_row, g.raw_line, false, null, {picks}
            from _parsed p join good_lines g on g.k = p.ordinality
        """
    else:
        # quoted fields span lines: rows are numbered by record (header = 1), documented in docs/metrics.md
        log.warning("%s: quoted fields span lines; source_row counts records, not lines", path)
        join = """
            good_lines as (select 1)
            select ? as source_file, p.ordinality + 1 as source_row,
                   concat_ws(?, {cols}), false, null, {picks}
            from _parsed p
        """.replace("{cols}", ", ".join(f"p.h{j}" for j in range(len(header))))
    params = [path] if parsed == data_lines else [path, source.delimiter]
    con.execute(f"insert into _raw with {join.format(picks=picks)}", params)
    con.execute(
        f"""
        insert into _raw
        select ? as source_file, r.line as source_row, any_value(l.raw_line) as raw_line, true,
               string_agg(distinct r.error_type, '; ') as detail, {", ".join("null" for _ in source.columns())}
        from _rejects as r
        left join _lines as l using (line)
        group by r.line
        """,
        [path],
    )
    con.execute("drop table _parsed; drop table _lines")


def _read_parquet(con: duckdb.DuckDBPyConnection, source: Source, path: str, first: int, stop: int) -> None:
    """Rows first <= file_row_number < stop of a Parquet file (the reader skips the row groups
    outside the range)."""
    picks = ", ".join(f"cast(t.{quote_ident(c)} as varchar) as c{i}" for i, c in enumerate(source.columns()))
    con.execute(
        f"""
        insert into _raw
        select ? as source_file, t.file_row_number + 1 as source_row,
               cast(to_json(t) as varchar) as raw_line, false, null, {picks}
        from read_parquet(?, file_row_number = true) t
        where t.file_row_number >= ? and t.file_row_number < ?
        """,
        [path, path, first, stop],
    )


def parquet_rows(path: str) -> int:
    """The number of rows of a Parquet file, from its footer."""
    return duckdb.execute("select num_rows from parquet_file_metadata(?)", [path]).fetchall()[0][0]


# --------------------------------------------------------------------------- canonical mapping


class Params(dict):
    """Named SQL parameters: `add(value)` returns a placeholder ($p0, $p1, ...) bound to value."""

    def add(self, value: Any) -> str:
        name = f"p{len(self)}"
        self[name] = value
        return f"${name}"


def _clean(col: str) -> str:
    """The cell trimmed of blanks, or null when nothing is left. trim() with a set of
    characters is slow, so it only runs on cells that start or end with a blank."""
    return (
        f"case when ascii({col}) in (9, 10, 13, 32) or ascii(right({col}, 1)) in (9, 10, 13, 32) "
        f"then nullif(trim({col}, {_BLANKS}), '') else nullif({col}, '') end"
    )


def _value_sql(spec_column: str | None, spec_value: str | None, cols: list[str], params: Params) -> str:
    if spec_column is not None:
        return _clean(f"r.c{cols.index(spec_column)}")
    return f"cast({params.add(spec_value)} as varchar)"


def _snake(expr: str) -> str:
    """Normalise an event name to snake_case: split camelCase, lowercase, runs of anything but letters
    (of any script) and digits to _."""
    return (
        "nullif(trim(both '_' from regexp_replace(lower(regexp_replace("
        f"{expr}, '([a-z0-9])([A-Z])', '\\1_\\2', 'g')), '[^\\p{{L}}\\p{{N}}]+', '_', 'g')), '')"
    )


def _timestamp_sql(source: Source, cols: list[str], params: Params) -> tuple[str, str, str]:
    """SQL for (raw text, parsed TIMESTAMPTZ or null, zone-is-valid flag)."""
    spec = source.timestamp
    raw = f"regexp_replace({_clean(f'r.c{cols.index(spec.column)}')}, 'z$', 'Z')"  # DuckDB reads only an upper-case Z
    zone_ok = "true"
    fmt = spec.format
    if fmt == "epoch":
        parsed_utc = f"try(to_timestamp(try_cast({raw} as double)))"
        return raw, parsed_utc, zone_ok
    if fmt == "epoch_ms":
        parsed_utc = f"try(to_timestamp(try_cast({raw} as double) / 1000.0))"
        return raw, parsed_utc, zone_ok
    if fmt == "iso":
        with_zone = f"try_cast({raw} as timestamptz)"
        naive = f"try_cast({raw} as timestamp)"
        has_zone = f"regexp_matches({raw}, '{_TZ_SUFFIX}')"
    else:
        with_zone = naive = f"try_strptime({raw}, {params.add(fmt)})"
        has_zone = "true" if "%z" in fmt or "%Z" in fmt else "false"
    if spec.timezone_column:
        tz = _clean(f"r.c{cols.index(spec.timezone_column)}")
        zone_ok = f"({tz} in (select name from pg_timezone_names()))"
        local = f"case when {zone_ok} then timezone({tz}, cast({naive} as timestamp)) end"
    elif spec.timezone:
        local = f"timezone({params.add(spec.timezone)}, cast({naive} as timestamp))"
    else:
        local = f"cast(cast({naive} as timestamp) as timestamptz)"  # naive times are UTC
    if has_zone == "true":
        parsed = f"cast({with_zone} as timestamptz)"
    elif has_zone == "false":
        parsed = local
    else:
        parsed = f"case when {has_zone} then {with_zone} else {local} end"
    return raw, parsed, zone_ok


def _canonical_sql(source: Source, config: Config, params: Params) -> str:
    """One SELECT over _raw giving every canonical column plus `reason` (null = valid)."""
    cols = source.columns()
    customers = [_clean(f"r.c{cols.index(c)}") for c in source.customer_id]
    customer = customers[0] if len(customers) == 1 else f"coalesce({', '.join(customers)})"
    ts_raw, ts, zone_ok = _timestamp_sql(source, cols, params)
    channel = f"lower({_value_sql(source.channel.column, source.channel.value, cols, params)})"
    event_raw = _value_sql(source.event_type.column, source.event_type.value, cols, params)
    prefix = params.add(source.event_type.prefix)
    # the regular expressions of _snake run once per distinct name, not once per row
    names = f"(select raw, {_snake('raw')} as name from (select distinct {event_raw} as raw from _raw r))"
    event_type = f"case when n.name is not null then cast({prefix} as varchar) || n.name end"
    keys = source.natural_key or tuple(cols)
    hashed = "md5(concat_ws(chr(31), " + ", ".join(f"coalesce({_clean(f'r.c{cols.index(k)}')}, '')" for k in keys) + "))"
    # a row whose id cell is empty keeps a deterministic id from its content
    event_id_raw = f"coalesce({_clean(f'r.c{cols.index(source.event_id)}')}, {hashed})" if source.event_id else hashed
    event_id = f"cast({params.add(source.name)} as varchar) || ':' || {event_id_raw}"
    entries = []
    for id_type, col in source.identifiers:
        entries.append(f"{{'k': cast({params.add(id_type)} as varchar), 'v': {_clean(f'r.c{cols.index(col)}')}}}")
    identifiers = (
        f"map_from_entries(list_filter([{', '.join(entries)}], lambda e: e.v is not null))"
        if entries
        else "cast(map() as map(varchar, varchar))"
    )
    prop_parts = []
    for p in source.properties:
        prop_parts.append(f"cast({params.add(p)} as varchar), r.c{cols.index(p)}")
    properties = f"json_object({', '.join(prop_parts)})" if prop_parts else "cast('{}' as json)"
    return f"""
        select
            {event_id} as event_id,
            {customer} as customer_id,
            {identifiers} as identifiers,
            {ts} as ts,
            {channel} as channel,
            {event_type} as event_type,
            r.source_file, r.source_row,
            {properties} as properties,
            r.raw_line,
            r.malformed, r.detail,
            {ts_raw} as ts_raw,
            {zone_ok} as zone_ok,
            list_contains(cast({params.add(list(config.channels))} as varchar[]), {channel}) as channel_ok,
            cast({params.add(config.min_timestamp)} as timestamptz) as min_ts,
            cast({params.add(_run_limit(config))} as timestamptz) as max_ts
        from _raw r
        left join {names} as n on n.raw = {event_raw}
    """


def _run_limit(config: Config) -> datetime:
    return datetime.now(timezone.utc) + timedelta(seconds=config.max_future)


_REASON = """
    case
        when malformed then 'malformed_line'
        when customer_id is null then 'missing_customer'
        when not zone_ok then 'unknown_timezone'
        when ts is null then 'unparseable_timestamp'
        when ts < min_ts or ts > max_ts then 'timestamp_out_of_range'
        when channel is null or not channel_ok then 'unknown_channel'
        when event_type is null then 'missing_event_type'
    end
"""


def _unreadable(source: Source, path: str, error: Exception) -> Exception:
    """A file DuckDB cannot decode is a problem of the file or its config: say where and what to do."""
    text = str(error)
    match = re.search(r"Line: (\d+)", text)
    where = f"{path}" + (f", line {match.group(1)}" if match else "")
    if "unicode" in text.lower() or "utf-8" in text.lower():
        return ConfigError(
            f"{where}: the file is not valid {source.encoding} text. Fix: set encoding = \"latin-1\" (or \"utf-16\") "
            f"in the [[sources]] table named '{source.name}' if that is the file's encoding, or re-save the file as UTF-8"
        )
    if "line size" in text.lower() or "maximum line" in text.lower():
        return ConfigError(f"{where}: a line is longer than 64 MiB, the most journeys reads. Fix: remove or split that line in the file")
    return ConfigError(f"{where}: the file cannot be read as {source.format}: {text.splitlines()[0]}. Fix: check the file and the source's format and delimiter")


CANONICAL = "event_id, customer_id, identifiers, ts, channel, event_type, source, source_file, source_row, properties, batch_id, content_hash"


def _settle(con: duckdb.DuckDBPyConnection, batch_id: str) -> None:
    """Decide every event id in _ids again from all its valid rows: those in staging.events,
    staging.duplicates and _new (this run's rows). The earliest row by (file, line) wins and
    is in staging.events; the others go to staging.duplicates, and those whose content
    differs from the winner's are also quarantined as duplicate_event_id. The customers of
    every row involved are added to _affected_customers."""
    con.execute(
        f"""
        create or replace temp table _candidates as
        select {CANONICAL}, cast(null as varchar) as raw_line from staging.events where event_id in (select event_id from _ids)
        union all
        select {CANONICAL}, raw_line from staging.duplicates where event_id in (select event_id from _ids)
        union all
        select {CANONICAL}, raw_line from _new
        """
    )
    con.execute(
        """
        create or replace temp table _ranked as
        select *,
               row_number() over w as nth,
               first(content_hash) over (w rows between unbounded preceding and unbounded following) as first_hash
        from _candidates
        window w as (partition by event_id order by source_file, source_row)
        """
    )
    con.execute(
        """
        delete from staging.events where event_id in (select event_id from _ids);
        delete from staging.duplicates where event_id in (select event_id from _ids);
        delete from staging.quarantine where reason = 'duplicate_event_id' and event_id in (select event_id from _ids);
        insert into _affected_customers select distinct customer_id from _candidates;
        """
    )
    con.execute(f"insert into staging.events by name select {CANONICAL} from _ranked where nth = 1")
    con.execute(
        f"insert into staging.duplicates by name select {CANONICAL}, raw_line, content_hash <> first_hash as is_conflict "
        "from _ranked where nth > 1"
    )
    con.execute(
        """
        insert into staging.quarantine by name
        select source, source_file, source_row, raw_line, 'duplicate_event_id' as reason,
               'event id ' || event_id || ' already loaded with different content' as detail,
               coalesce(batch_id, ?) as batch_id, event_id
        from _ranked where nth > 1 and content_hash <> first_hash
        """,
        [batch_id],
    )
    con.execute("drop table _candidates; drop table _ranked")


def withdraw_files(con: duckdb.DuckDBPyConnection, files: list[str], batch_id: str) -> None:
    """Take the rows of `files` (changed or removed inputs) out of staging, and settle their
    event ids again from the rows that remain (a duplicate in another file may now win)."""
    if not files:
        return
    con.execute("create temp table if not exists _affected_customers (customer_id varchar)")
    con.execute(
        """
        create or replace temp table _ids as
        select distinct event_id from staging.events where source_file in (select unnest(?))
        union
        select distinct event_id from staging.duplicates where source_file in (select unnest(?))
        """,
        [files, files],
    )
    con.execute("create or replace temp table _withdrawn as select unnest(?) as source_file", [files])
    con.execute(
        """
        insert into _affected_customers
        select customer_id from staging.events where source_file in (select source_file from _withdrawn)
        union all
        select customer_id from staging.duplicates where source_file in (select source_file from _withdrawn);
        delete from staging.events where source_file in (select source_file from _withdrawn);
        delete from staging.duplicates where source_file in (select source_file from _withdrawn);
        delete from staging.quarantine where source_file in (select source_file from _withdrawn);
        drop table _withdrawn;
        """
    )
    con.execute(f"create or replace temp table _new as select {CANONICAL}, cast(null as varchar) as raw_line from staging.events where false")
    _settle(con, batch_id)
    con.execute("drop table _ids; drop table _new")


DEFAULT_BATCH_ROWS = 1_000_000
BATCH_ROWS_ENV = "JOURNEYS_INGEST_BATCH_ROWS"


def batch_rows_setting() -> int:
    """Rows per ingest batch: JOURNEYS_INGEST_BATCH_ROWS when set (tests force tiny batches), else
    DEFAULT_BATCH_ROWS. Memory of a batch is bounded by it; the result does not depend on it."""
    value = os.environ.get(BATCH_ROWS_ENV)
    if not value:
        return DEFAULT_BATCH_ROWS
    try:
        rows = int(value)
    except ValueError:
        rows = 0
    if rows < 1:
        raise ConfigError(f"{BATCH_ROWS_ENV}={value!r} is not a positive whole number. Fix: set it to e.g. 1000000, or unset it")
    return rows


def _raw_table(con: duckdb.DuckDBPyConnection, name: str, n: int) -> None:
    con.execute(
        f"create or replace temp table {name} (source_file varchar, source_row bigint, raw_line varchar, "
        f"malformed boolean, detail varchar, {_raw_columns(n)})"
    )


def _read(con: duckdb.DuckDBPyConnection, source: Source, path: str, *rows: int) -> None:
    """Read a file (or, for Parquet, a range of its rows) into _raw; a file DuckDB cannot
    decode is a ConfigError naming it."""
    reader = {"csv": _read_csv, "jsonl": _read_jsonl, "parquet": _read_parquet}[source.format]
    try:
        reader(con, source, path, *rows)
    except duckdb.InvalidInputException as e:
        raise _unreadable(source, path, e) from None


def _batches(con: duckdb.DuckDBPyConnection, source: Source, path: str, batch_rows: int):
    """Fill _raw with one batch of the file's rows at a time (yielding after each): a Parquet
    file by ranges of row numbers read straight from the file; a CSV or JSON lines file is read
    once (its line numbering needs the whole file) into _file, then cut by ranges of source_row."""
    cols = source.columns()
    if source.format == "parquet":
        total = parquet_rows(path)
        for first in range(0, max(total, 1), batch_rows):
            _raw_table(con, "_raw", len(cols))
            _read(con, source, path, first, first + batch_rows)
            yield
        return
    _raw_table(con, "_raw", len(cols))
    _read(con, source, path)
    total = con.execute("select count(*) from _raw").fetchall()[0][0]
    if total <= batch_rows:
        yield
        return
    con.execute("alter table _raw rename to _file")
    try:
        bounds = [r[0] for r in con.execute(
            "select source_row from (select source_row, row_number() over (order by source_row) - 1 as k from _file) "
            "where k % ? = 0 order by source_row", [batch_rows]).fetchall()]
        for i, first in enumerate(bounds):
            stop = bounds[i + 1] if i + 1 < len(bounds) else None
            con.execute(
                "create or replace temp table _raw as select * from _file where source_row >= ? and (? or source_row < ?)",
                [first, stop is None, stop or 0],
            )
            yield
    finally:
        con.execute("drop table if exists _file")


def _load_batch(con: duckdb.DuckDBPyConnection, source: Source, canonical: str, params: Params, batch_id: str) -> list[tuple[str, int]]:
    """Validate the rows in _raw: the invalid ones go to staging.quarantine, the valid ones are
    appended to staging.events (settle_source then settles the ids met more than once).
    Returns the rows read per file."""
    con.execute(f"create or replace temp table _canon as select *, {_REASON} as reason from ({canonical})", params)
    con.execute(
        """
        insert into staging.quarantine by name
        select ? as source, source_file, source_row, raw_line, reason,
               case reason
                   when 'malformed_line' then detail
                   when 'unparseable_timestamp' then 'timestamp ' || coalesce(chr(39) || ts_raw || chr(39), 'missing')
                   when 'timestamp_out_of_range' then 'timestamp ' || cast(ts as varchar)
                   else null
               end as detail, ? as batch_id
        from _canon where reason is not null
        """,
        [source.name, batch_id],
    )
    con.execute(
        """
        insert into staging.events by name
        select event_id, customer_id, identifiers, ts, channel, event_type, cast($source_name as varchar) as source,
               source_file, source_row, properties, cast($batch_id as varchar) as batch_id,
               md5(coalesce(raw_line, '')) as content_hash
        from _canon where reason is null;
        """,
        {"source_name": source.name, "batch_id": batch_id},
    )
    con.execute("insert into _affected_customers select distinct customer_id from _canon where reason is null")
    read = con.execute("select source_file, count(*) from _canon group by all").fetchall()
    con.execute("drop table _canon; drop table _raw")
    return read


def settle_source(con: duckdb.DuckDBPyConnection, source: Source, batch_rows: int, batch_id: str) -> None:
    """Settle the event ids of `source` held more than once in staging.events (the batches
    append every valid row there): _settle keeps the earliest row and moves the others to
    staging.duplicates. The raw lines of this run's rows that lost are read again from their
    files, so staging is the same as if every row had been settled with its raw line."""
    con.execute(
        "create or replace temp table _ids as select event_id from staging.events where source = ? "
        "group by event_id having count(*) > 1",
        [source.name],
    )
    if not con.execute("select count(*) from _ids").fetchall()[0][0]:
        con.execute("drop table _ids")
        return
    con.execute(f"create or replace temp table _new as select {CANONICAL}, cast(null as varchar) as raw_line from staging.events where false")
    _settle(con, batch_id)
    con.execute("drop table _ids; drop table _new")
    lost = [r[0] for r in con.execute(
        "select distinct source_file from staging.duplicates where source = ? and batch_id = ? and raw_line is null order by 1",
        [source.name, batch_id]).fetchall()]
    for path in lost:
        for _ in _batches(con, source, path, batch_rows):
            for table, which in (("staging.duplicates", "true"), ("staging.quarantine", "d.reason = 'duplicate_event_id'")):
                con.execute(
                    f"""
                    update {table} as d set raw_line = r.raw_line
                    from _raw as r
                    where d.source_file = r.source_file and d.source_row = r.source_row
                      and d.raw_line is null and d.batch_id = ? and d.source = ? and {which}
                    """,
                    [batch_id, source.name],
                )
            con.execute("drop table _raw")


def ingest(
    con: duckdb.DuckDBPyConnection, config: Config, batch_id: str, progress=None, files: set[str] | None = None,
    batch_rows: int | None = None,
) -> list[FileCount]:
    """Load sources of `config` into staging.events, staging.duplicates and staging.quarantine.

    With `files` None, staging is emptied and every file is read (a full load);
    otherwise only those files are read and added to what staging holds (the
    incremental case: the caller has withdrawn changed files first). Either way the
    event ids met are settled again over all their rows, so the result equals a full
    load of the same files. The customers whose rows were touched are collected in the
    temp table _affected_customers. Returns the counts per file read; rows_read =
    loaded + duplicates + quarantined holds for each.

    Files are read in order of their path, in batches of at most `batch_rows` rows (default
    batch_rows_setting()); each batch is validated and its valid rows appended to
    staging.events, so memory stays bounded. Then, once per source, the ids held more than
    once are settled (settle_source): no ranking for the ids met once, no scan of staging
    per batch, and the result is the same for any batch size.
    """
    con.execute("set TimeZone = 'UTC'")
    validate_inputs(config)
    batch_rows = batch_rows or batch_rows_setting()
    con.execute("create temp table if not exists _affected_customers (customer_id varchar)")
    if files is None:
        con.execute("delete from staging.events; delete from staging.duplicates; delete from staging.quarantine")
    counts: list[FileCount] = []
    with warehouse.unordered_writes(con):  # staging is a set: no row order to keep
        _ingest_sources(con, config, batch_id, progress, files, batch_rows, counts)
    _count_outcomes(con, counts)
    return counts


def _ingest_sources(con: duckdb.DuckDBPyConnection, config: Config, batch_id: str, progress, files: set[str] | None,
                    batch_rows: int, counts: list[FileCount]) -> None:
    for source in config.sources:
        params = Params()
        canonical = _canonical_sql(source, config, params)
        to_read = sorted(p for p in source.files if files is None or p in files)
        for path in to_read:
            fc = FileCount(source.name, path, os.path.getsize(path), file_sha256(path))
            counts.append(fc)
            for _ in _batches(con, source, path, batch_rows):
                fc.rows_read += sum(n for _, n in _load_batch(con, source, canonical, params, batch_id))
            if progress:
                progress(source.name, path)
        if to_read:
            settle_source(con, source, batch_rows, batch_id)


def _count_outcomes(con: duckdb.DuckDBPyConnection, counts: list[FileCount]) -> None:
    """Set loaded, duplicates and quarantined of each file read from what staging holds."""
    if not counts:
        return
    per_file = {
        row[0]: row[1:]
        for row in con.execute(
            """
            with read as (select unnest(?) as source_file),
            loaded as (select source_file, count(*) as n from staging.events
                       where source_file in (select source_file from read) group by all),
            duplicates as (select source_file, count(*) as n from staging.duplicates
                           where not is_conflict and source_file in (select source_file from read) group by all),
            quarantined as (select source_file, count(*) as n from staging.quarantine
                            where source_file in (select source_file from read) group by all)
            select r.source_file, coalesce(l.n, 0), coalesce(d.n, 0), coalesce(q.n, 0)
            from read as r
            left join loaded as l using (source_file)
            left join duplicates as d using (source_file)
            left join quarantined as q using (source_file)
            """,
            [[fc.source_file for fc in counts]],
        ).fetchall()
    }
    for fc in counts:
        fc.loaded, fc.duplicates, fc.quarantined = per_file[fc.source_file]


def check_customer_columns(config: Config) -> None:
    """Stop with a ConfigError when the customers file lacks its id or a segment column."""
    c = config.customers
    if c is None:
        return
    header = csv_header(c.path, c.delimiter)
    missing = [name for name in (c.customer_id, *c.segments) if name not in header]
    if missing:
        raise ConfigError(
            f"{c.path}, line 1: customers file lacks column(s) {', '.join(repr(m) for m in missing)} "
            f"(it has: {', '.join(header)}). Fix: correct [customers] customer_id / segments in the config"
        )


def validate_inputs(config: Config) -> None:
    """Every check of the inputs that can be made before reading rows; raises ConfigError."""
    for source in config.sources:
        for path in source.files:
            check_source_columns(source, path)
    check_customer_columns(config)


def load_customers(con: duckdb.DuckDBPyConnection, config: Config) -> None:
    """staging.customers from the customers file (customer id and segment columns, as text)."""
    con.execute("drop table if exists staging.customers")
    c = config.customers
    if c is None:
        con.execute("create table staging.customers (customer_id varchar)")
        return
    check_customer_columns(config)
    header = csv_header(c.path, c.delimiter)
    index = {name: j for j, name in enumerate(header)}
    positional = {f"h{j}": "VARCHAR" for j in range(len(header))}
    seg_cols = ", ".join(f"{_clean(f'h{index[s]}')} as {quote_ident(s)}" for s in c.segments)
    con.execute(
        f"""
        create table staging.customers as
        select {_clean(f'h{index[c.customer_id]}')} as customer_id{', ' + seg_cols if seg_cols else ''}
        from read_csv(?, columns = ?, header = true, delim = ?, auto_detect = false, quote = '"', escape = '"')
             with ordinality
        where {_clean(f'h{index[c.customer_id]}')} is not null
        qualify row_number() over (partition by customer_id order by ordinality) = 1  -- first row in the file wins
        """,
        [c.path, positional, c.delimiter],
    )


def customers_segment_sql(config: Config) -> tuple[str, list[Any]]:
    """SQL for the long-form segment table: one row per customer and segment key."""
    segs = config.customers.segments if config.customers else ()
    parts = []
    params: list[Any] = []
    for s in segs:
        params.append(s)
        parts.append(f"select customer_id, cast(? as varchar) as segment_key, {quote_ident(s)} as segment_value from staging.customers")
    return (" union all ".join(parts) if parts else "select null::varchar customer_id, null::varchar segment_key, null::varchar segment_value where false"), params
