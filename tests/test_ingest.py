"""Ingest: raw files -> staging.events + staging.quarantine (DESIGN.md, "Canonical event";
docs/config.md, "sources", "Timestamps", "Event ids and duplicates", "Quarantine").

Every test writes its own small raw files and a TOML config into tmp_path, runs
`pipeline.ingest.ingest` through the library and compares the staging tables with
hand-made expectations: the test author wrote each raw line and knows what it must
become.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import pipeline.config
import pipeline.ingest
import pipeline.warehouse
from pipeline.config import ConfigError

UTC = timezone.utc


# --------------------------------------------------------------------------- helpers


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0, us: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, us, tzinfo=UTC)


def toml_value(v) -> str:
    """A Python value as TOML (strings via JSON escapes, which TOML basic strings share)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(v)


def source(**overrides) -> dict:
    """A CSV source reading events.csv: id, cust, ev, ts (iso); channel constant web.
    An override of None removes the key."""
    s = {
        "name": "web",
        "path": "events.csv",
        "format": "csv",
        "channel": "web",
        "event_id": "id",
        "customer_id": "cust",
        "event_type": {"column": "ev"},
        "timestamp": {"column": "ts"},
    }
    s.update(overrides)
    return {k: v for k, v in s.items() if v is not None}


def write_project(tmp_path: Path, files: dict[str, str | bytes], sources: list[dict], channels=("web", "email", "store"), extra: str = "") -> Path:
    """Raw files and a journeys.toml into tmp_path; returns the config's path."""
    for name, content in files.items():
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content, encoding="utf-8")
    lines = ["[project]", 'name = "t"', f"channels = {toml_value(list(channels))}", ""]
    for s in sources:
        lines.append("[[sources]]")
        lines += [f"{json.dumps(k)} = {toml_value(v)}" for k, v in s.items()]
        lines.append("")
    cfg = tmp_path / "journeys.toml"
    cfg.write_text("\n".join(lines) + "\n" + extra, encoding="utf-8")
    return cfg


def ingest_project(tmp_path: Path, files: dict[str, str | bytes], *sources: dict, channels=("web", "email", "store"), extra: str = ""):
    """Write the project, ingest it into a fresh warehouse; returns (con, counts)."""
    cfg = write_project(tmp_path, files, list(sources) or [source()], channels, extra)
    config = pipeline.config.load_config(cfg)
    con = pipeline.warehouse.connect(tmp_path / "w.duckdb")
    counts = pipeline.ingest.ingest(con, config, batch_id="b1")
    return con, counts


def rows(con, sql: str) -> list[dict]:
    cur = con.execute(sql)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def events(con) -> list[dict]:
    return rows(con, "select * from staging.events order by source, source_file, source_row")


def quarantine(con) -> list[dict]:
    return rows(con, "select * from staging.quarantine order by source, source_file, source_row")


def by_id(con) -> dict[str, dict]:
    return {e["event_id"]: e for e in events(con)}


def reasons(con) -> dict[int, str]:
    """source_row -> quarantine reason."""
    return {q["source_row"]: q["reason"] for q in quarantine(con)}


def csv(*lines: str) -> str:
    return "\n".join(lines) + "\n"


def path_of(tmp_path: Path, name: str) -> str:
    return str((tmp_path / name).resolve())


# --------------------------------------------------------------------------- timestamps


def test_iso_offsets_are_converted_to_the_utc_instant(tmp_path):
    """An ISO time with an offset or Z is that instant, stored in UTC."""
    con, _ = ingest_project(
        tmp_path,
        {
            "events.csv": csv(
                "id,cust,ev,ts",
                "a,c1,view,2026-03-01T10:00:00+02:00",
                "b,c1,view,2026-03-01T10:00:00-05:00",
                "c,c1,view,2026-03-01T10:00:00Z",
                "d,c1,view,2026-03-01 23:30:00-05:00",
                "e,c1,view,2026-03-01T10:00:00+05:30",
                "f,c1,view,2026-03-01T10:00:00+0200",
                "g,c1,view,2026-03-01T10:00:00.250+02",
            )
        },
    )
    got = {k: e["ts"] for k, e in by_id(con).items()}
    assert got == {
        "web:a": utc(2026, 3, 1, 8),
        "web:b": utc(2026, 3, 1, 15),
        "web:c": utc(2026, 3, 1, 10),
        "web:d": utc(2026, 3, 2, 4, 30),  # crosses midnight into the next UTC day
        "web:e": utc(2026, 3, 1, 4, 30),
        "web:f": utc(2026, 3, 1, 8),
        "web:g": utc(2026, 3, 1, 8, 0, 0, 250000),
    }
    assert quarantine(con) == []


def test_iso_lowercase_z_is_utc(tmp_path):
    """RFC 3339 allows a lowercase `z` for UTC (and ingest's own zone pattern accepts it):
    2026-03-01T10:00:00z is 10:00 UTC, also when `timezone` is set."""
    con, _ = ingest_project(
        tmp_path,
        {"events.csv": csv("id,cust,ev,ts", "a,c1,view,2026-03-01T10:00:00z")},
        source(timestamp={"column": "ts", "timezone": "Asia/Tokyo"}),
    )
    assert {k: e["ts"] for k, e in by_id(con).items()} == {"web:a": utc(2026, 3, 1, 10)}


def test_iso_without_offset_is_utc_when_no_zone_is_configured(tmp_path):
    """Naive ISO times are UTC when neither timezone nor timezone_column is set."""
    con, _ = ingest_project(
        tmp_path,
        {"events.csv": csv("id,cust,ev,ts", "a,c1,view,2026-07-01T10:00:00", "b,c1,view,2026-01-01 23:59:59")},
    )
    got = {k: e["ts"] for k, e in by_id(con).items()}
    assert got == {"web:a": utc(2026, 7, 1, 10), "web:b": utc(2026, 1, 1, 23, 59, 59)}


def test_iso_without_offset_is_local_time_of_the_configured_timezone(tmp_path):
    """With `timezone`, a naive ISO time is local time there (with its summer/winter offset);
    a time that carries its own offset keeps it and ignores the setting."""
    con, _ = ingest_project(
        tmp_path,
        {
            "events.csv": csv(
                "id,cust,ev,ts",
                "winter,c1,view,2026-01-15 10:00:00",  # EST, UTC-5
                "summer,c1,view,2026-07-15T10:00:00",  # EDT, UTC-4
                "offset,c1,view,2026-01-15T10:00:00+01:00",
            )
        },
        source(timestamp={"column": "ts", "timezone": "America/New_York"}),
    )
    got = {k: e["ts"] for k, e in by_id(con).items()}
    assert got == {
        "web:winter": utc(2026, 1, 15, 15),
        "web:summer": utc(2026, 7, 15, 14),
        "web:offset": utc(2026, 1, 15, 9),
    }


def test_iso_date_without_time_is_local_midnight_of_the_configured_timezone(tmp_path):
    """A date-only ISO value has no offset, so it is naive: midnight local time of `timezone`."""
    con, _ = ingest_project(
        tmp_path,
        {"events.csv": csv("id,cust,ev,ts", "a,c1,view,2026-03-01")},
        source(timestamp={"column": "ts", "timezone": "Europe/Berlin"}),
    )
    assert [e["ts"] for e in events(con)] == [utc(2026, 2, 28, 23)]  # 00:00 CET = 23:00 UTC the day before


def test_epoch_seconds_and_milliseconds_are_utc(tmp_path):
    """`epoch` is Unix seconds (decimals allowed), `epoch_ms` Unix milliseconds; both are UTC
    and ignore `timezone`."""
    con, _ = ingest_project(
        tmp_path,
        {
            "s.csv": csv("id,cust,ev,ts", "a,c1,view,1772359200", "b,c1,view,1772359200.5"),
            "ms.csv": csv("id,cust,ev,ts", "a,c1,view,1772359200123", "b,c1,view,x17"),
        },
        source(name="sec", path="s.csv", timestamp={"column": "ts", "format": "epoch", "timezone": "Asia/Tokyo"}),
        source(name="ms", path="ms.csv", timestamp={"column": "ts", "format": "epoch_ms"}),
    )
    got = {k: e["ts"] for k, e in by_id(con).items()}
    assert got == {
        "sec:a": utc(2026, 3, 1, 10),
        "sec:b": utc(2026, 3, 1, 10, 0, 0, 500000),
        "ms:a": utc(2026, 3, 1, 10, 0, 0, 123000),
    }
    assert [(q["source"], q["source_row"], q["reason"]) for q in quarantine(con)] == [("ms", 3, "unparseable_timestamp")]


def test_strptime_pattern_reads_day_first_dates(tmp_path):
    """A strptime pattern reads the text as written: "%d/%m/%Y %H:%M" puts the day first
    (03/04 is 3 April); the naive result is local time of `timezone`; text in another
    layout is unparseable."""
    con, _ = ingest_project(
        tmp_path,
        {
            "events.csv": csv(
                "id,cust,ev,ts",
                "a,c1,view,03/04/2026 10:15",  # 3 April, BST (UTC+1)
                "b,c1,view,31/12/2025 23:59",  # GMT (UTC+0)
                "c,c1,view,2026-04-03 10:15",
            )
        },
        source(timestamp={"column": "ts", "format": "%d/%m/%Y %H:%M", "timezone": "Europe/London"}),
    )
    got = {k: e["ts"] for k, e in by_id(con).items()}
    assert got == {"web:a": utc(2026, 4, 3, 9, 15), "web:b": utc(2025, 12, 31, 23, 59)}
    assert [(q["source_row"], q["reason"], q["detail"]) for q in quarantine(con)] == [
        (4, "unparseable_timestamp", "timestamp '2026-04-03 10:15'")
    ]


def test_timezone_column_places_each_row_in_its_own_zone(tmp_path):
    """With `timezone_column`, each naive time is local time of its row's zone; a time with
    an offset keeps its offset; an unknown zone name is `unknown_timezone` (even with an
    offset); an empty zone with a naive time is `unparseable_timestamp`."""
    con, _ = ingest_project(
        tmp_path,
        {
            "events.csv": csv(
                "id,cust,ev,ts,tz",
                "berlin,c1,view,2026-01-15 12:00:00,Europe/Berlin",
                "ny,c1,view,2026-01-15 12:00:00,America/New_York",
                "kolkata,c1,view,2026-01-15 12:00:00,Asia/Kolkata",
                "utc,c1,view,2026-01-15 12:00:00,UTC",
                "tokyo_summer,c1,view,2026-07-15 12:00:00, Asia/Tokyo ",
                "offset,c1,view,2026-01-15T12:00:00+03:00,America/New_York",
                "mars,c1,view,2026-01-15 12:00:00,Mars/Olympus_Mons",
                "mars_offset,c1,view,2026-01-15T12:00:00Z,Mars/Olympus_Mons",
                "nozone,c1,view,2026-01-15 12:00:00,",
            )
        },
        source(timestamp={"column": "ts", "timezone_column": "tz"}),
    )
    got = {k: e["ts"] for k, e in by_id(con).items()}
    assert got == {
        "web:berlin": utc(2026, 1, 15, 11),
        "web:ny": utc(2026, 1, 15, 17),
        "web:kolkata": utc(2026, 1, 15, 6, 30),
        "web:utc": utc(2026, 1, 15, 12),
        "web:tokyo_summer": utc(2026, 7, 15, 3),
        "web:offset": utc(2026, 1, 15, 9),
    }
    assert reasons(con) == {8: "unknown_timezone", 9: "unknown_timezone", 10: "unparseable_timestamp"}


@pytest.mark.parametrize("zone_setting", ["timezone", "timezone_column"])
def test_daylight_saving_gap_and_ambiguous_hour_are_placed_not_lost(tmp_path, zone_setting):
    """Local times around Europe/Berlin's clock changes are loaded, never lost. Observed rule
    (DuckDB's ICU): a time in the spring gap (2026-03-29 02:30, which does not exist) is read
    with the winter offset +01:00, i.e. as 03:30 CEST = 01:30 UTC; an ambiguous time in the
    autumn (2026-10-25 02:30, which happens twice) is the later of the two, in winter time
    +01:00 = 01:30 UTC. The hours beside them are unaffected."""
    spec = {"column": "ts", "timezone": "Europe/Berlin"} if zone_setting == "timezone" else {"column": "ts", "timezone_column": "tz"}
    con, counts = ingest_project(
        tmp_path,
        {
            "events.csv": csv(
                "id,cust,ev,ts,tz",
                "before_gap,c1,view,2026-03-29 01:30:00,Europe/Berlin",
                "gap,c1,view,2026-03-29 02:30:00,Europe/Berlin",
                "after_gap,c1,view,2026-03-29 03:30:00,Europe/Berlin",
                "before_amb,c1,view,2026-10-25 01:30:00,Europe/Berlin",
                "ambiguous,c1,view,2026-10-25 02:30:00,Europe/Berlin",
                "after_amb,c1,view,2026-10-25 03:30:00,Europe/Berlin",
            )
        },
        source(timestamp=spec, properties=["tz"]),
    )
    got = {k: e["ts"] for k, e in by_id(con).items()}
    assert got == {
        "web:before_gap": utc(2026, 3, 29, 0, 30),
        "web:gap": utc(2026, 3, 29, 1, 30),
        "web:after_gap": utc(2026, 3, 29, 1, 30),
        "web:before_amb": utc(2026, 10, 24, 23, 30),
        "web:ambiguous": utc(2026, 10, 25, 1, 30),
        "web:after_amb": utc(2026, 10, 25, 2, 30),
    }
    assert quarantine(con) == []
    assert (counts[0].rows_read, counts[0].loaded) == (6, 6)


def test_times_before_min_timestamp_or_far_in_the_future_are_out_of_range(tmp_path):
    """A time before ingest.min_timestamp or after the run's start plus ingest.max_future is
    quarantined as `timestamp_out_of_range` with the time in detail; the bounds themselves
    and a time a little in the future (within max_future) load."""
    soon = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    con, _ = ingest_project(
        tmp_path,
        {
            "events.csv": csv(
                "id,cust,ev,ts",
                "epoch0,c1,view,1970-01-01T00:00:00Z",
                "just_before,c1,view,2019-12-31T23:59:59Z",
                "at_min,c1,view,2020-01-01T00:00:00Z",
                f"soon,c1,view,{soon.isoformat()}",
                "far_future,c1,view,2099-06-01T00:00:00Z",
            )
        },
        extra='[ingest]\nmin_timestamp = "2020-01-01T00:00:00Z"\nmax_future = "1d"\n',
    )
    assert {k: e["ts"] for k, e in by_id(con).items()} == {"web:at_min": utc(2020, 1, 1), "web:soon": soon}
    q = quarantine(con)
    assert [(x["source_row"], x["reason"]) for x in q] == [
        (2, "timestamp_out_of_range"),
        (3, "timestamp_out_of_range"),
        (6, "timestamp_out_of_range"),
    ]
    assert "1970-01-01" in q[0]["detail"] and "2019-12-31" in q[1]["detail"] and "2099-06-01" in q[2]["detail"]


def test_default_min_timestamp_rejects_epoch_zero(tmp_path):
    """With the default ingest settings (min 2000-01-01, max_future 1d), epoch 0 (1970) and a
    2099 epoch are `timestamp_out_of_range`."""
    con, _ = ingest_project(
        tmp_path,
        {"events.csv": csv("id,cust,ev,ts", "a,c1,view,0", "b,c1,view,4070908800", "c,c1,view,1772359200")},
        source(timestamp={"column": "ts", "format": "epoch"}),
    )
    assert list(by_id(con)) == ["web:c"]
    assert reasons(con) == {2: "timestamp_out_of_range", 3: "timestamp_out_of_range"}


def test_garbage_or_empty_time_is_unparseable(tmp_path):
    """A value that does not parse in the configured format (or is empty) is quarantined as
    `unparseable_timestamp`, with the raw text in detail."""
    con, _ = ingest_project(
        tmp_path,
        {
            "events.csv": csv(
                "id,cust,ev,ts",
                "a,c1,view,not a time",
                "b,c1,view,2026-13-45T99:00:00Z",
                "c,c1,view,",
                "d,c1,view,2026-03-01T10:00:00Z",
            )
        },
    )
    assert list(by_id(con)) == ["web:d"]
    q = quarantine(con)
    assert [(x["source_row"], x["reason"]) for x in q] == [(2, "unparseable_timestamp"), (3, "unparseable_timestamp"), (4, "unparseable_timestamp")]
    assert "not a time" in q[0]["detail"] and "2026-13-45T99:00:00Z" in q[1]["detail"]
    assert q[0]["raw_line"] == "a,c1,view,not a time"


def test_unknown_zone_name_is_unknown_timezone_and_comes_before_the_time_check(tmp_path):
    """A zone name that is not an IANA zone is `unknown_timezone`; it is checked before the
    time, so a bad zone with a bad time is still `unknown_timezone`."""
    con, _ = ingest_project(
        tmp_path,
        {
            "events.csv": csv(
                "id,cust,ev,ts,tz",
                "a,c1,view,2026-03-01 10:00:00,Europe/Atlantis",
                "b,c1,view,garbage,Not/AZone",
                "c,c1,view,2026-03-01 10:00:00,Europe/Paris",
            )
        },
        source(timestamp={"column": "ts", "timezone_column": "tz"}),
    )
    assert {k: e["ts"] for k, e in by_id(con).items()} == {"web:c": utc(2026, 3, 1, 9)}
    assert reasons(con) == {2: "unknown_timezone", 3: "unknown_timezone"}


# --------------------------------------------------------------------------- mapping


def test_customer_id_list_takes_the_first_non_empty_value(tmp_path):
    """With customer_id = [a, b, c] the first non-empty value wins, values are trimmed, and a
    whitespace-only cell counts as empty; all empty -> `missing_customer`."""
    con, _ = ingest_project(
        tmp_path,
        {
            "events.csv": csv(
                "id,user,cookie,phone,ev,ts",
                "1,u1,k1,p1,view,2026-03-01T10:00:00Z",
                "2,,k2,p2,view,2026-03-01T10:00:00Z",
                "3,   ,  ,p3,view,2026-03-01T10:00:00Z",
                "4, u4 ,k4,,view,2026-03-01T10:00:00Z",
                "5,,,,view,2026-03-01T10:00:00Z",
                "6, ,  , ,view,2026-03-01T10:00:00Z",
            )
        },
        source(customer_id=["user", "cookie", "phone"]),
    )
    assert {k: e["customer_id"] for k, e in by_id(con).items()} == {"web:1": "u1", "web:2": "k2", "web:3": "p3", "web:4": "u4"}
    assert reasons(con) == {6: "missing_customer", 7: "missing_customer"}


def test_tab_only_customer_cell_counts_as_empty(tmp_path):
    """Whitespace-only cells are empty: a customer column holding only tabs or spaces falls
    through to the next listed column, and a row with nothing else is `missing_customer`."""
    con, _ = ingest_project(
        tmp_path,
        {
            "events.csv": csv(
                "id,user,cookie,ev,ts",
                "1,\t,k1,view,2026-03-01T10:00:00Z",
                "2,\t \t,\t,view,2026-03-01T10:00:00Z",
            )
        },
        source(customer_id=["user", "cookie"]),
    )
    assert {k: e["customer_id"] for k, e in by_id(con).items()} == {"web:1": "k1"}
    assert reasons(con) == {3: "missing_customer"}


def test_event_type_is_normalised_to_snake_case(tmp_path):
    """Event names become snake_case: camelCase split, lowercased, runs of other characters
    one `_`, no leading/trailing `_`; empty after that -> `missing_event_type`."""
    names = {
        "1": ("PageView", "page_view"),
        "2": ("ORDER STATUS", "order_status"),
        "3": ("Add-to-Cart", "add_to_cart"),
        "4": ("addToCart", "add_to_cart"),
        "5": ("  Add to Cart!  ", "add_to_cart"),
        "6": ("checkout2Step", "checkout2_step"),
        "7": ("already_snake", "already_snake"),
        "8": ("__Email__Open__", "email_open"),
    }
    bad = ["", "   ", "---", "!!"]
    lines = ["id,cust,ev,ts"]
    lines += [f'{i},c1,"{raw}",2026-03-01T10:00:00Z' for i, (raw, _) in names.items()]
    lines += [f'x{j},c1,"{raw}",2026-03-01T10:00:00Z' for j, raw in enumerate(bad)]
    con, _ = ingest_project(tmp_path, {"events.csv": csv(*lines)})
    assert {k: e["event_type"] for k, e in by_id(con).items()} == {f"web:{i}": want for i, (_, want) in names.items()}
    assert reasons(con) == {10: "missing_event_type", 11: "missing_event_type", 12: "missing_event_type", 13: "missing_event_type"}


def test_event_type_prefix_is_put_in_front_after_normalising(tmp_path):
    """The source's `prefix` is prepended as written to the normalised name; a name that is
    empty after normalising is still `missing_event_type` (the prefix alone is no type)."""
    con, _ = ingest_project(
        tmp_path,
        {
            "events.csv": csv(
                "id,cust,reason,ts",
                "1,c1,PresaleQuestion,2026-03-01T10:00:00Z",
                "2,c1,Billing Issue,2026-03-01T10:00:00Z",
                "3,c1,?,2026-03-01T10:00:00Z",
            )
        },
        source(event_type={"column": "reason", "prefix": "call_"}),
    )
    assert {k: e["event_type"] for k, e in by_id(con).items()} == {"web:1": "call_presale_question", "web:2": "call_billing_issue"}
    assert reasons(con) == {4: "missing_event_type"}


def test_event_type_constant_value(tmp_path):
    """event_type = { value = ... } gives every row that (normalised) type."""
    con, _ = ingest_project(
        tmp_path,
        {"events.csv": csv("id,cust,ts", "1,c1,2026-03-01T10:00:00Z", "2,c2,2026-03-01T11:00:00Z")},
        source(event_type={"value": "StoreVisit"}),
    )
    assert [e["event_type"] for e in events(con)] == ["store_visit", "store_visit"]


def test_channel_from_a_column_is_trimmed_lowercased_and_checked(tmp_path):
    """A channel column's value is trimmed and lowercased; a value not in project.channels,
    or empty, is `unknown_channel`."""
    con, _ = ingest_project(
        tmp_path,
        {
            "events.csv": csv(
                "id,cust,ev,ts,medium",
                "1,c1,view,2026-03-01T10:00:00Z,WEB",
                "2,c1,view,2026-03-01T10:00:00Z, Email ",
                "3,c1,view,2026-03-01T10:00:00Z,store",
                "4,c1,view,2026-03-01T10:00:00Z,fax",
                "5,c1,view,2026-03-01T10:00:00Z,",
                "6,c1,view,2026-03-01T10:00:00Z,web site",
            )
        },
        source(channel={"column": "medium"}),
    )
    assert {k: e["channel"] for k, e in by_id(con).items()} == {"web:1": "web", "web:2": "email", "web:3": "store"}
    assert reasons(con) == {5: "unknown_channel", 6: "unknown_channel", 7: "unknown_channel"}


def test_channel_constant_is_lowercased(tmp_path):
    """A constant channel is lowercased before it is checked and stored."""
    con, _ = ingest_project(
        tmp_path,
        {"events.csv": csv("id,cust,ev,ts", "1,c1,view,2026-03-01T10:00:00Z")},
        source(channel="Store"),
    )
    assert [e["channel"] for e in events(con)] == ["store"]


def test_identifiers_map_holds_only_the_non_empty_identifiers(tmp_path):
    """`identifiers` maps each configured type to the row's trimmed value, leaving out the
    types whose cell is empty (or whitespace)."""
    con, _ = ingest_project(
        tmp_path,
        {
            "events.csv": csv(
                "id,user,cookie,phone,ev,ts",
                "1,u1,k1,+49 30 1234,view,2026-03-01T10:00:00Z",
                "2,,k2,,view,2026-03-01T10:00:00Z",
                "3, u3 ,   ,,view,2026-03-01T10:00:00Z",
            )
        },
        source(customer_id=["user", "cookie"], identifiers={"customer": "user", "cookie": "cookie", "phone": "phone"}),
    )
    got = {k: dict(e["identifiers"]) for k, e in by_id(con).items()}
    assert got == {
        "web:1": {"customer": "u1", "cookie": "k1", "phone": "+49 30 1234"},
        "web:2": {"cookie": "k2"},
        "web:3": {"customer": "u3"},
    }


def test_properties_hold_the_configured_columns_only(tmp_path):
    """`properties` is a JSON object of exactly the configured columns (by their names);
    other columns of the file are not in it; text round-trips (quotes, unicode)."""
    con, _ = ingest_project(
        tmp_path,
        {
            "events.csv": csv(
                "id,cust,ev,ts,page,ref,secret",
                '1,c1,view,2026-03-01T10:00:00Z,/home,"say ""hi"", Zoë",pw1',
                "2,c1,view,2026-03-01T10:00:00Z,/p/2,,pw2",
            )
        },
        source(properties=["page", "ref"]),
    )
    props = {k: json.loads(e["properties"]) for k, e in by_id(con).items()}
    assert props["web:1"] == {"page": "/home", "ref": 'say "hi", Zoë'}
    assert set(props["web:2"]) == {"page", "ref"} and props["web:2"]["page"] == "/p/2"
    assert props["web:2"]["ref"] in (None, "")  # an empty cell carries no text
    assert all("secret" not in p for p in props.values())


def test_lineage_columns_give_source_file_and_physical_csv_line(tmp_path):
    """source is the configured name, source_file the file's path, source_row the physical
    line (CSV header = line 1); blank lines count as lines but are not rows; quarantined rows
    carry their line too."""
    con, counts = ingest_project(
        tmp_path,
        {
            "events.csv": csv(
                "id,cust,ev,ts",
                "1,c1,view,2026-03-01T10:00:00Z",
                "2,c1,view,2026-03-01T10:01:00Z",
                "",
                "3,,view,2026-03-01T10:02:00Z",
                "",
                "",
                "4,c1,view,2026-03-01T10:03:00Z",
            )
        },
        source(name="site-1"),
    )
    assert [(e["event_id"], e["source"], e["source_file"], e["source_row"], e["batch_id"]) for e in events(con)] == [
        ("site-1:1", "site-1", path_of(tmp_path, "events.csv"), 2, "b1"),
        ("site-1:2", "site-1", path_of(tmp_path, "events.csv"), 3, "b1"),
        ("site-1:4", "site-1", path_of(tmp_path, "events.csv"), 8, "b1"),
    ]
    q = quarantine(con)
    assert [(x["source"], x["source_file"], x["source_row"], x["reason"], x["raw_line"]) for x in q] == [
        ("site-1", path_of(tmp_path, "events.csv"), 5, "missing_customer", "3,,view,2026-03-01T10:02:00Z")
    ]
    assert (counts[0].rows_read, counts[0].loaded, counts[0].quarantined) == (4, 3, 1)


def test_lineage_of_json_lines_counts_lines_from_one(tmp_path):
    """In a JSON-lines file source_row is the physical line, the first line being 1; blank
    lines count as lines but are not rows; a key absent on a line is an empty value."""
    con, counts = ingest_project(
        tmp_path,
        {
            "events.jsonl": "\n".join(
                [
                    '{"id": "1", "cust": "c1", "ev": "view", "ts": "2026-03-01T10:00:00Z"}',
                    "",
                    '{"id": "2", "cust": "c1", "ev": "view", "ts": "2026-03-01T10:01:00Z", "extra": [1, 2]}',
                    "   ",
                    '{"id": "3", "ev": "view", "ts": "2026-03-01T10:02:00Z"}',
                    '{"ev": "click", "id": 4, "cust": "c2", "ts": "2026-03-01T10:03:00Z"}',
                ]
            )
            + "\n"
        },
        source(path="events.jsonl", format="jsonl"),
    )
    assert [(e["event_id"], e["customer_id"], e["event_type"], e["source_row"]) for e in events(con)] == [
        ("web:1", "c1", "view", 1),
        ("web:2", "c1", "view", 3),
        ("web:4", "c2", "click", 6),
    ]
    assert reasons(con) == {5: "missing_customer"}
    assert (counts[0].rows_read, counts[0].loaded, counts[0].quarantined) == (4, 3, 1)


# --------------------------------------------------------------------------- event ids


def test_event_id_is_source_name_colon_the_trimmed_id(tmp_path):
    """event_id is `<source>:<id>`, the id trimmed; the same id in two sources are two events."""
    con, _ = ingest_project(
        tmp_path,
        {
            "a.csv": csv("id,cust,ev,ts", " 42 ,c1,view,2026-03-01T10:00:00Z", "x-1/b,c1,view,2026-03-01T10:00:00Z"),
            "b.csv": csv("id,cust,ev,ts", "42,c1,view,2026-03-01T10:00:00Z"),
        },
        source(name="web", path="a.csv"),
        source(name="shop", path="b.csv", channel="store"),
    )
    assert sorted(by_id(con)) == ["shop:42", "web:42", "web:x-1/b"]


def test_event_id_without_id_column_is_the_md5_of_the_natural_key(tmp_path):
    """Without event_id, the id is md5 of the natural_key values (empty as '') joined by
    U+001F; the same receipt exported twice is one event (a duplicate)."""
    con, counts = ingest_project(
        tmp_path,
        {
            "r1.csv": csv("store,receipt,cust,ev,ts", "s1,r1,c1,purchase,2026-03-01T10:00:00Z", "s1,,c2,purchase,2026-03-01T11:00:00Z"),
            "r2.csv": csv("store,receipt,cust,ev,ts", "s1,r1,c1,purchase,2026-03-01T10:00:00Z"),
        },
        source(name="pos", path="r*.csv", channel="store", event_id=None, natural_key=["store", "receipt"]),
    )
    md5 = lambda s: hashlib.md5(s.encode()).hexdigest()  # noqa: E731
    got = {k: e["customer_id"] for k, e in by_id(con).items()}
    assert got == {f"pos:{md5('s1' + chr(31) + 'r1')}": "c1", f"pos:{md5('s1' + chr(31))}": "c2"}
    assert [(c.rows_read, c.loaded, c.duplicates, c.quarantined) for c in counts] == [(2, 2, 0, 0), (1, 0, 1, 0)]


def test_natural_key_values_are_trimmed_before_hashing(tmp_path):
    """Values are read as text and trimmed (docs/config.md, sources), so the natural key hashes
    the trimmed values: a receipt re-exported with padded cells is the same event id
    (quarantined as `duplicate_event_id`, since its line differs), and a whitespace-only key
    cell hashes as ''."""
    con, _ = ingest_project(
        tmp_path,
        {
            "events.csv": csv(
                "store,receipt,cust,ev,ts",
                "s1,r1,c1,purchase,2026-03-01T10:00:00Z",
                " s1 , r1 ,c1,purchase,2026-03-01T10:00:00Z",
                "s2,   ,c2,purchase,2026-03-01T11:00:00Z",
            )
        },
        source(name="pos", channel="store", event_id=None, natural_key=["store", "receipt"]),
    )
    md5 = lambda s: hashlib.md5(s.encode()).hexdigest()  # noqa: E731
    assert sorted(by_id(con)) == sorted([f"pos:{md5('s1' + chr(31) + 'r1')}", f"pos:{md5('s2' + chr(31))}"])
    assert reasons(con) == {3: "duplicate_event_id"}


def test_empty_event_id_cell_gets_a_deterministic_content_hash(tmp_path):
    """A row whose event_id cell is empty is loaded (not lost) with `<source>:<md5 of its
    content>`: stable across runs, different for different content, equal for an identical
    line (which is then a duplicate)."""
    files = {
        "events.csv": csv(
            "id,cust,ev,ts",
            ",c1,view,2026-03-01T10:00:00Z",
            "  ,c1,click,2026-03-01T10:00:00Z",
            ",c1,view,2026-03-01T10:00:00Z",
            "7,c1,view,2026-03-01T10:00:00Z",
        )
    }
    con, counts = ingest_project(tmp_path, files)
    ev = events(con)
    assert [e["source_row"] for e in ev] == [2, 3, 5]
    hashed = [e["event_id"] for e in ev[:2]]
    assert all(h.startswith("web:") and len(h) == len("web:") + 32 and all(ch in "0123456789abcdef" for ch in h[4:]) for h in hashed)
    assert hashed[0] != hashed[1]
    assert ev[2]["event_id"] == "web:7"
    assert (counts[0].rows_read, counts[0].loaded, counts[0].duplicates, counts[0].quarantined) == (4, 3, 1, 0)
    # a second ingest of the same files gives the same ids
    again = tmp_path / "again"
    con2, _ = ingest_project(again, files)
    assert [e["event_id"] for e in events(con2)] == [e["event_id"] for e in ev]


# --------------------------------------------------------------------------- duplicates


def test_exact_repeated_line_is_a_duplicate_not_loaded_nor_quarantined(tmp_path):
    """The same line twice (same id, same content): the first loads, the second is counted
    as a duplicate and is in neither table."""
    con, counts = ingest_project(
        tmp_path,
        {
            "events.csv": csv(
                "id,cust,ev,ts",
                "1,c1,view,2026-03-01T10:00:00Z",
                "1,c1,view,2026-03-01T10:00:00Z",
                "2,c1,view,2026-03-01T10:05:00Z",
                "1,c1,view,2026-03-01T10:00:00Z",
            )
        },
    )
    assert [(e["event_id"], e["source_row"]) for e in events(con)] == [("web:1", 2), ("web:2", 4)]
    assert quarantine(con) == []
    assert (counts[0].rows_read, counts[0].loaded, counts[0].duplicates, counts[0].quarantined) == (4, 2, 2, 0)


def test_same_id_different_content_is_quarantined_first_by_file_and_line_kept(tmp_path):
    """Rows of one source with the same id but a different line: the first by file path then
    line is loaded, each later one is `duplicate_event_id` with detail naming the id. A row
    quarantined for another reason does not count as the first."""
    con, counts = ingest_project(
        tmp_path,
        {
            # b.csv sorts after a.csv, so a.csv's row 7 wins though it is on a later line
            "events_b.csv": csv("id,cust,ev,ts", "7,c1,view,2026-03-01T09:00:00Z", "8,c1,view,2026-03-01T12:00:00Z"),
            "events_a.csv": csv(
                "id,cust,ev,ts",
                "8,c1,view,bad time",
                "9,c1,view,2026-03-01T10:00:00Z",
                "7,c1,click,2026-03-01T11:00:00Z",
                "9,c1,view,2026-03-01T10:00:01Z",
            ),
        },
        source(path="events_*.csv"),
    )
    a, b = path_of(tmp_path, "events_a.csv"), path_of(tmp_path, "events_b.csv")
    assert {k: (e["source_file"], e["source_row"], e["event_type"]) for k, e in by_id(con).items()} == {
        "web:7": (a, 4, "click"),
        "web:8": (b, 3, "view"),  # a.csv's row 8 was quarantined, so b.csv's is the first valid one
        "web:9": (a, 3, "view"),
    }
    q = [(x["source_file"], x["source_row"], x["reason"], x["detail"]) for x in quarantine(con)]
    assert q == [
        (a, 2, "unparseable_timestamp", "timestamp 'bad time'"),
        (a, 5, "duplicate_event_id", "event id web:9 already loaded with different content"),
        (b, 2, "duplicate_event_id", "event id web:7 already loaded with different content"),
    ]
    assert {x["raw_line"] for x in quarantine(con) if x["reason"] == "duplicate_event_id"} == {
        "9,c1,view,2026-03-01T10:00:01Z",
        "7,c1,view,2026-03-01T09:00:00Z",
    }


def test_counts_per_file_add_up_to_the_lines_of_each_file(tmp_path):
    """Per file: rows_read = loaded + duplicates + quarantined, and each equals a hand count
    of the file's lines (blank lines not counted)."""
    con, counts = ingest_project(
        tmp_path,
        {
            "events_1.csv": csv(
                "id,cust,ev,ts",
                "1,c1,view,2026-03-01T10:00:00Z",  # loaded
                "2,c1,view,2026-03-01T10:01:00Z",  # loaded
                "1,c1,view,2026-03-01T10:00:00Z",  # duplicate
                "3,,view,2026-03-01T10:02:00Z",  # missing_customer
                "",
                "4,c1,view",  # malformed
            ),
            "events_2.csv": csv(
                "id,cust,ev,ts",
                "2,c1,view,2026-03-01T10:01:00Z",  # duplicate of file 1
                "1,c1,click,2026-03-01T10:00:00Z",  # duplicate_event_id
                "5,c1,view,2026-03-01T10:05:00Z",  # loaded
            ),
            "events_3.csv": "id,cust,ev,ts\n",  # header only
        },
        source(path="events_*.csv"),
    )
    got = {Path(c.source_file).name: (c.rows_read, c.loaded, c.duplicates, c.quarantined) for c in counts}
    assert got == {"events_1.csv": (5, 2, 1, 2), "events_2.csv": (3, 1, 1, 1), "events_3.csv": (0, 0, 0, 0)}
    for c in counts:
        assert c.rows_read == c.loaded + c.duplicates + c.quarantined
        assert c.bytes == (tmp_path / Path(c.source_file).name).stat().st_size
        assert c.sha256 == hashlib.sha256((tmp_path / Path(c.source_file).name).read_bytes()).hexdigest()
    assert len(events(con)) == 3 and len(quarantine(con)) == 3


# --------------------------------------------------------------------------- malformed input


def test_csv_line_with_too_few_or_too_many_fields_is_malformed(tmp_path):
    """A CSV line with too few or too many fields is `malformed_line`, with its raw line, its
    line number and the reader's error in detail; the lines around it load."""
    con, counts = ingest_project(
        tmp_path,
        {
            "events.csv": csv(
                "id,cust,ev,ts",
                "1,c1,view,2026-03-01T10:00:00Z",
                "2,c1,view",
                "3,c1,view,2026-03-01T10:00:00Z,surplus",
                "4,c1,view,2026-03-01T10:00:00Z",
            )
        },
    )
    assert [(e["event_id"], e["source_row"]) for e in events(con)] == [("web:1", 2), ("web:4", 5)]
    q = quarantine(con)
    assert [(x["source_row"], x["reason"], x["raw_line"]) for x in q] == [
        (3, "malformed_line", "2,c1,view"),
        (4, "malformed_line", "3,c1,view,2026-03-01T10:00:00Z,surplus"),
    ]
    assert all(x["detail"] for x in q)
    assert (counts[0].rows_read, counts[0].loaded, counts[0].quarantined) == (4, 2, 2)


def test_json_line_that_is_not_a_json_object_is_malformed(tmp_path):
    """A JSON line that is not JSON, or is JSON but not an object (array, number, string,
    null), is `malformed_line` with its raw line."""
    lines = [
        '{"id": "1", "cust": "c1", "ev": "view", "ts": "2026-03-01T10:00:00Z"}',
        "not json at all",
        '{"id": "2", "cust": "c1"',
        "[1, 2, 3]",
        "42",
        '"a string"',
        "null",
        '{"id": "3", "cust": "c1", "ev": "view", "ts": "2026-03-01T10:00:00Z"}',
    ]
    con, counts = ingest_project(tmp_path, {"events.jsonl": "\n".join(lines) + "\n"}, source(path="events.jsonl", format="jsonl"))
    assert [(e["event_id"], e["source_row"]) for e in events(con)] == [("web:1", 1), ("web:3", 8)]
    assert [(x["source_row"], x["reason"], x["raw_line"]) for x in quarantine(con)] == [(i, "malformed_line", lines[i - 1]) for i in range(2, 8)]
    assert (counts[0].rows_read, counts[0].loaded, counts[0].quarantined) == (8, 2, 6)


def test_csv_with_windows_line_endings_loads_with_physical_line_numbers(tmp_path):
    """CRLF line endings: rows load with their physical line numbers, the carriage return is
    not part of the last field, and an exact repeated line is still a duplicate."""
    con, counts = ingest_project(
        tmp_path,
        {
            "events.csv": b"id,cust,ev,ts,page\r\n"
            b"1,c1,view,2026-03-01T10:00:00Z,/a\r\n"
            b"1,c1,view,2026-03-01T10:00:00Z,/a\r\n"
            b"\r\n"
            b"2,c1,view,2026-03-01T10:05:00Z,/b\r\n"
        },
        source(properties=["page"]),
    )
    assert [(e["event_id"], e["source_row"], json.loads(e["properties"])) for e in events(con)] == [
        ("web:1", 2, {"page": "/a"}),
        ("web:2", 5, {"page": "/b"}),
    ]
    assert (counts[0].rows_read, counts[0].loaded, counts[0].duplicates, counts[0].quarantined) == (3, 2, 1, 0)


@pytest.mark.parametrize("content", [
    b"id,cust,ev,ts\n1,c1,view,2026-03-01T10:00:00Z\n\n2,c1,view\n",
    b"id,cust,ev,ts\r\n1,c1,view,2026-03-01T10:00:00Z\r\n\r\n2,c1,view\r\n",
], ids=["lf-after-blank-line", "crlf"])
def test_malformed_csv_line_keeps_its_exact_raw_line(tmp_path, content):
    """The quarantined raw line of a malformed CSV line is that line's text, without the
    line ends of the blank lines before it or of a CRLF."""
    con, _ = ingest_project(tmp_path, {"events.csv": content})
    assert [(q["source_row"], q["reason"], q["raw_line"]) for q in quarantine(con)] == [(4, "malformed_line", "2,c1,view")]


def test_csv_quoted_fields_with_delimiter_and_escaped_quotes_load(tmp_path):
    """Quoted CSV fields may hold the delimiter and doubled quotes; they load as their text."""
    con, _ = ingest_project(
        tmp_path,
        {
            "events.csv": csv(
                "id,cust,ev,ts,note",
                '"1","c,1","Add to ""Cart""",2026-03-01T10:00:00Z,"a,b;c"',
                '2,c2,view,2026-03-01T10:00:00Z,"He said ""hi"""',
            )
        },
        source(properties=["note"]),
    )
    got = {k: (e["customer_id"], e["event_type"], json.loads(e["properties"])["note"], e["source_row"]) for k, e in by_id(con).items()}
    assert got == {"web:1": ("c,1", "add_to_cart", "a,b;c", 2), "web:2": ("c2", "view", 'He said "hi"', 3)}


def test_csv_with_a_utf8_bom_reads_its_first_column(tmp_path):
    """A UTF-8 byte-order mark before the header is not part of the first column's name."""
    con, _ = ingest_project(
        tmp_path,
        {"events.csv": b"\xef\xbb\xbf" + csv("id,cust,ev,ts", "1,c1,view,2026-03-01T10:00:00Z", "2,c\xc3\xa9,view,2026-03-01T10:00:00Z").encode("latin-1")},
    )
    assert [(e["event_id"], e["customer_id"], e["source_row"]) for e in events(con)] == [("web:1", "c1", 2), ("web:2", "cé", 3)]


@pytest.mark.parametrize("fmt,name,content", [
    ("csv", "events.csv", ""),
    ("csv", "events.csv", "id,cust,ev,ts\n"),
    ("csv", "events.csv", "id,cust,ev,ts"),
    ("jsonl", "events.jsonl", ""),
    ("jsonl", "events.jsonl", "\n\n"),
])
def test_empty_and_header_only_files_give_no_rows_and_no_error(tmp_path, fmt, name, content):
    """An empty file, a header-only CSV (with or without a final newline) and a JSON-lines
    file of blank lines give 0 rows, a zero count, and no error."""
    con, counts = ingest_project(tmp_path, {name: content}, source(path=name, format=fmt))
    assert events(con) == [] and quarantine(con) == []
    assert [(Path(c.source_file).name, c.rows_read, c.loaded, c.duplicates, c.quarantined) for c in counts] == [(name, 0, 0, 0, 0)]


def test_text_that_looks_like_null_stays_a_real_value(tmp_path):
    """`NA`, `null`, `NULL` and `None` are real ids and customers, not missing values."""
    con, _ = ingest_project(
        tmp_path,
        {
            "events.csv": csv(
                "id,cust,ev,ts",
                "NA,NA,view,2026-03-01T10:00:00Z",
                "null,null,view,2026-03-01T10:00:00Z",
                "NULL,c1,view,2026-03-01T10:00:00Z",
                "None,c1,view,2026-03-01T10:00:00Z",
            ),
            "events.jsonl": '{"id": "null", "cust": "NA", "ev": "view", "ts": "2026-03-01T10:00:00Z"}\n',
        },
        source(),
        source(name="app", path="events.jsonl", format="jsonl", channel="web"),
    )
    got = {k: e["customer_id"] for k, e in by_id(con).items()}
    assert got == {"web:NA": "NA", "web:null": "null", "web:NULL": "c1", "web:None": "c1", "app:null": "NA"}
    assert quarantine(con) == []


def test_csv_with_extra_unmapped_columns_loads(tmp_path):
    """Columns the config does not map are ignored, wherever they are in the header."""
    con, _ = ingest_project(
        tmp_path,
        {"events.csv": csv("junk0,id,junk1,cust,ev,junk2,ts,junk3", "x,1,y,c1,view,z,2026-03-01T10:00:00Z,w")},
    )
    assert [(e["event_id"], e["customer_id"], e["event_type"], e["ts"]) for e in events(con)] == [("web:1", "c1", "view", utc(2026, 3, 1, 10))]


def test_csv_with_another_delimiter(tmp_path):
    """`delimiter` sets the CSV field separator; the other separators are plain text."""
    con, _ = ingest_project(
        tmp_path,
        {"events.csv": csv("id;cust;ev;ts;note", "1;c1;view;2026-03-01T10:00:00Z;a,b")},
        source(delimiter=";", properties=["note"]),
    )
    assert [(e["event_id"], json.loads(e["properties"])) for e in events(con)] == [("web:1", {"note": "a,b"})]


# --------------------------------------------------------------------------- parquet


def test_parquet_rows_load_with_one_based_row_numbers(tmp_path):
    """Parquet rows load like CSV rows; source_row is the 1-based row number; non-text
    columns are read as their text; bad rows are quarantined with their row number."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table(
        {
            "id": pa.array([10, 11, 12, 13], pa.int64()),
            "cust": ["c1", "c2", None, "c4"],
            "ev": ["PageView", "purchase", "view", "view"],
            "ts": ["2026-03-01T10:00:00+01:00", "2026-03-01 12:00:00", "2026-03-01T10:00:00Z", "nope"],
            "unused": [1.5, 2.5, 3.5, 4.5],
        }
    )
    pq.write_table(table, tmp_path / "events.parquet")
    con, counts = ingest_project(tmp_path, {}, source(path="events.parquet", format="parquet"))
    assert [(e["event_id"], e["customer_id"], e["event_type"], e["ts"], e["source_row"]) for e in events(con)] == [
        ("web:10", "c1", "page_view", utc(2026, 3, 1, 9), 1),
        ("web:11", "c2", "purchase", utc(2026, 3, 1, 12), 2),
    ]
    assert reasons(con) == {3: "missing_customer", 4: "unparseable_timestamp"}
    assert (counts[0].rows_read, counts[0].loaded, counts[0].quarantined) == (4, 2, 2)


def test_parquet_missing_mapped_column_is_a_config_error_naming_file_and_column(tmp_path):
    """A Parquet file without a column the source maps stops ingest with a ConfigError that
    names the file and the column, before anything is loaded."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(pa.table({"id": ["1"], "cust": ["c1"], "event": ["view"], "ts": ["2026-03-01T10:00:00Z"]}), tmp_path / "events.parquet")
    cfg = write_project(tmp_path, {}, [source(path="events.parquet", format="parquet")])
    config = pipeline.config.load_config(cfg)
    con = pipeline.warehouse.connect(tmp_path / "w.duckdb")
    with pytest.raises(ConfigError) as e:
        pipeline.ingest.ingest(con, config, batch_id="b1")
    assert path_of(tmp_path, "events.parquet") in str(e.value)
    assert "'ev'" in str(e.value)
    assert con.execute("select count(*) from staging.events").fetchall() == [(0,)]


# --------------------------------------------------------------------------- identifiers in SQL


WEIRD = 'we"ird;col'
WEIRD2 = "it's -- x"


def test_config_column_names_with_quotes_and_semicolons_load_from_csv(tmp_path):
    """Column names with quotes, semicolons and SQL comment marks, mapped in the config, load
    their values: config strings are never pasted into SQL."""
    con, _ = ingest_project(
        tmp_path,
        {"events.csv": csv(f'id,cust,"we""ird;col",ts,{WEIRD2}', '1,c1,"PageView",2026-03-01T10:00:00Z,\'; drop table x; --')},
        source(event_type={"column": WEIRD, "prefix": "x';--"}, properties=[WEIRD2], identifiers={"o'k": "cust"}),
    )
    (e,) = events(con)
    assert e["event_type"] == "x';--page_view"
    assert json.loads(e["properties"]) == {WEIRD2: "'; drop table x; --"}
    assert dict(e["identifiers"]) == {"o'k": "c1"}


def test_config_column_names_with_quotes_and_semicolons_load_from_jsonl_and_parquet(tmp_path):
    """The same odd names work as JSON keys and as Parquet column names."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(pa.table({"id": ["p1"], "cust": ["c1"], WEIRD: ["Click"], "ts": ["2026-03-01T10:00:00Z"]}), tmp_path / "e.parquet")
    line = json.dumps({"id": "j1", "cust": "c1", WEIRD: "ViewItem", "ts": "2026-03-01T10:00:00Z", WEIRD2: "v"})
    con, _ = ingest_project(
        tmp_path,
        {"e.jsonl": line + "\n"},
        source(name="j", path="e.jsonl", format="jsonl", event_type={"column": WEIRD}, properties=[WEIRD2]),
        source(name="p", path="e.parquet", format="parquet", event_type={"column": WEIRD}),
    )
    got = {k: (e["event_type"], json.loads(e["properties"])) for k, e in by_id(con).items()}
    assert got == {"j:j1": ("view_item", {WEIRD2: "v"}), "p:p1": ("click", {})}


# --------------------------------------------------------------------------- customers


def test_customer_listed_twice_keeps_its_first_rows_segments(tmp_path):
    """In the customers file the first row of an id wins (trimmed ids); rows with an empty id
    are skipped; an empty segment cell is missing (null)."""
    cfg = write_project(
        tmp_path,
        {
            "events.csv": csv("id,cust,ev,ts", "1,c1,view,2026-03-01T10:00:00Z"),
            "customers.csv": csv(
                f'customer_id,region,"{WEIRD.replace(chr(34), chr(34) * 2)}"',
                "c1,north,gold",
                "c2,south,",
                "c1,west,silver",
                " c2 ,east,bronze",
                ",nowhere,tin",
            ),
        },
        [source()],
        extra=f'[customers]\npath = "customers.csv"\nsegments = ["region", {json.dumps(WEIRD)}]\n',
    )
    config = pipeline.config.load_config(cfg)
    con = pipeline.warehouse.connect(tmp_path / "w.duckdb")
    pipeline.ingest.load_customers(con, config)
    got = sorted(con.execute(f'select customer_id, region, "{WEIRD.replace(chr(34), chr(34) * 2)}" from staging.customers').fetchall())
    assert got == [("c1", "north", "gold"), ("c2", "south", None)]


# --------------------------------------------------------------------------- encodings

LATIN1 = "id,cust,ev,ts\n1,c1,view,2026-01-01T10:00:00Z\n2,c1,view,2026-01-01T10:05:00Z\n".encode() + "3,c2,caf\u00e9_visit,2026-01-01T11:00:00Z\n".encode("latin-1")


def test_a_file_in_another_encoding_stops_with_the_file_line_and_fix(tmp_path):
    """Bytes that are not UTF-8 (a Latin-1 é on line 4) are a file problem: ConfigError (exit 2) naming the
    file, the line, and the encoding key to set; nothing is guessed or lost silently."""
    with pytest.raises(ConfigError) as e:
        ingest_project(tmp_path, {"events.csv": LATIN1})
    message = str(e.value)
    assert f"{tmp_path / 'events.csv'}, line 4" in message
    assert 'encoding = "latin-1"' in message and "'web'" in message


def test_encoding_latin1_reads_the_file(tmp_path):
    """With encoding = "latin-1" every row loads and the text is decoded right (é, not a replacement)."""
    con, counts = ingest_project(tmp_path, {"events.csv": LATIN1}, source(encoding="latin-1"))
    assert [c.loaded for c in counts] == [3]
    assert by_id(con)["web:3"]["event_type"] == "caf\u00e9_visit"  # letters of any script are kept
    con.close()


def test_an_unknown_encoding_is_a_config_error(tmp_path):
    """encoding must be one DuckDB can read here: anything else is a ConfigError naming the key."""
    cfg = write_project(tmp_path, {"events.csv": "id,cust,ev,ts\n"}, [source(encoding="cp1252")])
    with pytest.raises(ConfigError, match=r"sources\.web\.encoding.*utf-8, utf-16, latin-1"):
        pipeline.config.load_config(cfg)


def test_a_huge_field_loads(tmp_path):
    """A 3 MB field (over DuckDB's default 2 MB line limit) loads whole, for CSV and JSON lines."""
    big = "x" * 3_000_000
    con, counts = ingest_project(
        tmp_path, {"events.csv": f"id,cust,ev,ts,note\n1,c1,view,2026-01-01T10:00:00Z,{big}\n2,c1,view,2026-01-01T10:05:00Z,small\n"},
        source(properties=["note"]))
    assert [(c.rows_read, c.loaded) for c in counts] == [(2, 2)]
    assert len(json.loads(by_id(con)["web:1"]["properties"])["note"]) == 3_000_000
    con.close()
