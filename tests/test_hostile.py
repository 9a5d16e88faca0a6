"""Hostile input, drawn by hypothesis: whatever bytes a source file holds, ingest either loads it
with every row accounted for (loaded + duplicates + quarantined = rows read) or stops with a
ConfigError (exit 2) naming the file; never another exception, never a lost row."""

from __future__ import annotations

import json
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pipeline.config
import pipeline.ingest
import pipeline.warehouse
from pipeline.config import ConfigError

CONFIG = """
[project]
name = "hostile"
channels = ["web", "email"]

[[sources]]
name = "src"
path = "events.{ext}"
format = "{fmt}"
channel = {{ column = "medium" }}
event_id = "id"
customer_id = ["cust", "cookie"]
event_type = {{ column = "ev" }}
timestamp = {{ column = "ts", format = "iso" }}
properties = ["note"]
"""

HEADER = ["id", "cust", "cookie", "ev", "ts", "medium", "note"]
nasty_text = st.text(alphabet=st.sampled_from(list(string.printable) + ["é", "ß", "中", "\u2028", "\ufeff", "\x00", "\t", '"', ",", ";", "\\"]), max_size=40)
field = st.one_of(
    st.just(""), st.just("NA"), st.just("null"), st.just("None"), nasty_text,
    st.sampled_from(["2026-01-01T10:00:00Z", "2026-01-01 10:00", "2026-02-30T10:00:00Z", "1970-01-01T00:00:00Z",
                     "2099-01-01T00:00:00Z", "2026-03-29T02:30:00+01:00", "not a time", "2026-01-01T10:00:00z"]),
    st.sampled_from(["web", "WEB", "email", "sms", " web "]),
    st.text(alphabet="x", min_size=1000, max_size=3000),  # a long field
)
valid_row = st.builds(
    lambda i, c, e, t: [f"e{i}", f"c{c}", "", e, t, "web", "ok"],
    st.integers(0, 30), st.integers(0, 5), st.sampled_from(["view", "buy", "PageView"]),
    st.sampled_from(["2026-01-01T10:00:00Z", "2026-01-02T11:30:00+02:00", "2026-01-05T08:00:00-05:00"]),
)
random_row = st.lists(field, min_size=0, max_size=9)


def csv_line(cells: list[str]) -> str:
    def quote(c: str) -> str:
        return '"' + c.replace('"', '""') + '"' if any(ch in c for ch in ',"\n\r') else c
    return ",".join(quote(c) for c in cells)


def ingest(tmp_path: Path, fmt: str, content: bytes):
    ext = {"csv": "csv", "jsonl": "jsonl"}[fmt]
    (tmp_path / f"events.{ext}").write_bytes(content)
    (tmp_path / "journeys.toml").write_text(CONFIG.format(ext=ext, fmt=fmt))
    config = pipeline.config.load_config(tmp_path / "journeys.toml")
    db = tmp_path / "w.duckdb"
    db.unlink(missing_ok=True)
    con = pipeline.warehouse.connect(db)
    try:
        return pipeline.ingest.ingest(con, config, batch_id="b"), con.execute("select count(*) from staging.events").fetchall()[0][0]
    finally:
        con.close()


def check(tmp_path: Path, fmt: str, content: bytes, expected_rows: int | None) -> None:
    try:
        counts, loaded_in_table = ingest(tmp_path, fmt, content)
    except ConfigError as e:
        assert "events." in str(e) and "Fix:" in str(e)  # names the file and says what to do
        return
    (c,) = counts
    assert c.rows_read == c.loaded + c.duplicates + c.quarantined
    assert c.loaded == loaded_in_table
    if expected_rows is not None:
        assert c.rows_read == expected_rows


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(rows=st.lists(st.one_of(valid_row, random_row), max_size=25), crlf=st.booleans(), bom=st.booleans())
def test_hostile_csv_is_accounted_for_or_refused(tmp_path, rows, crlf, bom):
    """Random CSV rows (wrong field counts, quotes, delimiters, NUL, BOM, CRLF, long fields, 'NA'/'null' ids,
    bad times and channels): every row is loaded, a duplicate or quarantined, or the file is refused."""
    nl = "\r\n" if crlf else "\n"
    text = nl.join([",".join(HEADER)] + [csv_line(r) for r in rows]) + nl
    content = (b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8")
    # a quoted field may hold a line break, so the independent row count only holds without them
    simple = not any("\n" in c or "\r" in c or "\u2028" in c for r in rows for c in r)
    nonblank = sum(1 for r in rows if csv_line(r) != "")  # an empty line is no row
    check(tmp_path, "csv", content, nonblank if simple else None)


json_value = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), nasty_text,
                       st.lists(st.integers(), max_size=3))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(lines=st.lists(st.one_of(
    st.fixed_dictionaries({"id": st.sampled_from(["e1", "e2", "e3", None, ""]), "cust": st.sampled_from(["c1", "NA", None, ""]),
                           "ev": st.sampled_from(["view", "", None]), "ts": st.sampled_from(["2026-01-01T10:00:00Z", "bad", None]),
                           "medium": st.sampled_from(["web", "sms", None])}).map(json.dumps),
    st.dictionaries(st.sampled_from(HEADER + ["other"]), json_value, max_size=7).map(json.dumps),
    nasty_text.filter(lambda t: not any(ch in t for ch in "\n\r\u2028")),
    st.just("[1, 2, 3]"), st.just("42"), st.just('{"id": "e9", "cust": "c1"'),
), max_size=25))
def test_hostile_jsonl_is_accounted_for_or_refused(tmp_path, lines):
    """Random JSON lines (objects with odd values, arrays, numbers, truncated JSON, plain text): every
    non-blank line is loaded, a duplicate or quarantined."""
    content = ("\n".join(lines) + "\n").encode("utf-8")
    expected = sum(1 for ln in lines if ln.strip(" \t\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0"))
    check(tmp_path, "jsonl", content, None if any(ch in "".join(lines) for ch in "\x1c\x1d\x1e\x85") else expected)


@pytest.mark.parametrize("content", [b"", b"id,cust,cookie,ev,ts,medium,note\n", b"\xef\xbb\xbf", b"\n\n\n"])
def test_empty_and_header_only_csv(tmp_path, content):
    """An empty file, a header only, a lone BOM, blank lines: zero rows, no error."""
    try:
        counts, loaded = ingest(tmp_path, "csv", content)
    except ConfigError as e:  # a file with no header cannot name the mapped columns
        assert "Fix:" in str(e)
        return
    assert sum(c.rows_read for c in counts) == 0 and loaded == 0
