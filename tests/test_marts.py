"""The SQL graph and marts: core.visits / core.moves, marts.transitions, marts.stage_stats,
marts.funnel and segments, built by the real sql/ files through `conftest.marts_db`.

Hand-counted small cases first (one rule per test, its docstring stating the rule),
then hypothesis properties: node balance, visits - exits, START and terminal
counts, probabilities, segment additivity, equality with the plain-Python
reference (tests/reference.py) and independence of input row order.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import reference
from conftest import events_frame, marts_db, ts
from pipeline import marts, schema
from pipeline.config import StageRule
from pipeline.journeys import KEY_SEP, BuildSettings, build_journeys

AS_OF = ts("2026-03-01")
T0 = ts("2026-01-01 10:00")

VIEW = StageRule("r_view", "awareness", event_type=("view",))
COMPARE = StageRule("r_compare", "consideration", event_type=("compare",))
BUY = StageRule("r_buy", "purchase", event_type=("buy",))
RULES = (VIEW, COMPARE, BUY)
FUNNEL = ("awareness", "consideration", "purchase")
TERMINALS = set(schema.TERMINALS)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def segments(rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={"customer_id": pl.String, "segment_key": pl.String, "segment_value": pl.String},
                        orient="row")


def db(rows, as_of=AS_OF, segments_long=None, stage_order=FUNNEL, **options):
    options.setdefault("rules", RULES)
    frame = rows if isinstance(rows, pl.DataFrame) else events_frame(rows)
    return marts_db(frame, BuildSettings(**options), as_of, stage_order=stage_order, segments_long=segments_long)


def transitions(con, segment=("all", "all")) -> dict:
    """{(from, to): (transitions, journeys, customers, probability, p50, p90, mean)} of one segment."""
    got = con.sql(
        "select from_node, to_node, transitions, journeys, customers, probability, wait_p50_seconds, "
        "wait_p90_seconds, wait_mean_seconds from marts.transitions where segment_key = ? and segment_value = ?",
        params=list(segment),
    ).fetchall()
    return {(r[0], r[1]): r[2:] for r in got}


def stage_stats(con, segment=("all", "all")) -> dict:
    """{node: (journeys, visits, exits, drop_offs, drop_off_rate, dwell p50, dwell p90, repeats)} of one segment."""
    got = con.sql(
        "select node, journeys, visits, exits, drop_offs, drop_off_rate, dwell_p50_seconds, dwell_p90_seconds, repeats "
        "from marts.stage_stats where segment_key = ? and segment_value = ?",
        params=list(segment),
    ).fetchall()
    return {r[0]: r[1:] for r in got}


def funnel(con, segment=("all", "all")) -> list[tuple]:
    return con.sql(
        "select stage_order, stage, journeys, conversion_from_previous, conversion_from_start from marts.funnel "
        "where segment_key = ? and segment_value = ? order by stage_order",
        params=list(segment),
    ).fetchall()


# Four customers, hand-counted below:
#   c1 view, view (10 min later), buy (20 min later)  -> converted, a self-loop on awareness
#   c2 view, compare (20 min)                          -> dropped (ended two months before as_of)
#   c3 view, 4 days before as_of                       -> open (never a drop-off)
#   c4 view, compare (5 min), view (10 min)            -> dropped, not in the segments file
FOUR = [
    ("c1", "2026-01-01 10:00", "web", "view"), ("c1", "2026-01-01 10:10", "web", "view"),
    ("c1", "2026-01-01 10:30", "web", "buy"),
    ("c2", "2026-01-01 09:00", "web", "view"), ("c2", "2026-01-01 09:20", "store", "compare"),
    ("c3", "2026-02-25 12:00", "app", "view"),
    ("c4", "2026-01-02 10:00", "web", "view"), ("c4", "2026-01-02 10:05", "web", "compare"),
    ("c4", "2026-01-02 10:15", "web", "view"),
]
FOUR_SEGMENTS = segments([("c1", "tier", "gold"), ("c2", "tier", "gold"), ("c3", "tier", "silver")])


@pytest.fixture(scope="module")
def four():
    return db(FOUR, segments_long=FOUR_SEGMENTS)


# --------------------------------------------------------------------------- core.visits and core.moves


def test_core_ids_are_hashes_of_the_keys(four):
    """journey_id / session_id are 'j_' / 's_' + the first 16 hex digits of md5(customer + US + first event id)."""
    got = four.sql("select event_id, journey_id, session_id from core.steps where customer_id = 'c1' order by event_id").fetchall()
    j = reference.hashed_id("j_", "c1" + KEY_SEP + "e1")
    s = reference.hashed_id("s_", "c1" + KEY_SEP + "e1")
    assert got == [("e1", j, s), ("e2", j, s), ("e3", j, s)]
    assert four.sql("select journey_id from core.journeys where customer_id = 'c1'").fetchall() == [(j,)]


def test_visits_collapse_consecutive_equal_nodes(four):
    """core.visits: consecutive steps of a journey at the same node are one visit; repeats = events - 1;
    a node entered again later is a new visit."""
    got = four.sql(
        "select v.customer_id, v.visit_index, v.node, v.events, v.repeats, v.entered_at, v.left_at "
        "from core.visits as v where v.customer_id in ('c1', 'c4') order by v.customer_id, v.visit_index"
    ).fetchall()
    assert got == [
        ("c1", 1, "awareness", 2, 1, ts("2026-01-01 10:00"), ts("2026-01-01 10:10")),
        ("c1", 2, "purchase", 1, 0, ts("2026-01-01 10:30"), ts("2026-01-01 10:30")),
        ("c4", 1, "awareness", 1, 0, ts("2026-01-02 10:00"), ts("2026-01-02 10:00")),
        ("c4", 2, "consideration", 1, 0, ts("2026-01-02 10:05"), ts("2026-01-02 10:05")),
        ("c4", 3, "awareness", 1, 0, ts("2026-01-02 10:15"), ts("2026-01-02 10:15")),
    ]


def test_moves_of_a_journey(four):
    """core.moves: START -> first visit, a self-loop per repeated event (wait = gap between the two events),
    visit -> next visit (wait = next entered_at - this left_at), last visit -> its status."""
    got = four.sql(
        "select from_node, to_node, wait_seconds from core.moves where customer_id = 'c1' order by move_index"
    ).fetchall()
    assert got == [("START", "awareness", None), ("awareness", "awareness", 600.0),
                   ("awareness", "purchase", 1200.0), ("purchase", "CONVERTED", None)]


def test_moves_per_journey_are_events_plus_one(four):
    """Every journey has events + 1 moves (START, one per consecutive pair of events, the terminal)."""
    got = four.sql(
        "select j.journey_id, j.events, count(m.journey_id) from core.journeys as j "
        "left join core.moves as m using (journey_id) group by all"
    ).fetchall()
    assert len(got) == 4
    assert all(moves == events + 1 for _, events, moves in got)


def test_a_full_build_replaces_the_moves_table_of_an_older_warehouse():
    """Up to journeys 0.3 core.moves was a table; a full build over such a warehouse drops it
    and lists the moves again as the view, with the same rows as a fresh build."""
    con = db(FOUR, segments_long=FOUR_SEGMENTS)
    fresh = sorted(con.sql("select * from core.moves").fetchall())
    con.execute("create table core.old_moves as select * from core.moves")
    con.execute("drop view core.moves")
    con.execute("alter table core.old_moves rename to moves")
    marts.write_all_core(con, build_journeys(events_frame(FOUR), BuildSettings(rules=RULES, funnel_stages=FUNNEL), AS_OF),
                         FOUR_SEGMENTS)
    kinds = con.sql("select table_type from information_schema.tables "
                    "where table_schema = 'core' and table_name = 'moves'").fetchall()
    assert kinds == [("VIEW",)]
    assert sorted(con.sql("select * from core.moves").fetchall()) == fresh


# --------------------------------------------------------------------------- marts.transitions


def test_transitions_hand_counted(four):
    """marts.transitions for everyone: counts, distinct journeys and customers, probability out of the
    from-node, and wait p50/p90/mean (quantile_cont) in seconds; START and terminal edges have no wait."""
    assert transitions(four) == {
        ("START", "awareness"): (4, 4, 4, 1.0, None, None, None),
        ("awareness", "awareness"): (1, 1, 1, pytest.approx(1 / 6), 600.0, 600.0, 600.0),
        ("awareness", "purchase"): (1, 1, 1, pytest.approx(1 / 6), 1200.0, 1200.0, 1200.0),
        ("awareness", "consideration"): (2, 2, 2, pytest.approx(2 / 6), 750.0, pytest.approx(1110.0), 750.0),
        ("awareness", "OPEN"): (1, 1, 1, pytest.approx(1 / 6), None, None, None),
        ("awareness", "DROPPED"): (1, 1, 1, pytest.approx(1 / 6), None, None, None),
        ("consideration", "DROPPED"): (1, 1, 1, 0.5, None, None, None),
        ("consideration", "awareness"): (1, 1, 1, 0.5, 600.0, 600.0, 600.0),
        ("purchase", "CONVERTED"): (1, 1, 1, 1.0, None, None, None),
    }


def test_self_loop_counts_each_repeat():
    """Repeats appear as a self-loop edge counted once per repeated event, with the gaps as waits."""
    con = db([("c1", at(0), "web", "view"), ("c1", at(1), "web", "view"), ("c1", at(4), "web", "view"),
              ("c1", at(10), "web", "buy")])
    t = transitions(con)
    # out of awareness: 2 self-loops + 1 to purchase; waits of the self-loop 60 s and 180 s
    assert t[("awareness", "awareness")] == (2, 1, 1, pytest.approx(2 / 3), 120.0, pytest.approx(168.0), 120.0)
    assert t[("awareness", "purchase")] == (1, 1, 1, pytest.approx(1 / 3), 360.0, 360.0, 360.0)
    s = stage_stats(con)
    assert s["awareness"][:4] == (1, 1, 0, 0) and s["awareness"][7] == 2


def test_journeys_and_customers_counted_distinct():
    """An edge walked by two journeys of one customer has transitions 2, journeys 2, customers 1."""
    con = db([("c1", "2026-01-01 10:00", "web", "view"), ("c1", "2026-01-01 10:05", "web", "buy"),
              ("c1", "2026-02-10 10:00", "web", "view"), ("c1", "2026-02-10 10:05", "web", "buy")])
    t = transitions(con)
    assert t[("START", "awareness")][:3] == (2, 2, 1)
    assert t[("awareness", "purchase")][:3] == (2, 2, 1)
    assert t[("purchase", "CONVERTED")][:3] == (2, 2, 1)


def test_event_type_level_is_the_directly_follows_graph():
    """At level event_type the edges between activities are the directly-follows pairs with their counts."""
    rows = [("c1", at(0), "web", "a"), ("c1", at(1), "web", "b"), ("c1", at(2), "web", "b"), ("c1", at(3), "web", "a"),
            ("c2", at(0), "web", "a"), ("c2", at(1), "web", "b")]
    con = db(rows, level="event_type", rules=())
    got = {k: v[0] for k, v in transitions(con).items() if k[0] != "START" and k[1] not in TERMINALS}
    assert got == {("a", "b"): 2, ("b", "b"): 1, ("b", "a"): 1}
    nodes = {r[0] for r in con.sql("select distinct node from marts.stage_stats").fetchall()}
    assert nodes == {"a", "b"}
    assert con.sql("select distinct level from marts.transitions").fetchall() == [("event_type",)]


def test_channel_stage_level_separates_the_same_stage_on_two_channels():
    """At level channel:stage a node is channel:stage, so web awareness then a call's awareness are two
    steps (web:awareness -> call_center:awareness), not one collapsed visit as at level stage."""
    rows = [("c1", at(0), "web", "view"), ("c1", at(5), "call_center", "view"), ("c1", at(9), "call_center", "view"),
            ("c1", at(20), "web", "buy")]
    con = db(rows, level="channel:stage")
    got = {k: v[0] for k, v in transitions(con).items()}
    assert got == {
        ("START", "web:awareness"): 1,
        ("web:awareness", "call_center:awareness"): 1,
        ("call_center:awareness", "call_center:awareness"): 1,
        ("call_center:awareness", "web:purchase"): 1,
        ("web:purchase", "CONVERTED"): 1,
    }
    assert con.sql("select distinct level from marts.stage_stats").fetchall() == [("channel:stage",)]
    stage_level = {k: v[0] for k, v in transitions(db(rows)).items()}
    assert stage_level[("awareness", "awareness")] == 2 and ("awareness", "purchase") in stage_level


def test_segment_summary_time_to_convert():
    """marts.segment_summary: journeys by status, rates over all journeys, and time to convert = converted_at -
    started_at of converted journeys (hand-counted: 30 min and 90 min -> p50 60 min, mean 60 min)."""
    rows = [("c1", at(0), "web", "view"), ("c1", at(30), "web", "buy"),
            ("c2", at(0), "web", "view"), ("c2", at(60), "web", "compare"), ("c2", at(90), "web", "buy"),
            ("c3", at(0), "web", "view"),
            ("c4", ts("2026-02-28 10:00"), "web", "view")]
    seg = segments([("c1", "tier", "gold"), ("c2", "tier", "gold"), ("c3", "tier", "basic"), ("c4", "tier", "basic")])
    con = db(rows, segments_long=seg)
    got = {(r[0], r[1]): r[2:] for r in con.sql(
        "select segment_key, segment_value, journeys, converted, dropped, open, conversion_rate, drop_off_rate, "
        "time_to_convert_p50_seconds, time_to_convert_mean_seconds from marts.segment_summary").fetchall()}
    assert got[("all", "all")] == (4, 2, 1, 1, 0.5, 0.25, 3600.0, 3600.0)
    assert got[("tier", "gold")] == (2, 2, 0, 0, 1.0, 0.0, 3600.0, 3600.0)
    assert got[("tier", "basic")] == (2, 0, 1, 1, 0.0, 0.5, None, None)


# --------------------------------------------------------------------------- marts.stage_stats


def test_stage_stats_hand_counted(four):
    """stage_stats per node: journeys reaching it, visits (collapsed), exits (last visits), drop-offs
    (exits of dropped journeys), drop_off_rate = drop_offs / journeys, dwell p50/p90, repeats."""
    assert stage_stats(four) == {
        "awareness": (4, 5, 2, 1, 0.25, 0.0, pytest.approx(360.0), 1),
        "consideration": (2, 2, 1, 1, 0.5, 0.0, 0.0, 0),
        "purchase": (1, 1, 1, 0, 0.0, 0.0, 0.0, 0),
    }


def test_open_journeys_are_never_drop_offs():
    """A journey still within the timeout ends in OPEN and is not a drop-off; the same journey later is."""
    rows = [("c1", "2026-02-20 10:00", "web", "view"), ("c1", "2026-02-20 10:05", "web", "compare")]
    open_ = db(rows, as_of=ts("2026-03-01"))
    assert transitions(open_)[("consideration", "OPEN")][0] == 1
    assert ("consideration", "DROPPED") not in transitions(open_)
    assert stage_stats(open_)["consideration"][:5] == (1, 1, 1, 0, 0.0)
    dropped = db(rows, as_of=ts("2026-04-01"))
    assert transitions(dropped)[("consideration", "DROPPED")][0] == 1
    assert stage_stats(dropped)["consideration"][:5] == (1, 1, 1, 1, 1.0)


def test_dwell_is_time_within_a_visit():
    """Dwell is left_at - entered_at of each visit; p50/p90 interpolate between visits."""
    rows = [("c1", at(0), "web", "view"), ("c1", at(10), "web", "view"), ("c1", at(11), "web", "buy"),
            ("c2", at(0), "web", "view"), ("c2", at(30), "web", "view"), ("c2", at(31), "web", "buy"),
            ("c3", at(0), "web", "view"), ("c3", at(1), "web", "buy")]
    s = stage_stats(db(rows))
    # awareness dwells: 600, 1800, 0 -> p50 600, p90 = 600 + 0.8 * 1200 = 1560
    assert s["awareness"][5:7] == (600.0, pytest.approx(1560.0))
    assert s["awareness"][7] == 2


# --------------------------------------------------------------------------- marts.funnel


def test_funnel_counts_stages_in_order():
    """Funnel: journeys reaching stage k after stages 1..k-1 in order (each stage's first occurrence after
    the previous stage's); conversion from the previous stage and from the start."""
    rows = [
        ("j1", at(0), "web", "view"), ("j1", at(1), "web", "compare"), ("j1", at(2), "web", "buy"),  # all three
        ("j2", at(0), "web", "compare"), ("j2", at(1), "web", "view"), ("j2", at(2), "web", "buy"),  # awareness only
        ("j3", at(0), "web", "view"), ("j3", at(1), "web", "buy"), ("j3", at(2), "web", "compare"),  # 2 stages
        ("j4", at(0), "web", "buy"),  # none
        ("j5", at(0), "web", "view"), ("j5", at(1), "web", "compare"), ("j5", at(2), "web", "view"),
        ("j5", at(3), "web", "compare"), ("j5", at(4), "web", "buy"),  # all three
    ]
    got = funnel(db(rows))
    assert got == [
        (1, "awareness", 4, pytest.approx(0.8), pytest.approx(0.8)),
        (2, "consideration", 3, pytest.approx(0.75), pytest.approx(0.6)),
        (3, "purchase", 2, pytest.approx(2 / 3), pytest.approx(0.4)),
    ]


def test_funnel_uses_stages_not_nodes_and_zero_previous_gives_null():
    """The funnel counts stages at any graph level; after a stage nobody reached, conversion from previous is null."""
    rows = [("c1", at(0), "web", "view"), ("c1", at(1), "web", "buy")]
    got = funnel(db(rows, level="channel:stage", stage_order=("awareness", "consideration", "purchase")))
    assert got == [(1, "awareness", 1, 1.0, 1.0), (2, "consideration", 0, 0.0, 0.0), (3, "purchase", 0, None, 0.0)]


def test_funnel_hand_counted_per_segment(four):
    """The funnel is counted per segment, over the journeys of that segment's customers."""
    assert funnel(four) == [(1, "awareness", 4, 1.0, 1.0), (2, "consideration", 2, 0.5, 0.5), (3, "purchase", 0, 0.0, 0.0)]
    assert funnel(four, ("tier", "gold")) == [(1, "awareness", 2, 1.0, 1.0), (2, "consideration", 1, 0.5, 0.5),
                                              (3, "purchase", 0, 0.0, 0.0)]
    assert funnel(four, ("tier", "(unknown)")) == [(1, "awareness", 1, 1.0, 1.0), (2, "consideration", 1, 1.0, 1.0),
                                                   (3, "purchase", 0, 0.0, 0.0)]


# --------------------------------------------------------------------------- segments


def test_segments_hand_counted(four):
    """Each (segment_key, segment_value) gets its own graph; customers missing from the segments file are '(unknown)'."""
    values = four.sql("select distinct segment_key, segment_value from marts.transitions order by all").fetchall()
    assert values == [("all", "all"), ("tier", "(unknown)"), ("tier", "gold"), ("tier", "silver")]
    assert transitions(four, ("tier", "gold")) == {
        ("START", "awareness"): (2, 2, 2, 1.0, None, None, None),
        ("awareness", "awareness"): (1, 1, 1, pytest.approx(1 / 3), 600.0, 600.0, 600.0),
        ("awareness", "purchase"): (1, 1, 1, pytest.approx(1 / 3), 1200.0, 1200.0, 1200.0),
        ("awareness", "consideration"): (1, 1, 1, pytest.approx(1 / 3), 1200.0, 1200.0, 1200.0),
        ("purchase", "CONVERTED"): (1, 1, 1, 1.0, None, None, None),
        ("consideration", "DROPPED"): (1, 1, 1, 1.0, None, None, None),
    }
    assert transitions(four, ("tier", "(unknown)")) == {
        ("START", "awareness"): (1, 1, 1, 1.0, None, None, None),
        ("awareness", "consideration"): (1, 1, 1, 0.5, 300.0, 300.0, 300.0),
        ("consideration", "awareness"): (1, 1, 1, 1.0, 600.0, 600.0, 600.0),
        ("awareness", "DROPPED"): (1, 1, 1, 0.5, None, None, None),
    }
    assert transitions(four, ("tier", "silver")) == {
        ("START", "awareness"): (1, 1, 1, 1.0, None, None, None),
        ("awareness", "OPEN"): (1, 1, 1, 1.0, None, None, None),
    }
    assert stage_stats(four, ("tier", "gold"))["awareness"] == (2, 2, 0, 0, 0.0, 300.0, pytest.approx(540.0), 1)


def test_null_segment_value_and_missing_key_are_unknown():
    """A customer whose value is null, or who lacks one of the segment keys, is '(unknown)' for that key."""
    seg = segments([("c1", "tier", None), ("c1", "region", "north"), ("c2", "tier", "gold")])
    con = db([("c1", at(0), "web", "view"), ("c2", at(0), "web", "view")], segments_long=seg)
    got = con.sql("select customer_id, segment_key, segment_value from core.customer_segments order by all").fetchall()
    assert got == [("c1", "all", "all"), ("c1", "region", "north"), ("c1", "tier", "(unknown)"),
                   ("c2", "all", "all"), ("c2", "region", "(unknown)"), ("c2", "tier", "gold")]
    assert transitions(con, ("tier", "(unknown)"))[("START", "awareness")][0] == 1
    assert transitions(con, ("region", "(unknown)"))[("START", "awareness")][0] == 1


def test_no_segments_file_gives_only_all():
    """Without a segments file the marts have only the ('all', 'all') segment."""
    con = db([("c1", at(0), "web", "view")])
    for table in ("transitions", "stage_stats", "funnel"):
        got = con.sql(f"select distinct segment_key, segment_value from marts.{table}").fetchall()
        assert got == [("all", "all")]


# --------------------------------------------------------------------------- properties

CUSTOMERS = ["a", "b", "c", "d"]
CHANNELS = ["web", "store", "email"]
EVENT_TYPES = ["view", "compare", "buy", "open", "other"]
GAPS = [0, 0, 30, 600, 1800, 1801, 5000, 86400, 86401, 300000]
RULE_POOL = (
    StageRule("buy", "purchase", event_type=("buy",)),
    StageRule("store_view", "consideration", channel=("store",), event_type=("view",)),
    StageRule("view", "awareness", event_type=("view",)),
    StageRule("compare", "consideration", event_type=("compare",)),
    StageRule("email", "retention", channel=("email",)),
)
SEGMENT_VALUES = ["x", "y", None]


@st.composite
def scenarios(draw, max_events=14):
    """(events, settings, as_of, segments_long, stage_order) of a small random world."""
    n = draw(st.integers(1, max_events))
    clocks = {c: 0 for c in CUSTOMERS}
    rows = []
    for _ in range(n):
        customer = draw(st.sampled_from(CUSTOMERS))
        clocks[customer] += draw(st.sampled_from(GAPS))
        rows.append((customer, T0 + timedelta(seconds=clocks[customer]), draw(st.sampled_from(CHANNELS)),
                     draw(st.sampled_from(EVENT_TYPES))))
    frame = events_frame(rows)
    positions = draw(st.permutations(range(1, n + 1)))
    frame = frame.with_columns(source_row=pl.Series(list(positions), dtype=pl.Int64))
    stage_order = draw(st.sampled_from([FUNNEL, schema.DEFAULT_STAGES, ("consideration", "purchase")]))
    s = BuildSettings(
        funnel_stages=stage_order,
        inactivity_timeout=draw(st.sampled_from([None, 1800])),
        max_length=draw(st.sampled_from([None, 7200, 86400])),
        journey_timeout=draw(st.sampled_from([None, 86400, 200000])),
        goal_stage="purchase",
        rules=tuple(draw(st.permutations(RULE_POOL)))[: draw(st.integers(0, len(RULE_POOL)))],
        level=draw(st.sampled_from(schema.LEVELS)),
    )
    as_of = T0 + timedelta(seconds=draw(st.integers(0, 10 * 86400)))
    seg_rows = []
    for customer in CUSTOMERS + ["z"]:  # z has no events
        for key in ("tier", "region"):
            if draw(st.booleans()):
                seg_rows.append((customer, key, draw(st.sampled_from(SEGMENT_VALUES))))
    return frame, s, as_of, (segments(seg_rows) if seg_rows else None), stage_order


# each example builds a whole in-memory warehouse (~0.2 s): the laws run on fewer examples than the
# reference comparison, which checks every number and is the strongest of them
LAW_SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PROPERTY_SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def build_db(scenario, frame=None):
    events, s, as_of, seg, stage_order = scenario
    return marts_db(events if frame is None else frame, s, as_of, stage_order=stage_order, segments_long=seg)


def all_marts(con) -> dict:
    """The three marts as {key: row} dicts, keyed by their grain."""
    t = con.sql(
        "select segment_key, segment_value, from_node, to_node, transitions, journeys, customers, probability, "
        "wait_p50_seconds, wait_p90_seconds, wait_mean_seconds from marts.transitions"
    ).fetchall()
    s = con.sql(
        "select segment_key, segment_value, node, journeys, visits, exits, drop_offs, drop_off_rate, "
        "dwell_p50_seconds, dwell_p90_seconds, repeats from marts.stage_stats"
    ).fetchall()
    f = con.sql(
        "select segment_key, segment_value, stage_order, stage, journeys, conversion_from_previous, "
        "conversion_from_start from marts.funnel"
    ).fetchall()
    out = {
        "transitions": {r[:4]: r[4:] for r in t},
        "stage_stats": {r[:3]: r[3:] for r in s},
        "funnel": {r[:3]: r[3:] for r in f},
    }
    assert len(out["transitions"]) == len(t) and len(out["stage_stats"]) == len(s) and len(out["funnel"]) == len(f), \
        "a mart has duplicate rows for its grain"
    return out


def segment_values(m) -> set:
    return {k[:2] for k in m["transitions"]}


def real_nodes(m, seg) -> set:
    return {k[2] for k in m["stage_stats"] if k[:2] == seg}


def flow(m, seg, node, direction) -> int:
    """Transitions into (direction='in') or out of ('out') a node in a segment."""
    index = 3 if direction == "in" else 2
    return sum(v[0] for k, v in m["transitions"].items() if k[:2] == seg and k[index] == node)


def expected_journeys(scenario) -> dict:
    """{(segment_key, segment_value): {status: journeys}} counted in Python from the build output."""
    events, s, as_of, seg, _ = scenario
    core = build_journeys(events, s, as_of)
    seg_rows = seg.rows() if seg is not None else []
    customer_segments = reference.segments_of(sorted(set(core.journeys["customer_id"])), seg_rows)
    counts: dict = {}
    for customer, status in core.journeys.select("customer_id", "status").rows():
        for pair in customer_segments[customer]:
            by_status = counts.setdefault(pair, {})
            by_status[status] = by_status.get(status, 0) + 1
    return counts


@LAW_SETTINGS
@given(scenario=scenarios())
def test_every_node_balances(scenario):
    """For every segment and node, transitions into the node = transitions out (self-loops counted both ways)."""
    m = all_marts(build_db(scenario))
    for seg in segment_values(m):
        nodes = real_nodes(m, seg)
        assert nodes
        for node in nodes:
            assert flow(m, seg, node, "in") == flow(m, seg, node, "out") > 0


@LAW_SETTINGS
@given(scenario=scenarios())
def test_moves_to_other_nodes_are_visits_minus_exits(scenario):
    """Transitions out of a node to other real nodes = visits - exits; all out = visits + repeats - exits;
    the self-loop = repeats."""
    m = all_marts(build_db(scenario))
    for (sk, sv, node), (journeys, visits, exits, drop_offs, rate, _, _, repeats) in m["stage_stats"].items():
        out = {k[3]: v[0] for k, v in m["transitions"].items() if k[:3] == (sk, sv, node)}
        to_others = sum(c for to, c in out.items() if to != node and to not in TERMINALS)
        assert to_others == visits - exits
        assert sum(out.values()) == visits + repeats
        assert out.get(node, 0) == repeats
        assert sum(c for to, c in out.items() if to in TERMINALS) == exits
        assert 0 <= drop_offs <= exits <= journeys <= visits
        assert rate == pytest.approx(drop_offs / journeys)


@LAW_SETTINGS
@given(scenario=scenarios())
def test_start_and_terminal_counts_are_journeys(scenario):
    """START out = journeys of the segment; inflow of CONVERTED / DROPPED / OPEN = journeys by status;
    the funnel's conversion_from_start divides by the same journeys."""
    m = all_marts(build_db(scenario))
    expected = expected_journeys(scenario)
    assert segment_values(m) == set(expected)
    for seg, by_status in expected.items():
        assert flow(m, seg, "START", "out") == sum(by_status.values())
        for status in schema.STATUSES:
            assert flow(m, seg, status.upper(), "in") == by_status.get(status, 0)
        total = sum(by_status.values())
        for k, (stage, journeys, _, from_start) in m["funnel"].items():
            if k[:2] == seg:
                assert from_start == pytest.approx(journeys / total)


@LAW_SETTINGS
@given(scenario=scenarios())
def test_probabilities_out_of_a_node_sum_to_one(scenario):
    """Probabilities of the edges out of each node of a segment sum to 1."""
    m = all_marts(build_db(scenario))
    totals: dict = {}
    for k, v in m["transitions"].items():
        totals[k[:3]] = totals.get(k[:3], 0.0) + v[3]
    assert totals
    for total in totals.values():
        assert total == pytest.approx(1.0)


@LAW_SETTINGS
@given(scenario=scenarios())
def test_all_segment_is_the_sum_over_any_segment_key(scenario):
    """('all', 'all') equals the sum over the values of any one segment key for additive columns:
    transitions; visits, exits, drop_offs, repeats; funnel journeys."""
    m = all_marts(build_db(scenario))
    keys = {sk for sk, _ in segment_values(m)} - {"all"}
    additive = {"transitions": [0], "stage_stats": [1, 2, 3, 7], "funnel": [1]}
    for key in keys:
        for table, columns in additive.items():
            everyone: dict = {}
            summed: dict = {}
            for k, v in m[table].items():
                target = everyone if k[:2] == ("all", "all") else summed if k[0] == key else None
                if target is None:
                    continue
                acc = target.setdefault(k[2:], [0] * len(columns))
                for i, c in enumerate(columns):
                    acc[i] += v[c]
            assert summed == everyone, (table, key)


def close(a, b) -> bool:
    if a is None or b is None:
        return a is b
    if isinstance(a, float) or isinstance(b, float):
        return b == pytest.approx(a, rel=1e-9, abs=1e-9)
    return a == b


def assert_same(got: dict, want: dict, what: str) -> None:
    assert set(got) == set(want), what
    for k in want:
        assert len(got[k]) == len(want[k]), (what, k)
        assert all(close(g, w) for g, w in zip(got[k], want[k])), (what, k, got[k], want[k])


@PROPERTY_SETTINGS
@given(scenario=scenarios())
def test_marts_equal_reference(scenario):
    """transitions, stage_stats and funnel equal the plain-Python reference built from the events."""
    events, s, as_of, seg, stage_order = scenario
    m = all_marts(build_db(scenario))
    core = reference.build(
        events.to_dicts(), as_of, inactivity_timeout=s.inactivity_timeout, max_length=s.max_length,
        channel_timeouts=s.channel_timeouts, journey_timeout=s.journey_timeout, goal_stage=s.goal_stage,
        rules=s.rules, level=s.level,
    )
    ref = reference.marts(core, seg.rows() if seg is not None else None, stage_order)
    t_cols = ["transitions", "journeys", "customers", "probability", "wait_p50_seconds", "wait_p90_seconds", "wait_mean_seconds"]
    s_cols = ["journeys", "visits", "exits", "drop_offs", "drop_off_rate", "dwell_p50_seconds", "dwell_p90_seconds", "repeats"]
    f_cols = ["stage", "journeys", "conversion_from_previous", "conversion_from_start"]
    assert_same(m["transitions"], {k: tuple(v[c] for c in t_cols) for k, v in ref["transitions"].items()}, "transitions")
    assert_same(m["stage_stats"], {k: tuple(v[c] for c in s_cols) for k, v in ref["stage_stats"].items()}, "stage_stats")
    assert_same(m["funnel"], {k: tuple(v[c] for c in f_cols) for k, v in ref["funnel"].items()}, "funnel")


@LAW_SETTINGS
@given(scenario=scenarios(), seed=st.integers(0, 2**32 - 1))
def test_row_order_does_not_change_marts(scenario, seed):
    """Any permutation of the input rows gives identical marts."""
    events = scenario[0]
    first = all_marts(build_db(scenario))
    second = all_marts(build_db(scenario, frame=events.sample(fraction=1.0, shuffle=True, seed=seed)))
    assert second == first


def test_reference_marts_agree_on_hand_case():
    """The reference reproduces the hand-counted four-customer case (guards the oracle)."""
    frame = events_frame(FOUR)
    core = reference.build(frame.to_dicts(), AS_OF, rules=RULES)
    ref = reference.marts(core, FOUR_SEGMENTS.rows(), FUNNEL)
    assert ref["transitions"][("all", "all", "awareness", "consideration")]["wait_p90_seconds"] == pytest.approx(1110.0)
    assert ref["stage_stats"][("all", "all", "awareness")]["visits"] == 5
    assert ref["stage_stats"][("tier", "(unknown)", "awareness")]["drop_offs"] == 1
    assert ref["funnel"][("all", "all", 2)]["journeys"] == 2
