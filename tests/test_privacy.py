"""Privacy: [privacy] pseudonymize replaces customer identifiers with keyed pseudonyms
(docs/config.md, "privacy"; pipeline/privacy.py).

Expected pseudonyms are computed here with Python's hmac/hashlib, independently of the
SQL that makes them: "p_" + the first 32 hex digits of HMAC-SHA256(key, value).

The ingest-level tests write a small project whose raw rows the test author knows; the
full-pipeline tests run the bundled sample with and without pseudonymization.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import re
import shutil
import subprocess
from pathlib import Path

import duckdb
import pytest

import pipeline.config
import pipeline.ingest
import pipeline.privacy
import pipeline.run
import pipeline.warehouse
from conftest import JOURNEYS_BIN, SAMPLE, copy_config
from pipeline.config import ConfigError
from test_ingest import csv, write_project

KEY = "first-secret-key-0123456789"
OTHER_KEY = "second-secret-key-9876543210"
ENV = "JOURNEYS_PSEUDONYM_KEY"
PRIVACY = '\n[privacy]\npseudonymize = true\n'
WITHHELD = "raw line withheld for privacy"


def expected(value: str, key: str = KEY) -> str:
    """The pseudonym the docs promise, computed with Python's standard library."""
    return "p_" + hmac.new(key.encode("utf-8"), value.encode("utf-8"), hashlib.sha256).hexdigest()[:32]


# --------------------------------------------------------------------------- a small project

WEB = csv(
    "id,cust,cookie,handle,ev,ts,shop",
    "w1,C1,ck-1, @ana ,view,2026-03-01T10:00:00Z,s1",  # handle with blanks: trimmed like the identifier
    "w2,C1,ck-1,@ana,buy,2026-03-01T10:05:00Z,s1",
    "w3,,ck-2,,view,2026-03-01T11:00:00Z,s2",  # anonymous: the cookie is the customer
    "w4,C2,ck-3,@bo,view,not a time,s1",  # quarantined: unparseable timestamp
    "w5,Zoë,ck-4,,view,2026-03-01T12:00:00Z,s3",  # non-ASCII id: hashed as UTF-8
    "w1,C1,ck-1,@ana,view,2026-03-01T10:00:00Z,s9",  # same id, other content: duplicate_event_id
)
EMAIL = "\n".join(
    json.dumps(r)
    for r in [
        {"mid": "m1", "recipient": "C1", "address": "ana@example.com", "event": "open", "at": "2026-03-02T09:00:00Z"},
        {"mid": "m2", "recipient": "C2", "address": "bo@example.com", "event": "open", "at": "2026-03-02T09:30:00Z"},
        {"mid": "m3", "address": "nobody@example.com", "event": "open", "at": "2026-03-02T09:40:00Z"},  # no customer
    ]
) + "\n"
CUSTOMERS = csv("customer_id,tier", "C1,gold", "C2,basic", "C9,basic")

SOURCES = [
    {
        "name": "web", "path": "web.csv", "format": "csv", "channel": "web", "event_id": "id",
        "customer_id": ["cust", "cookie"], "event_type": {"column": "ev"}, "timestamp": {"column": "ts"},
        "identifiers": {"customer": "cust", "cookie": "cookie", "handle": "handle"}, "properties": ["handle", "shop"],
    },
    {
        "name": "email", "path": "email.jsonl", "format": "jsonl", "channel": "email", "event_id": "mid",
        "customer_id": "recipient", "event_type": {"column": "event"}, "timestamp": {"column": "at"},
        "identifiers": {"customer": "recipient", "email": "address"},
    },
]
CUSTOMERS_TOML = '\n[customers]\npath = "customers.csv"\nsegments = ["tier"]\n'

# every raw identifier the project holds (including the quarantined rows' ones)
RAW_IDS = ["C1", "C2", "C9", "ck-1", "ck-2", "ck-3", "ck-4", "@ana", "@bo", "Zoë",
           "ana@example.com", "bo@example.com", "nobody@example.com"]


def small_project(tmp_path: Path, extra: str = PRIVACY) -> Path:
    files = {"web.csv": WEB, "email.jsonl": EMAIL, "customers.csv": CUSTOMERS}
    return write_project(tmp_path, files, SOURCES, channels=("web", "email"), extra=CUSTOMERS_TOML + extra)


def ingested(tmp_path: Path, key: str | None = KEY, extra: str = PRIVACY, monkeypatch=None):
    """Ingest the small project (events, quarantine, customers) into a fresh warehouse and
    apply the privacy step as ingest_step will; returns (con, counts of the privacy step)."""
    if key is not None:
        monkeypatch.setenv(ENV, key)
    config = pipeline.config.load_config(small_project(tmp_path, extra))
    con = pipeline.warehouse.connect(tmp_path / "w.duckdb")
    pipeline.ingest.ingest(con, config, batch_id="b1")
    pipeline.ingest.load_customers(con, config)
    return con, pipeline.privacy.pseudonymize_staging(con, config)


def rows(con, sql: str) -> list[dict]:
    cur = con.execute(sql)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


# --------------------------------------------------------------------------- ingest level


def test_customer_ids_and_identifiers_become_hmac_pseudonyms(tmp_path, monkeypatch):
    """Every customer id and every identifier value of staging.events is replaced by
    p_ + 32 hex digits of HMAC-SHA256(key, value); the identifier types stay."""
    con, _ = ingested(tmp_path, monkeypatch=monkeypatch)
    got = {r["event_id"]: (r["customer_id"], r["identifiers"]) for r in rows(con, "select * from staging.events")}
    p = expected
    assert got == {
        "web:w1": (p("C1"), {"customer": p("C1"), "cookie": p("ck-1"), "handle": p("@ana")}),
        "web:w2": (p("C1"), {"customer": p("C1"), "cookie": p("ck-1"), "handle": p("@ana")}),
        "web:w3": (p("ck-2"), {"cookie": p("ck-2")}),
        "web:w5": (p("Zoë"), {"customer": p("Zoë"), "cookie": p("ck-4")}),
        "email:m1": (p("C1"), {"customer": p("C1"), "email": p("ana@example.com")}),
        "email:m2": (p("C2"), {"customer": p("C2"), "email": p("bo@example.com")}),
    }


def test_same_value_same_pseudonym_across_channels_and_the_customers_file(tmp_path, monkeypatch):
    """C1 on web and on email, and in the customers file, gets one pseudonym, so the customer's
    events stay one customer and segments still join (every customer with events finds its tier)."""
    con, _ = ingested(tmp_path, monkeypatch=monkeypatch)
    assert sorted(r["customer_id"] for r in rows(con, "select customer_id from staging.customers")) == sorted(
        [expected("C1"), expected("C2"), expected("C9")]
    )
    joined = rows(con, """
        select e.customer_id, c.tier, count(*) as n from staging.events e
        join staging.customers c using (customer_id) group by all order by n desc
    """)
    assert joined == [
        {"customer_id": expected("C1"), "tier": "gold", "n": 3},
        {"customer_id": expected("C2"), "tier": "basic", "n": 1},
    ]


def test_identifier_properties_are_pseudonymized_and_other_properties_kept(tmp_path, monkeypatch):
    """A property that is also an identifier column (handle) holds the identifier's pseudonym
    (of the trimmed value); other properties (shop) and missing values are kept as they are."""
    con, _ = ingested(tmp_path, monkeypatch=monkeypatch)
    got = {r["event_id"]: json.loads(r["properties"]) for r in rows(con, "select event_id, properties from staging.events where source = 'web'")}
    assert got == {
        "web:w1": {"handle": expected("@ana"), "shop": "s1"},
        "web:w2": {"handle": expected("@ana"), "shop": "s1"},
        "web:w3": {"handle": None, "shop": "s2"},
        "web:w5": {"handle": None, "shop": "s3"},
    }


def test_quarantined_raw_lines_are_withheld(tmp_path, monkeypatch):
    """Every quarantined row keeps its file, row and reason, loses its raw line, and its detail
    says the raw line was withheld (after the original detail, when there was one)."""
    con, _ = ingested(tmp_path, monkeypatch=monkeypatch)
    got = [(r["source"], r["source_row"], r["raw_line"], r["reason"], r["detail"])
           for r in rows(con, "select * from staging.quarantine order by source, source_row")]
    assert got == [
        ("email", 3, None, "missing_customer", WITHHELD),
        ("web", 5, None, "unparseable_timestamp", f"timestamp 'not a time'; {WITHHELD}"),
        ("web", 7, None, "duplicate_event_id", f"event id web:w1 already loaded with different content; {WITHHELD}"),
    ]


def test_duplicate_rows_are_pseudonymized_too(tmp_path, monkeypatch):
    """staging.duplicates (rows that lost to an earlier row with the same event id) holds
    pseudonyms and no raw line."""
    con, _ = ingested(tmp_path, monkeypatch=monkeypatch)
    got = [(r["event_id"], r["customer_id"], r["identifiers"], json.loads(r["properties"]), r["raw_line"])
           for r in rows(con, "select * from staging.duplicates")]
    assert got == [("web:w1", expected("C1"), {"customer": expected("C1"), "cookie": expected("ck-1"), "handle": expected("@ana")},
                    {"handle": expected("@ana"), "shop": "s9"}, None)]


def test_the_step_counts_what_it_replaced(tmp_path, monkeypatch):
    """The step returns what it replaced: 6 customer ids of events, 13 identifier values and 2 handle
    properties in events, 3 ids of the customers file, the raw lines of 3 quarantined rows; and the
    duplicate row's customer id, 3 identifiers, 1 handle and raw line."""
    _, counts = ingested(tmp_path, monkeypatch=monkeypatch)
    # identifiers in events: w1 3, w2 3, w3 1, w5 2, m1 2, m2 2 = 13; the duplicate w1 row has 3 more
    assert counts == {
        "events": 6,
        "identifier_values": 13 + 3,
        "property_values": 2 + 1,
        "duplicates": 1,
        "customers": 3,
        "raw_lines_withheld": 3 + 1,
    }


def test_no_raw_identifier_is_left_in_staging(tmp_path, monkeypatch):
    """After the step, no text cell of any staging table holds a raw identifier (even as part of
    a longer text such as a raw line or a JSON object)."""
    con, _ = ingested(tmp_path, monkeypatch=monkeypatch)
    leaks = leaked_cells(con, RAW_IDS, schemas=("staging",))
    assert leaks == []
    # the scan is not blind: the same project without the step has raw ids everywhere
    plain, _ = ingested(tmp_path / "plain", key=None, extra="", monkeypatch=monkeypatch)
    assert {"staging.events.customer_id", "staging.events.identifiers", "staging.quarantine.raw_line",
            "staging.customers.customer_id"} <= {leak[0] for leak in leaked_cells(plain, RAW_IDS, schemas=("staging",))}


def test_same_key_same_pseudonyms_another_key_other_pseudonyms(tmp_path, monkeypatch):
    """Two runs with the same key give identical staging tables; another key gives other
    pseudonyms for every id, with the same structure (the other key's HMAC)."""
    def snapshot(folder: Path, key: str):
        folder.mkdir()
        con, _ = ingested(folder, key=key, monkeypatch=monkeypatch)
        return sorted((r["event_id"], r["customer_id"], r["identifiers"], r["properties"])
                      for r in rows(con, "select * from staging.events"))

    first, again, other = snapshot(tmp_path / "a", KEY), snapshot(tmp_path / "b", KEY), snapshot(tmp_path / "c", OTHER_KEY)
    assert first == again
    assert [r[1] for r in other] == [expected(v, OTHER_KEY) for v in ("C1", "C2", "C1", "C1", "ck-2", "Zoë")]
    assert not {r[1] for r in first} & {r[1] for r in other}


def test_applying_the_step_twice_changes_nothing(tmp_path, monkeypatch):
    """A value that is already a pseudonym is left alone, so a second application replaces
    nothing and leaves every staging table as it was."""
    con, _ = ingested(tmp_path, monkeypatch=monkeypatch)
    before = {t: sorted(map(repr, con.execute(f"select * from staging.{t}").fetchall())) for t in ("events", "quarantine", "customers")}
    counts = pipeline.privacy.pseudonymize(con, KEY, {"web": ("handle",)})
    assert set(counts.values()) == {0}
    assert before == {t: sorted(map(repr, con.execute(f"select * from staging.{t}").fetchall())) for t in before}


def test_keys_longer_than_a_block_and_non_ascii_values_follow_hmac(tmp_path):
    """HMAC hashes a key longer than 64 bytes first (RFC 2104); keys and values are UTF-8."""
    con = pipeline.warehouse.connect(":memory:")
    con.execute("create table staging.customers (customer_id varchar)")
    values = ["C1", "Zoë", "客户-42", "x" * 200]
    for key in ("k" * 100, "clé-secrète-ünïcødé-🔑"):
        con.execute("delete from staging.customers; insert into staging.customers select unnest(?)", [values])
        pipeline.privacy.pseudonymize(con, key)
        got = [r[0] for r in con.execute("select customer_id from staging.customers order by rowid").fetchall()]
        assert got == [expected(v, key) for v in values]


def test_off_by_default(tmp_path, monkeypatch):
    """Without [privacy] the step does nothing: raw ids stay and no key is needed."""
    monkeypatch.delenv(ENV, raising=False)
    con, counts = ingested(tmp_path, key=None, extra="", monkeypatch=monkeypatch)
    assert counts == {}
    assert sorted(r[0] for r in con.execute("select customer_id from staging.customers").fetchall()) == ["C1", "C2", "C9"]


def test_rewriting_the_warehouse_drops_the_replaced_values_from_the_file(tmp_path, monkeypatch):
    """An UPDATE leaves replaced values in the file's freed pages; rewrite_warehouse writes a
    file without them that holds the same schemas, tables, views, constraints and rows."""
    con, _ = ingested(tmp_path, monkeypatch=monkeypatch, key=KEY, extra="")
    con.execute("checkpoint")  # the raw rows reach the file, as an automatic checkpoint would do
    config = pipeline.config.load_config(small_project(tmp_path))
    pipeline.privacy.pseudonymize_staging(con, config)
    con.close()
    db = tmp_path / "w.duckdb"
    raw = [i.encode() for i in ("ana@example.com", "nobody@example.com", "bo@example.com")]

    def catalog() -> dict:
        c = duckdb.connect(str(db), read_only=True)
        try:
            tables = [f"{s}.{t}" for s, t in c.execute(
                "select schema_name, table_name from duckdb_tables() where database_name = current_database() order by all").fetchall()]
            return {
                "rows": {t: sorted(map(repr, c.execute(f"select * from {t}").fetchall())) for t in tables},
                "views": c.execute("select view_name, sql from duckdb_views() where not internal order by all").fetchall(),
                "constraints": c.execute("select table_name, constraint_text from duckdb_constraints() "
                                         "where database_name = current_database() order by all").fetchall(),
            }
        finally:
            c.close()

    before = catalog()
    assert [r for r in raw if r in db.read_bytes()] == raw  # the freed pages still hold them
    pipeline.privacy.rewrite_warehouse(db)
    assert [r for r in raw if r in db.read_bytes()] == []
    assert catalog() == before and "staging.events" in before["rows"]


# --------------------------------------------------------------------------- config


def test_config_keeps_the_settings_not_the_key(tmp_path, monkeypatch):
    """pseudonymize and key_env are on Config; the key itself is nowhere in it."""
    monkeypatch.setenv("TEAM_KEY", KEY)
    config = pipeline.config.load_config(small_project(tmp_path, '\n[privacy]\npseudonymize = true\nkey_env = "TEAM_KEY"\n'))
    assert (config.pseudonymize, config.key_env) == (True, "TEAM_KEY")
    assert KEY not in repr(dataclasses.asdict(config)) and KEY not in config.text
    default = pipeline.config.load_config(small_project(tmp_path / "d", ""))
    assert (default.pseudonymize, default.key_env) == (False, "JOURNEYS_PSEUDONYM_KEY")


def test_commands_that_only_read_the_warehouse_need_no_key(tmp_path, monkeypatch):
    """`journeys sql`, `runs` and `report` load the config without checking inputs
    (check_files=False): they read pseudonyms only and need no key."""
    monkeypatch.delenv(ENV, raising=False)
    assert pipeline.config.load_config(small_project(tmp_path), check_files=False).pseudonymize
    with pytest.raises(ConfigError, match=ENV):
        pipeline.config.load_config(small_project(tmp_path))


@pytest.mark.parametrize(
    "value, problem",
    [
        (None, "environment variable JOURNEYS_PSEUDONYM_KEY is not set"),
        ("", "environment variable JOURNEYS_PSEUDONYM_KEY is empty"),
        ("x" * 15, "the key in environment variable JOURNEYS_PSEUDONYM_KEY has 15 characters, fewer than 16"),
    ],
)
def test_a_missing_empty_or_short_key_is_a_config_error(tmp_path, monkeypatch, value, problem):
    """With pseudonymize on, a key that is not set, empty or under 16 characters stops the load,
    naming the variable and the fix (and never printing the key)."""
    if value is None:
        monkeypatch.delenv(ENV, raising=False)
    else:
        monkeypatch.setenv(ENV, value)
    with pytest.raises(ConfigError) as e:
        pipeline.config.load_config(small_project(tmp_path))
    message = str(e.value)
    assert "key 'privacy.key_env'" in message and problem in message
    assert f"Fix: set {ENV} to a secret of at least 16 characters" in message and "pseudonymize = false" in message
    assert not value or value not in message
    monkeypatch.setenv(ENV, "x" * 16)  # 16 characters are enough
    assert pipeline.config.load_config(small_project(tmp_path)).pseudonymize


@pytest.mark.parametrize(
    "section, problem",
    [
        ('pseudonymize = "yes"', "key 'privacy.pseudonymize': 'yes' is not true or false"),
        ('pseudonymize = true\nkey_env = "MY KEY"', "key 'privacy.key_env': 'MY KEY' is not an environment variable name"),
        ('pseudonymize = true\nkey = "inline-secret-0123456789"', "key 'privacy.key': unknown key"),
    ],
)
def test_bad_privacy_settings_are_config_errors(tmp_path, monkeypatch, section, problem):
    """pseudonymize must be a boolean, key_env a variable name, and the key cannot be put in the file."""
    monkeypatch.setenv(ENV, KEY)
    with pytest.raises(ConfigError, match=re.escape(problem)):
        pipeline.config.load_config(small_project(tmp_path, f"\n[privacy]\n{section}\n"))


def test_the_key_is_read_again_when_applied(tmp_path, monkeypatch):
    """A key that vanished from the environment after the config was loaded stops the step
    with a ConfigError naming the variable, before anything is changed."""
    con, _ = ingested(tmp_path, key=KEY, extra="", monkeypatch=monkeypatch)
    monkeypatch.setenv(ENV, KEY)
    config = pipeline.config.load_config(small_project(tmp_path))
    monkeypatch.delenv(ENV)
    with pytest.raises(ConfigError, match=f"environment variable {ENV} is not set"):
        pipeline.privacy.pseudonymize_staging(con, config)
    assert sorted(r[0] for r in con.execute("select customer_id from staging.customers").fetchall()) == ["C1", "C2", "C9"]


def test_cli_without_the_key_exits_2_and_writes_nothing(tmp_path, journeys_env):
    """`journeys run` with pseudonymize on and no key in the environment exits 2 with a message
    naming the variable and the fix, and writes no warehouse."""
    config = small_project(tmp_path)
    env = {k: v for k, v in journeys_env.items() if k != ENV}
    proc = subprocess.run([str(JOURNEYS_BIN), "run", "--config", str(config)], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert f"environment variable {ENV} is not set" in proc.stderr and f"Fix: set {ENV}" in proc.stderr
    assert not (tmp_path / "build").exists()


# --------------------------------------------------------------------------- the whole pipeline on the sample


def matching(con: duckdb.DuckDBPyConnection, cells_sql: str, params: list, raw_ids: list[str]) -> list[tuple[str, str]]:
    """(where, text) of the cells of `cells_sql` (columns col, cell) holding one of `raw_ids`,
    even inside a longer text. The ids are searched with regular expressions of 500 alternatives
    each (RE2 gets slow on one pattern of thousands)."""
    ids = sorted(set(raw_ids), key=len, reverse=True)
    patterns = ["|".join(re.escape(i) for i in ids[k:k + 500]) for k in range(0, len(ids), 500)]
    found = " or ".join("regexp_matches(cell, ?)" for _ in patterns)
    con.execute(f"create or replace temp table _cells as select distinct col, cell from ({cells_sql})", params)
    try:
        return con.execute(f"select col, left(cell, 300) from _cells where {found} order by all", patterns).fetchall()
    finally:
        con.execute("drop table _cells")


def leaked_cells(con: duckdb.DuckDBPyConnection, raw_ids: list[str], schemas=("staging", "core", "marts", "meta", "views")) -> list[tuple[str, str]]:
    """(table.column, cell) for every text cell (VARCHAR, JSON, MAP, LIST, STRUCT) of every table
    and view of `schemas` that contains one of `raw_ids`."""
    columns = con.execute(
        """
        select schema_name, table_name, column_name from duckdb_columns()
        where database_name = current_database() and schema_name in (select unnest(?))
          and (data_type in ('VARCHAR', 'JSON') or data_type like 'MAP(%' or data_type like '%[]' or data_type like 'STRUCT(%')
        """,
        [list(schemas)],
    ).fetchall()
    q = pipeline.ingest.quote_ident
    cells = " union all ".join(
        f"select '{schema}.{table}.{column}' as col, cast({q(column)} as varchar) as cell from {q(schema)}.{q(table)}"
        for schema, table, column in columns
    )
    return matching(con, cells, [], raw_ids)


def leaked_files(raw_ids: list[str], *paths: Path) -> list[tuple[str, str]]:
    """(file, text) for every Parquet row (all its columns as text) and every other file
    (manifest.json, GraphML, DOT, HTML) among `paths` (files, or folders searched through)
    that contains one of `raw_ids`."""
    by_table: dict[str, list[str]] = {}  # the export's tables differ in columns: one reader each
    text: list[str] = []
    for root in paths:
        root = root.resolve()
        for p in sorted(q for q in root.rglob("*") if q.is_file()) if root.is_dir() else [root]:
            if p.suffix == ".parquet":
                table = p.relative_to(root).parts[0] if root.is_dir() else p.name
                by_table.setdefault(str(root / table), []).append(str(p))
            else:
                text.append(str(p))
    parts = ["select ? as col, cast(t as varchar) as cell from read_parquet(?, hive_partitioning = false) t"] * len(by_table)
    params: list = [x for table, files in by_table.items() for x in (table, files)]
    if text:
        parts.append("select filename as col, content as cell from read_text(?)")
        params.append(text)
    assert parts, f"no files in {paths}"
    return matching(duckdb.connect(), " union all ".join(parts), params, raw_ids)


def raw_sample_ids(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Every customer id and identifier value of a warehouse built without pseudonymization,
    and every id of the customers file."""
    ids = {r[0] for r in con.execute(
        "select customer_id from staging.events union select unnest(map_values(identifiers)) from staging.events"
    ).fetchall()}
    ids |= {line.split(",")[0] for line in (SAMPLE / "customers.csv").read_text().splitlines()[1:]}
    return sorted(ids)


def build_by_steps(folder: Path, private: bool) -> duckdb.DuckDBPyConnection:
    """The sample built as run_pipeline does (ingest, privacy, build, export), by its steps."""
    config_path = copy_config(SAMPLE / "journeys.toml", folder)
    if private:
        config_path.write_text(config_path.read_text() + PRIVACY)
    config = pipeline.config.load_config(config_path)
    con = pipeline.warehouse.connect(folder / "w.duckdb")
    pipeline.run.ingest_step(con, config, "r1")
    pipeline.privacy.pseudonymize_staging(con, config)
    pipeline.run.build_step(con, config, folder / "graph")
    pipeline.run.export_step(con, folder / "export", "r1")
    return con


@pytest.fixture(scope="module")
def sample_builds(tmp_path_factory):
    """(plain, private): the sample's warehouse without and with pseudonymization."""
    mp = pytest.MonkeyPatch()
    mp.setenv(ENV, KEY)
    try:
        plain = build_by_steps(tmp_path_factory.mktemp("plain"), private=False)
        private_folder = tmp_path_factory.mktemp("private")
        private = build_by_steps(private_folder, private=True)
        yield plain, private, private_folder
    finally:
        mp.undo()


def test_no_raw_identifier_in_the_warehouse_or_the_export(sample_builds):
    """With pseudonymize on, no text cell of any table or view of staging, core, marts, meta
    or views, and no Parquet row, manifest or graph file, holds a raw customer id or identifier
    value of the sample; the same scan finds them in the plain build (it is not blind)."""
    plain, private, folder = sample_builds
    raw_ids = raw_sample_ids(plain)
    assert len(raw_ids) > 3000
    assert leaked_cells(private, raw_ids) == []
    assert leaked_files(raw_ids, folder / "export", folder / "graph") == []
    plain_leaks = {leak[0] for leak in leaked_cells(plain, raw_ids)}
    assert {"staging.events.customer_id", "core.journeys.customer_id", "core.steps.customer_id"} <= plain_leaks


def test_journeys_and_marts_equal_a_run_without_pseudonymization(sample_builds):
    """Pseudonyms change ids only: the counts of steps, sessions and journeys (by status) and
    every row of the marts of transitions, stage stats, funnel, segment summary and segment
    comparison are those of the plain build."""
    plain, private, _ = sample_builds
    counts = "select status, count(*), sum(events), sum(sessions) from core.journeys group by all order by all"
    assert private.execute(counts).fetchall() == plain.execute(counts).fetchall()
    for table in ("marts.transitions", "marts.stage_stats", "marts.funnel", "marts.segment_summary", "marts.segment_comparison"):
        query = f"select * from {table} order by all"
        assert private.execute(query).fetchall() == plain.execute(query).fetchall(), table
    assert private.execute("select count(*) from marts.transitions").fetchall()[0][0] > 0


@pytest.fixture(scope="module")
def published(tmp_path_factory, sample_builds):
    """A copy of the sample with pseudonymize on, run once by `run_pipeline`: (config path, build
    folder, the sample's raw ids, the raw ids found in the bytes of the published warehouse file)."""
    plain, _, _ = sample_builds
    folder = tmp_path_factory.mktemp("published")
    data = folder / "sample"
    shutil.copytree(SAMPLE, data)
    config = data / "journeys.toml"
    config.write_text(config.read_text().replace("../../build/", str(folder / "build") + "/") + PRIVACY)
    raw_ids = raw_sample_ids(plain)
    mp = pytest.MonkeyPatch()
    mp.setenv(ENV, KEY)
    try:
        pipeline.run.run_pipeline(pipeline.config.load_config(config))
    finally:
        mp.undo()
    data_bytes = (folder / "build" / "journeys.duckdb").read_bytes()
    in_file = set(re.findall(rb"C\d{6}|ck-[0-9a-f]{16}|LC\d{10}", data_bytes)) & {i.encode() for i in raw_ids}
    return config, folder / "build", raw_ids, in_file


def test_run_pipeline_publishes_pseudonyms_only(published, sample_builds, monkeypatch):
    """`run_pipeline` with pseudonymize on publishes no raw id, in the warehouse, the export,
    the graph files or the HTML report; also after an incremental run that adds a file with a
    new customer, who then has one journey under the pseudonym of their id."""
    config, build, raw_ids, _ = published
    _, private, _ = sample_builds
    monkeypatch.setenv(ENV, KEY)

    def published_leaks(ids: list[str]) -> list:
        con = duckdb.connect(str(build / "journeys.duckdb"), read_only=True)
        try:
            return leaked_cells(con, ids) + leaked_files(ids, build / "export", build / "graph", build / "report.html")
        finally:
            con.close()

    assert published_leaks(raw_ids) == []
    new = {"hit_id": "w-extra-1", "cookie_id": "ck-extra-cookie-1", "user_id": "C777777", "event": "page_view",
           "url": "https://shop.example.com/", "referrer": None, "ts": "2026-09-15T10:00:00+00:00"}
    (config.parent / "web" / "clickstream-extra.jsonl").write_text(json.dumps(new) + "\n")
    result = pipeline.run.run_pipeline(pipeline.config.load_config(config))
    assert result.counts["mode"] == "incremental"
    assert published_leaks([*raw_ids, "ck-extra-cookie-1", "C777777"]) == []
    con = duckdb.connect(str(build / "journeys.duckdb"), read_only=True)
    try:
        new_journeys = con.execute("select count(*) from core.journeys where customer_id = ?", [expected("C777777")]).fetchall()
        counts = con.execute("select (select count(*) from core.journeys), (select count(*) from core.steps)").fetchall()
    finally:
        con.close()
    assert new_journeys == [(1,)]
    before = private.execute("select (select count(*) from core.journeys), (select count(*) from core.steps)").fetchall()
    assert counts == [(before[0][0] + 1, before[0][1] + 1)]


def test_the_warehouse_file_holds_no_raw_id_bytes(published):
    """The published warehouse file, read as bytes, holds none of the sample's customer ids,
    cookies or loyalty cards (an UPDATE leaves old values in the file's freed pages)."""
    _, _, _, in_file = published
    assert in_file == set()


def test_a_new_key_forces_a_full_rebuild(tmp_path, monkeypatch):
    """The key's HMAC fingerprint is part of the config hash: with the same key the next run is
    incremental, with another key it is a full rebuild (so no journey mixes old and new pseudonyms)."""
    import shutil

    import pipeline.config
    import pipeline.run

    project = tmp_path / "project"
    shutil.copytree(Path(__file__).resolve().parent / "data" / "tiny", project)
    config_path = project / "journeys.toml"
    config_path.write_text(config_path.read_text() + "\n[privacy]\npseudonymize = true\n")
    monkeypatch.setenv("JOURNEYS_PSEUDONYM_KEY", "a" * 32)
    assert pipeline.run.run_pipeline(pipeline.config.load_config(config_path)).counts["mode"] == "full"
    assert pipeline.run.run_pipeline(pipeline.config.load_config(config_path)).counts["mode"] == "incremental"
    monkeypatch.setenv("JOURNEYS_PSEUDONYM_KEY", "b" * 32)
    result = pipeline.run.run_pipeline(pipeline.config.load_config(config_path))
    assert (result.counts["mode"], result.counts["mode_reason"]) == ("full", "the config changed since the last run")
