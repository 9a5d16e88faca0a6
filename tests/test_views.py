"""The analyst views of sql/views (schema views): views.journey_paths, views.stage_dwell and
views.rankings, built by the real SQL files through `conftest.marts_db` from four hand-made
journeys, and checked against numbers counted by hand below. Each view also matches its
contract (sql/views/<view>.md) column for column."""

from __future__ import annotations

import importlib.util
import polars as pl
import pytest

from conftest import ROOT, events_frame, marts_db, ts
from pipeline import warehouse
from pipeline.config import StageRule
from pipeline.graph import likely_paths, segment_graphs
from pipeline.journeys import BuildSettings

spec = importlib.util.spec_from_file_location("gen_warehouse", ROOT / "docs" / "gen_warehouse.py")
gen_warehouse = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gen_warehouse)

RULES = (
    StageRule("r_view", "awareness", event_type=("view",)),
    StageRule("r_compare", "consideration", event_type=("compare",)),
    StageRule("r_buy", "purchase", event_type=("buy",)),
)
AS_OF = ts("2026-03-01")

# Four journeys (inactivity timeout 30 min, journey timeout 30 days, as of 2026-03-01):
#   c1 (north) awareness 10:00-10:10 (dwell 600 s), consideration 12:00, purchase 2 days later: converted
#   c2 (south) awareness 09:00, consideration 09:20 .. 01-10 10:20 (dwell 9 d 1 h = 781200 s): dropped
#   c3 (no segment row: '(unknown)') consideration, awareness, consideration on 02-20: open
#   c4 (north) awareness 10:00 .. 11:15 (4500 s), consideration 01-08 .. 01-11 (259200 s): dropped
EVENTS = [
    ("c1", "2026-01-01 10:00", "web", "view"),
    ("c1", "2026-01-01 10:10", "web", "view"),
    ("c1", "2026-01-01 12:00", "email", "compare"),
    ("c1", "2026-01-03 12:00", "store", "buy"),
    ("c2", "2026-01-01 09:00", "social", "view"),
    ("c2", "2026-01-01 09:20", "web", "compare"),
    ("c2", "2026-01-02 10:20", "call_center", "compare"),
    ("c2", "2026-01-10 10:20", "web", "compare"),
    ("c3", "2026-02-20 08:00", "app", "compare"),
    ("c3", "2026-02-20 09:00", "app", "view"),
    ("c3", "2026-02-20 09:05", "app", "compare"),
    ("c4", "2026-01-05 10:00", "web", "view"),
    ("c4", "2026-01-05 10:25", "web", "view"),
    ("c4", "2026-01-05 10:50", "web", "view"),
    ("c4", "2026-01-05 11:15", "web", "view"),
    ("c4", "2026-01-08 11:15", "web", "compare"),
    ("c4", "2026-01-11 11:15", "web", "compare"),
]
SEGMENTS = pl.DataFrame(
    [("c1", "region", "north"), ("c2", "region", "south"), ("c4", "region", "north")],
    schema={"customer_id": pl.String, "segment_key": pl.String, "segment_value": pl.String},
    orient="row",
)


@pytest.fixture(scope="module")
def con():
    con = marts_db(events_frame(EVENTS), BuildSettings(rules=RULES), AS_OF,
                   stage_order=("awareness", "consideration", "purchase"), segments_long=SEGMENTS)
    yield con
    con.close()


def rows(con, sql: str, params=None) -> list[dict]:
    return con.sql(sql, params=params).pl().to_dicts()


def test_views_are_views_in_schema_views_and_match_their_contracts(con):
    """Every file of warehouse.VIEWS makes a view views.<file name>, and its columns and types
    (duckdb_columns, as `describe` shows them) are exactly those of its contract."""
    made = {r["table_name"]: r["table_type"] for r in rows(con, "select table_name, table_type from information_schema.tables where table_schema = 'views'")}
    names = [name.removeprefix("views/").removesuffix(".sql") for name in warehouse.VIEWS]
    assert made == {n: "VIEW" for n in names}
    for name in names:
        contract = gen_warehouse.parse_contract(ROOT / "sql" / "views" / f"{name}.md")
        assert contract["table"] == f"views.{name}"
        described = [(r["column_name"], r["column_type"]) for r in rows(con, f"describe views.{name}")]
        assert described == [(c[0], c[1]) for c in contract["columns"]], name
        key = ", ".join(contract["key"])
        duplicates = con.sql(f"select {key}, count(*) from views.{name} group by all having count(*) > 1").fetchall()
        assert duplicates == [], f"{name}: key {key} is not unique"


def test_journey_paths(con):
    """One row per journey: its status, times, sessions, events, the collapsed nodes of its
    visits joined by ' > ' and its sorted distinct channels."""
    got = {r["customer_id"]: r for r in rows(con, "select * from views.journey_paths")}
    ids = dict(con.sql("select customer_id, journey_id from core.journeys").fetchall())
    expected = {
        "c1": ("converted", "2026-01-01 10:00", "2026-01-03 12:00", 3, 4, 3, "awareness > consideration > purchase", ["email", "store", "web"]),
        "c2": ("dropped", "2026-01-01 09:00", "2026-01-10 10:20", 3, 4, 2, "awareness > consideration", ["call_center", "social", "web"]),
        "c3": ("open", "2026-02-20 08:00", "2026-02-20 09:05", 2, 3, 3, "consideration > awareness > consideration", ["app"]),
        "c4": ("dropped", "2026-01-05 10:00", "2026-01-11 11:15", 3, 6, 2, "awareness > consideration", ["web"]),
    }
    assert set(got) == set(expected)
    for customer, (status, started, ended, sessions, events, visits, path, channels) in expected.items():
        r = got[customer]
        assert r["journey_id"] == ids[customer]
        assert (r["status"], r["started_at"], r["ended_at"]) == (status, ts(started), ts(ended)), customer
        assert (r["sessions"], r["events"], r["visits"], r["path"], r["channels"]) == (sessions, events, visits, path, channels), customer


def test_journey_paths_holds_no_aggregate(con):
    """views.journey_paths reads the path, visits and channels stored on core.journeys: its
    plan has no grouping, so exporting it needs no memory per journey (an ordered string_agg
    per journey, which DuckDB cannot spill, ran out of memory on a 10M-event warehouse)."""
    plan = "\n".join(r[1] for r in con.sql("explain select * from views.journey_paths").fetchall()).lower()
    for operator in ("group by", "aggregate", "window", "join", "core.visits", "core.sessions"):
        assert operator not in plan, plan
    assert "core.journeys" in plan, plan


def test_journey_path_joins_likely_paths(con):
    """'START > ' || path || ' > ' || upper(status) has the form of marts.likely_paths.path: the
    only converted journey's path is the most likely path to CONVERTED."""
    likely = likely_paths(segment_graphs(con)).filter(
        (pl.col("segment_key") == "all") & (pl.col("outcome") == "CONVERTED"))["path"].to_list()
    assert likely == ["START > awareness > consideration > purchase > CONVERTED"]
    got = con.sql("select 'START > ' || path || ' > ' || upper(status) from views.journey_paths where status = 'converted'").fetchall()
    assert got == [(likely[0],)]


def stage_dwell(con, key: str, value: str) -> dict:
    return {r.pop("node"): r for r in rows(
        con, "select * exclude (level, segment_key, segment_value) from views.stage_dwell where segment_key = ? and segment_value = ?",
        [key, value])}


def test_stage_dwell_all(con):
    """Per node, the dwell of every visit: awareness [0, 0, 600, 4500] s, consideration
    [0, 0, 0, 259200, 781200] s, purchase [0]; continuous quantiles; disjoint bands."""
    got = stage_dwell(con, "all", "all")
    assert got["awareness"] == pytest.approx(dict(
        visits=4, journeys=4, dwell_mean_seconds=1275.0, dwell_p50_seconds=300.0,
        dwell_p90_seconds=600 + 0.7 * 3900, dwell_max_seconds=4500.0,
        visits_no_dwell=2, visits_under_hour=1, visits_hour_to_day=1, visits_day_to_week=0, visits_over_week=0))
    assert got["consideration"] == pytest.approx(dict(
        visits=5, journeys=4, dwell_mean_seconds=(259200 + 781200) / 5, dwell_p50_seconds=0.0,
        dwell_p90_seconds=259200 + 0.6 * (781200 - 259200), dwell_max_seconds=781200.0,
        visits_no_dwell=3, visits_under_hour=0, visits_hour_to_day=0, visits_day_to_week=1, visits_over_week=1))
    assert got["purchase"] == dict(
        visits=1, journeys=1, dwell_mean_seconds=0.0, dwell_p50_seconds=0.0, dwell_p90_seconds=0.0, dwell_max_seconds=0.0,
        visits_no_dwell=1, visits_under_hour=0, visits_hour_to_day=0, visits_day_to_week=0, visits_over_week=0)
    assert set(got) == {"awareness", "consideration", "purchase"}


def test_stage_dwell_per_segment(con):
    """Segments split the visits by customer: north is c1 and c4, south c2, '(unknown)' c3."""
    north = stage_dwell(con, "region", "north")
    assert north["awareness"]["visits"] == 2 and north["awareness"]["dwell_p50_seconds"] == (600 + 4500) / 2
    assert north["awareness"]["dwell_p90_seconds"] == pytest.approx(600 + 0.9 * 3900)
    assert (north["consideration"]["visits"], north["consideration"]["dwell_max_seconds"]) == (2, 259200.0)
    south = stage_dwell(con, "region", "south")
    assert (south["consideration"]["visits"], south["consideration"]["visits_over_week"]) == (1, 1)
    unknown = stage_dwell(con, "region", "(unknown)")
    assert {n: r["visits"] for n, r in unknown.items()} == {"consideration": 2, "awareness": 1}
    assert all(r["visits_no_dwell"] == r["visits"] for r in unknown.values())


def test_stage_dwell_bands_add_up_and_median_matches_stage_stats(con):
    """Rows breaking a rule (none = pass): the five bands add up to visits, and the median
    is marts.stage_stats' dwell_p50_seconds for the same level, segment and node."""
    broken = con.sql("""
        select d.*
        from views.stage_dwell as d
        full join marts.stage_stats as s using (level, segment_key, segment_value, node)
        where d.visits_no_dwell + d.visits_under_hour + d.visits_hour_to_day
              + d.visits_day_to_week + d.visits_over_week <> d.visits
           or d.dwell_p50_seconds is distinct from s.dwell_p50_seconds
           or d.visits is distinct from s.visits
    """).fetchall()
    assert broken == []


def test_rankings_all(con):
    """Segment all: edges by journeys x median wait, stages by journeys x median dwell,
    drop-off nodes by dropped journeys ending there, each row with its ranking's numbers."""
    got = [
        (r["kind"], r["rank"], r["label"], r["journeys"], r["median_seconds"], r["time_lost_seconds"], r["drop_offs"], r["drop_off_rate"])
        for r in rows(con, "select * from views.rankings where segment_key = 'all' order by kind, rank")
    ]
    assert got == [
        ("drop_off", 1, "consideration", 4, None, None, 2, 0.5),        # c2 and c4 end there, dropped
        ("drop_off", 2, "awareness", 4, None, None, 0, 0.0),            # ties at 0: by node
        ("drop_off", 3, "purchase", 1, None, None, 0, 0.0),
        ("edge", 1, "consideration -> consideration", 2, 259200.0, 518400.0, None, None),  # waits 90000, 691200 (c2), 259200 (c4)
        ("edge", 2, "consideration -> purchase", 1, 172800.0, 172800.0, None, None),       # c1: 2 days
        ("edge", 3, "awareness -> consideration", 4, 3900.0, 15600.0, None, None),         # 6600, 1200, 300, 259200
        ("edge", 4, "consideration -> awareness", 1, 3600.0, 3600.0, None, None),          # c3: 1 hour
        ("edge", 5, "awareness -> awareness", 2, 1500.0, 3000.0, None, None),              # 600 (c1), 1500 x 3 (c4)
        ("stage", 1, "awareness", 4, 300.0, 1200.0, None, None),
        ("stage", 2, "consideration", 4, 0.0, 0.0, None, None),         # ties at 0: more journeys first
        ("stage", 3, "purchase", 1, 0.0, 0.0, None, None),
    ]


def test_rankings_carry_their_rule(con):
    """Every row has the rule of its kind, and there is one row per row of marts.bottlenecks and marts.drop_offs."""
    rules = dict(con.sql("select distinct kind, rule from views.rankings").fetchall())
    assert set(rules) == {"edge", "stage", "drop_off"}
    assert "journeys along the edge x median wait" in rules["edge"]
    assert "journeys reaching the node x median dwell" in rules["stage"]
    assert "dropped journeys whose last visit is the node" in rules["drop_off"] and "open journeys never count" in rules["drop_off"]
    counts = con.sql("""
        select (select count(*) from views.rankings),
               (select count(*) from marts.bottlenecks) + (select count(*) from marts.drop_offs)
    """).fetchall()[0]
    assert counts[0] == counts[1] > 0

