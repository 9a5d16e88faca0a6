"""Sessions, journeys, stages and status of `pipeline.journeys.build_journeys`.

Hand-made cases, one rule per test (its docstring states the rule), then
hypothesis properties over random small event logs, cross-checked against the
plain-Python reference in tests/reference.py.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import reference
from conftest import events_frame, ts
from pipeline import schema
from pipeline.config import StageRule
from pipeline.journeys import KEY_SEP, BuildError, BuildSettings, build_journeys, label_stages, order_events

AS_OF = ts("2026-06-01")
T0 = ts("2026-01-01 10:00")

VIEW = StageRule("r_view", "awareness", event_type=("view",))
COMPARE = StageRule("r_compare", "consideration", event_type=("compare",))
BUY = StageRule("r_buy", "purchase", event_type=("buy",))
FUNNEL_RULES = (VIEW, COMPARE, BUY)


def build(rows_or_frame, as_of=AS_OF, **options):
    frame = rows_or_frame if isinstance(rows_or_frame, pl.DataFrame) else events_frame(rows_or_frame)
    return build_journeys(frame, BuildSettings(**options), as_of)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def session_sizes(core) -> list[int]:
    """Events per session in time order."""
    return core.sessions.sort("started_at")["events"].to_list()


def sessions_of_events(core) -> list[list[str]]:
    """Event ids of each session, sessions in order of their first event."""
    steps = core.steps.sort("ts", "step_index")
    groups: dict[str, list[str]] = {}
    for key, event_id in zip(steps["session_key"], steps["event_id"]):
        groups.setdefault(key, []).append(event_id)
    return list(groups.values())


def journeys_of_events(core) -> list[list[str]]:
    steps = core.steps.sort("ts", "step_index")
    groups: dict[str, list[str]] = {}
    for key, event_id in zip(steps["journey_key"], steps["event_id"]):
        groups.setdefault(key, []).append(event_id)
    return list(groups.values())


def key(customer: str, event_id: str) -> str:
    return customer + KEY_SEP + event_id


# --------------------------------------------------------------------------- sessions


def test_first_event_starts_session_and_journey():
    """A customer's first event starts a session and a journey, keyed by customer and that event."""
    core = build([("c1", "2026-01-01 10:00", "web", "view"), ("c1", "2026-01-01 10:05", "web", "view")])
    assert core.steps["session_key"].to_list() == [key("c1", "e1")] * 2
    assert core.steps["journey_key"].to_list() == [key("c1", "e1")] * 2
    assert core.steps["step_index"].to_list() == [1, 2]
    assert core.sessions.height == 1 and core.journeys.height == 1


def test_gap_exactly_at_inactivity_timeout_stays_in_session():
    """A new session starts only after a gap *over* the inactivity timeout: exactly 30 minutes is not over."""
    core = build([("c1", at(0), "web", "view"), ("c1", at(30), "web", "view")])
    assert session_sizes(core) == [2]


def test_gap_just_over_inactivity_timeout_starts_session():
    """A gap of one second (or one microsecond) over the inactivity timeout starts a new session."""
    core = build([("c1", at(0), "web", "view"), ("c1", at(30) + timedelta(seconds=1), "web", "view")])
    assert sessions_of_events(core) == [["e1"], ["e2"]]
    core = build([("c1", at(0), "web", "view"), ("c1", at(30) + timedelta(microseconds=1), "web", "view")])
    assert sessions_of_events(core) == [["e1"], ["e2"]]
    # ... and that new session is still in the same journey
    assert core.journeys.height == 1 and core.journeys["sessions"].to_list() == [2]


def test_gap_exactly_at_timeout_with_microseconds():
    """'Over the timeout' is exact to the microsecond for any times: a gap of exactly 30 min (or a session
    of exactly max_length) never splits, also across the 2**30-second instant."""
    t1 = datetime(2004, 1, 10, 13, 22, 3, 803590, tzinfo=timezone.utc)
    core = build([("c1", t1, "web", "view"), ("c1", t1 + timedelta(minutes=30), "web", "view")], as_of=t1)
    assert session_sizes(core) == [2]
    t1 = datetime(2004, 1, 10, 13, 7, 3, 999999, tzinfo=timezone.utc)
    rows = [("c1", t1 + timedelta(minutes=m), "web", "view") for m in (0, 20, 40, 60)]
    assert session_sizes(build(rows, as_of=t1, max_length=3600)) == [4]


def test_inactivity_timeout_is_configurable():
    """The inactivity timeout is a setting: with 10 minutes, a 15-minute gap splits."""
    rows = [("c1", at(0), "web", "view"), ("c1", at(15), "web", "view"), ("c1", at(20), "web", "view")]
    assert sessions_of_events(build(rows, inactivity_timeout=600)) == [["e1"], ["e2", "e3"]]
    assert sessions_of_events(build(rows)) == [["e1", "e2", "e3"]]


def test_channel_timeout_of_the_current_event_applies():
    """The gap before an event is judged by the timeout of *that event's* channel (override of the default)."""
    timeouts = {"store": 7200}
    # web -> store after 60 min: the store timeout (2 h) applies, so no split
    core = build([("c1", at(0), "web", "view"), ("c1", at(60), "store", "visit")], channel_timeouts=timeouts)
    assert sessions_of_events(core) == [["e1", "e2"]]
    # store -> web after 60 min: the web (default 30 min) timeout applies, so a split
    core = build([("c1", at(0), "store", "visit"), ("c1", at(60), "web", "view")], channel_timeouts=timeouts)
    assert sessions_of_events(core) == [["e1"], ["e2"]]
    # store -> store after 2 h exactly: not over, and 2 h + 1 s: over
    core = build([("c1", at(0), "store", "visit"), ("c1", at(120), "store", "visit"),
                  ("c1", at(240) + timedelta(seconds=1), "store", "visit")], channel_timeouts=timeouts)
    assert sessions_of_events(core) == [["e1", "e2"], ["e3"]]


def test_channel_timeout_can_be_shorter_than_default():
    """A per-channel timeout may also be shorter than the default."""
    core = build([("c1", at(0), "app", "open"), ("c1", at(6), "app", "open"), ("c1", at(11), "web", "view")],
                 channel_timeouts={"app": 300})
    assert sessions_of_events(core) == [["e1"], ["e2", "e3"]]


def test_none_timeout_never_splits():
    """A timeout of None means never split: for the default, or for one channel."""
    rows = [("c1", at(0), "email", "open"), ("c1", at(60 * 24 * 5), "email", "open")]
    assert sessions_of_events(build(rows, channel_timeouts={"email": None}, max_length=None)) == [["e1", "e2"]]
    assert sessions_of_events(build(rows, inactivity_timeout=None, max_length=None)) == [["e1", "e2"]]
    # the channel override of None wins over the default timeout, but only for that channel
    rows = [("c1", at(0), "email", "open"), ("c1", at(60), "web", "view")]
    assert sessions_of_events(build(rows, channel_timeouts={"email": None})) == [["e1"], ["e2"]]


def test_max_length_greedy_cut():
    """A session is cut at the first event more than max_length after the session's first event
    (greedy): events every 20 min over 30 h with max 24 h cut at 24h20m, not at 24h."""
    rows = [("c1", at(20 * i), "web", "view") for i in range(91)]  # 0 .. 30 h
    core = build(rows, max_length=86400)
    assert session_sizes(core) == [73, 18]  # 0..24h (24h is not *over* 24h), then 24h20..30h
    starts = core.sessions.sort("started_at")["started_at"].to_list()
    assert starts == [at(0), at(1460)]
    assert core.journeys["sessions"].to_list() == [2]


def test_max_length_second_cut_counts_from_new_session_start():
    """After a cut the length is counted from the new session's first event: 50 h of 20-min events
    give sessions 0..24h, 24h20..48h20, 48h40..50h."""
    rows = [("c1", at(20 * i), "web", "view") for i in range(151)]  # 0 .. 50 h
    core = build(rows, max_length=86400)
    assert session_sizes(core) == [73, 73, 5]
    assert core.sessions.sort("started_at")["started_at"].to_list() == [at(0), at(1460), at(2920)]


def test_max_length_clock_restarts_after_inactivity_split():
    """The max-length clock starts at the session's first event, also when the session began after inactivity."""
    minutes = [0, 20, 40, 120, 140, 160, 180, 200]
    rows = [("c1", at(m), "web", "view") for m in minutes]
    core = build(rows, max_length=3600)
    # 0..40 (one session), gap 80 min -> 120 starts one; 180 is 60 min after (not over); 200 is over
    assert sessions_of_events(core) == [["e1", "e2", "e3"], ["e4", "e5", "e6", "e7"], ["e8"]]


def test_max_length_none_never_cuts():
    """max_length None: a session of steady activity is never cut by length."""
    rows = [("c1", at(20 * i), "web", "view") for i in range(151)]
    assert session_sizes(build(rows, max_length=None)) == [151]


# --------------------------------------------------------------------------- journeys


def test_journey_timeout():
    """A new journey starts after a gap over the journey timeout; exactly the timeout is not over."""
    day = 24 * 60
    rows = [("c1", at(0), "web", "view"), ("c1", at(day), "web", "view"),
            ("c1", at(2 * day) + timedelta(seconds=1), "web", "view"), ("c1", at(2 * day + 10), "web", "view")]
    core = build(rows, journey_timeout=86400)
    assert journeys_of_events(core) == [["e1", "e2"], ["e3", "e4"]]
    assert sorted(core.journeys["journey_key"].to_list()) == [key("c1", "e1"), key("c1", "e3")]
    assert core.journeys.sort("started_at")["sessions"].to_list() == [2, 1]
    # step_index restarts in each journey
    assert core.steps.sort("ts")["step_index"].to_list() == [1, 2, 1, 2]


def test_journey_timeout_none_never_splits():
    """journey_timeout None: one journey per customer, however long the gaps."""
    rows = [("c1", "2025-01-01", "web", "view"), ("c1", "2026-01-01", "web", "view")]
    core = build(rows, journey_timeout=None)
    assert journeys_of_events(core) == [["e1", "e2"]]
    assert sessions_of_events(core) == [["e1"], ["e2"]]


def test_new_journey_always_starts_new_session():
    """A session never spans two journeys: a journey cut also cuts the session, even with no inactivity timeout."""
    rows = [("c1", at(0), "web", "view"), ("c1", at(120), "web", "view")]
    core = build(rows, inactivity_timeout=None, max_length=None, journey_timeout=3600)
    assert journeys_of_events(core) == [["e1"], ["e2"]]
    assert sessions_of_events(core) == [["e1"], ["e2"]]


def test_customers_are_sessionized_separately():
    """Interleaved events of two customers never share a session or journey; each customer's first event starts both."""
    rows = [("c1", at(0), "web", "view"), ("c2", at(1), "web", "view"), ("c1", at(2), "web", "view"),
            ("c2", at(3), "web", "view")]
    core = build(rows)
    steps = core.steps.sort("event_id")
    assert steps["session_key"].to_list() == [key("c1", "e1"), key("c2", "e2"), key("c1", "e1"), key("c2", "e2")]
    assert steps["journey_key"].to_list() == steps["session_key"].to_list()
    assert sorted(core.sessions["events"].to_list()) == [2, 2]


# --------------------------------------------------------------------------- ordering and keys


def test_ties_in_time_broken_by_input_position():
    """Events with equal times are ordered by (source, source_file, source_row), whatever the row order of the frame."""
    rows = [("c1", at(0), "web", "view"), ("c1", at(5), "web", "compare"), ("c1", at(5), "web", "buy")]
    frame = events_frame(rows)
    core = build(frame[::-1], rules=FUNNEL_RULES)  # rows reversed: e3 first in the frame
    steps = core.steps.sort("step_index")
    assert steps["event_id"].to_list() == ["e1", "e2", "e3"]
    assert steps["stage"].to_list() == ["awareness", "consideration", "purchase"]


def test_tie_order_is_source_then_file_then_numeric_row():
    """Ties sort by source, then source file, then row number as a number (row 9 before row 10)."""
    frame = events_frame([("c1", at(0), "web", "a"), ("c1", at(0), "web", "b"),
                          ("c1", at(0), "web", "c"), ("c1", at(0), "web", "d")])
    frame = frame.with_columns(
        source=pl.Series(["web_b", "web_a", "web_a", "web_a"]),
        source_file=pl.Series(["f1", "f2", "f1", "f1"]),
        source_row=pl.Series([1, 1, 10, 9], dtype=pl.Int64),
    )
    core = build_journeys(frame, BuildSettings(level="event_type"), AS_OF)
    order = core.steps.sort("step_index")["event_type"].to_list()
    # (web_a, f1, 9) d, (web_a, f1, 10) c, (web_a, f2, 1) b, (web_b, f1, 1) a
    assert order == ["d", "c", "b", "a"]
    assert core.journeys["journey_key"].to_list() == [key("c1", "e4")]


@st.composite
def positioned_events(draw):
    """Rows of (customer, second, source, file, row), unique by position (source, file, row) as
    every staged event is; times drawn from a spread of 1 to 60 seconds, so from all rows tied
    to almost none."""
    spread = draw(st.integers(1, 60))
    rows = draw(st.lists(
        st.tuples(st.sampled_from(["c1", "c2", "c10"]), st.integers(0, spread - 1), st.sampled_from(["web", "call"]),
                  st.sampled_from(["a.csv", "b.csv"]), st.integers(1, 12)),
        max_size=60, unique_by=lambda r: r[2:]))
    return rows


@settings(max_examples=200, deadline=None)
@given(rows=positioned_events())
def test_order_events_is_the_order_of_the_whole_key(rows):
    """order_events sorts by customer and time and then only the tied rows by input position;
    the order must be that of the whole key (customer, ts, source, source_file, source_row),
    here from Python's sort of the tuples, with few ties, many, none or all."""
    frame = pl.DataFrame(
        {"event_id": [f"e{i}" for i in range(len(rows))],
         "customer_id": [r[0] for r in rows], "ts": [T0 + timedelta(seconds=r[1]) for r in rows],
         "source": [r[2] for r in rows], "source_file": [r[3] for r in rows], "source_row": [r[4] for r in rows]},
        schema={"event_id": pl.String, "customer_id": pl.String, "ts": schema.EVENTS_SCHEMA["ts"],
                "source": pl.String, "source_file": pl.String, "source_row": pl.Int64},
    )
    expected = [f"e{i}" for _, i in sorted((row, i) for i, row in enumerate(rows))]
    assert order_events(frame)["event_id"].to_list() == expected


def test_order_events_with_a_few_ties_among_many_rows():
    """The path for few ties (under half the rows): 100 events a second apart, then three pairs
    at equal times whose frame order is the reverse of their input position."""
    times = list(range(100)) + [10, 50, 99]
    rows = [("c1", t, "web", "f.csv", i) for i, t in enumerate(times)]
    rows = rows[::-1]  # the frame's order is not the input position's
    frame = pl.DataFrame(
        {"event_id": [f"e{r[4]}" for r in rows], "customer_id": [r[0] for r in rows],
         "ts": [T0 + timedelta(seconds=r[1]) for r in rows], "source": [r[2] for r in rows],
         "source_file": [r[3] for r in rows], "source_row": [r[4] for r in rows]},
        schema={"event_id": pl.String, "customer_id": pl.String, "ts": schema.EVENTS_SCHEMA["ts"],
                "source": pl.String, "source_file": pl.String, "source_row": pl.Int64},
    )
    order = order_events(frame)["event_id"].to_list()
    assert order == [f"e{i}" for _, i in sorted((t, i) for i, t in enumerate(times))]
    assert order[10:12] == ["e10", "e100"] and order[-2:] == ["e99", "e102"]


def test_keys_are_deterministic():
    """Keys are customer + first event id: the same input twice, or in another row order, gives the same keys."""
    rows = [("c1", at(0), "web", "view"), ("c1", at(90), "web", "view"), ("c2", at(3), "app", "open"),
            ("c2", at(3), "app", "open"), ("c1", at(91), "web", "buy")]
    frame = events_frame(rows)
    first = build(frame)
    second = build(frame)
    shuffled = build(frame.sample(fraction=1.0, shuffle=True, seed=7))
    cols = ["event_id", "journey_key", "session_key", "step_index"]
    for other in (second, shuffled):
        assert other.steps.select(cols).sort("event_id").equals(first.steps.select(cols).sort("event_id"))
    assert sorted(first.sessions["session_key"].to_list()) == [key("c1", "e1"), key("c1", "e2"), key("c2", "e3")]


def test_input_frame_is_not_changed():
    """build_journeys is pure: its input frame is unchanged."""
    frame = events_frame([("c1", at(5), "web", "view"), ("c1", at(0), "web", "buy")])
    before = frame.clone()
    build(frame, rules=FUNNEL_RULES)
    assert frame.equals(before)


def test_lazy_input_gives_same_result():
    """A LazyFrame input gives the same tables as a DataFrame."""
    frame = events_frame([("c1", at(0), "web", "view"), ("c1", at(50), "web", "buy")])
    eager = build(frame, rules=FUNNEL_RULES)
    lazy = build_journeys(frame.lazy(), BuildSettings(rules=FUNNEL_RULES), AS_OF)
    assert eager.steps.equals(lazy.steps)
    assert eager.journeys.equals(lazy.journeys)


# --------------------------------------------------------------------------- stages


def test_first_matching_rule_wins():
    """Each event gets the stage (and rule id) of the first rule it matches, in rule order."""
    general = StageRule("any_web", "awareness", channel=("web",))
    specific = StageRule("web_buy", "purchase", channel=("web",), event_type=("buy",))
    rows = [("c1", at(0), "web", "buy")]
    core = build(rows, rules=(general, specific))
    assert core.steps.select("stage", "rule_id").row(0) == ("awareness", "any_web")
    core = build(rows, rules=(specific, general))
    assert core.steps.select("stage", "rule_id").row(0) == ("purchase", "web_buy")


def test_rule_needs_channel_and_event_type_both():
    """A rule with channels and event types matches only when the channel is listed and the event type is listed."""
    rule = StageRule("store_buy", "purchase", channel=("store", "call_center"), event_type=("buy", "order"))
    rows = [("c1", at(0), "store", "buy"), ("c1", at(1), "call_center", "order"), ("c1", at(2), "web", "buy"),
            ("c1", at(3), "store", "view")]
    stages = build(rows, rules=(rule,)).steps.sort("step_index")["stage"].to_list()
    assert stages == ["purchase", "purchase", "unlabelled", "unlabelled"]


def test_glob_event_types():
    """Event types in a rule may be globs (* and ?), matched against the whole event type."""
    rule = StageRule("views", "awareness", event_type=("view_*", "pa?e"))
    rows = [("c1", at(0), "web", "view_product"), ("c1", at(1), "web", "page"), ("c1", at(2), "web", "pages")]
    stages = build(rows, rules=(rule,)).steps.sort("step_index")["stage"].to_list()
    assert stages == ["awareness", "awareness", "unlabelled"]


def test_glob_is_anchored_at_both_ends():
    """A glob matches the whole event type: 'view*' does not match 'preview', '*_cart' not 'add_cart_item'."""
    rule = StageRule("views", "awareness", event_type=("view*", "*_cart"))
    rows = [("c1", at(0), "web", "preview"), ("c1", at(1), "web", "add_cart_item"),
            ("c1", at(2), "web", "view"), ("c1", at(3), "web", "add_to_cart")]
    stages = build(rows, rules=(rule,)).steps.sort("step_index")["stage"].to_list()
    assert stages == ["unlabelled", "unlabelled", "awareness", "awareness"]


def test_glob_with_several_stars():
    """A glob with several '*' works: 'a*b*c' matches 'a_x_b_y_c', not 'a_b'."""
    rule = StageRule("abc", "awareness", event_type=("a*b*c",))
    rows = [("c1", at(0), "web", "a_x_b_y_c"), ("c1", at(1), "web", "a_b")]
    stages = build(rows, rules=(rule,)).steps.sort("step_index")["stage"].to_list()
    assert stages == ["awareness", "unlabelled"]


def test_glob_other_characters_are_literal():
    """Only * and ? are wildcards: '.', '+', '(' and the like in a glob match themselves; a rule may mix
    exact names and globs."""
    rule = StageRule("lit", "awareness", event_type=("v1.0*", "x+(y)?", "exact"))
    rows = [("c1", at(0), "web", "v1.0_beta"), ("c1", at(1), "web", "v100_beta"), ("c1", at(2), "web", "x+(y)z"),
            ("c1", at(3), "web", "xx(y)z"), ("c1", at(4), "web", "exact"), ("c1", at(5), "web", "exactly")]
    stages = build(rows, rules=(rule,)).steps.sort("step_index")["stage"].to_list()
    assert stages == ["awareness", "unlabelled", "awareness", "unlabelled", "awareness", "unlabelled"]


def test_property_rule():
    """A property condition matches when the event's JSON property has one of the listed values;
    a missing property or another value does not match; several properties must all match."""
    rule = StageRule("paid", "purchase", properties=(("status", ("paid", "settled")), ("currency", ("EUR",))))
    rows = [
        ("c1", at(0), "web", "order", '{"status": "paid", "currency": "EUR"}'),
        ("c1", at(1), "web", "order", '{"status": "settled", "currency": "EUR", "x": 1}'),
        ("c1", at(2), "web", "order", '{"status": "pending", "currency": "EUR"}'),
        ("c1", at(3), "web", "order", '{"status": "paid"}'),
        ("c1", at(4), "web", "order", "{}"),
    ]
    steps = build(rows, rules=(rule,)).steps.sort("step_index")
    assert steps["stage"].to_list() == ["purchase", "purchase", "unlabelled", "unlabelled", "unlabelled"]
    assert steps["rule_id"].to_list() == ["paid", "paid", None, None, None]


def test_property_rule_on_non_string_json_values():
    """Property values that are JSON numbers or booleans compare by their JSON text."""
    rule = StageRule("vip", "loyalty", properties=(("tier", ("3",)), ("vip", ("true",))))
    rows = [("c1", at(0), "web", "x", '{"tier": 3, "vip": true}'), ("c1", at(1), "web", "x", '{"tier": 3, "vip": false}')]
    assert build(rows, rules=(rule,)).steps.sort("step_index")["stage"].to_list() == ["loyalty", "unlabelled"]


def test_unlabelled_events_are_kept():
    """An event no rule matches gets stage 'unlabelled' and no rule id, and is kept as a step."""
    rows = [("c1", at(0), "web", "view"), ("c1", at(1), "web", "mystery"), ("c1", at(2), "social", "like")]
    steps = build(rows, rules=FUNNEL_RULES).steps.sort("step_index")
    assert steps["stage"].to_list() == ["awareness", "unlabelled", "unlabelled"]
    assert steps["rule_id"].to_list() == ["r_view", None, None]
    steps = build(rows).steps  # no rules at all
    assert steps["stage"].to_list() == [schema.UNLABELLED] * 3
    assert steps["rule_id"].null_count() == 3


def test_node_follows_the_graph_level():
    """The node of a step is its stage, its event type, or 'channel:stage', by level."""
    rows = [("c1", at(0), "web", "view"), ("c1", at(1), "store", "buy")]
    assert build(rows, rules=FUNNEL_RULES).steps["node"].to_list() == ["awareness", "purchase"]
    assert build(rows, rules=FUNNEL_RULES, level="event_type").steps["node"].to_list() == ["view", "buy"]
    assert build(rows, rules=FUNNEL_RULES, level="channel:stage").steps["node"].to_list() == ["web:awareness", "store:purchase"]


# --------------------------------------------------------------------------- status


def test_converted_journey():
    """A journey with a step at the goal stage is converted; converted_at is the first such step's time,
    even when later steps follow and even when the journey ended long before as_of."""
    rows = [("c1", at(0), "web", "view"), ("c1", at(5), "web", "buy"), ("c1", at(9), "web", "buy"),
            ("c1", at(12), "web", "view")]
    j = build(rows, rules=FUNNEL_RULES).journeys
    assert j["status"].to_list() == ["converted"]
    assert j["converted_at"].to_list() == [at(5)]
    assert j["ended_at"].to_list() == [at(12)] and j["started_at"].to_list() == [at(0)]


def test_goal_stage_is_configurable():
    """The goal is the configured goal stage: with goal 'consideration', a compare converts."""
    rows = [("c1", at(0), "web", "view"), ("c1", at(5), "web", "compare")]
    assert build(rows, rules=FUNNEL_RULES).journeys["status"].to_list() == ["dropped"]
    assert build(rows, rules=FUNNEL_RULES, goal_stage="consideration").journeys["status"].to_list() == ["converted"]


def test_dropped_versus_open_around_as_of():
    """Without the goal: dropped when as_of - ended_at is over the journey timeout, else open
    (exactly the timeout is still open)."""
    rows = [("c1", "2026-01-01 10:00", "web", "view"), ("c1", "2026-01-01 10:10", "web", "view")]
    timeout = 30 * 86400
    ended = ts("2026-01-01 10:10")

    def status(as_of):
        return build(rows, as_of=as_of, rules=FUNNEL_RULES, journey_timeout=timeout).journeys["status"].to_list()

    assert status(ended + timedelta(seconds=timeout)) == ["open"]
    assert status(ended + timedelta(seconds=timeout, microseconds=1)) == ["dropped"]
    assert status(ended + timedelta(days=1)) == ["open"]
    assert status(ended + timedelta(days=90)) == ["dropped"]


def test_as_of_in_another_time_zone():
    """as_of is an instant: the same instant written with another UTC offset gives the same status."""
    rows = [("c1", "2026-01-01 10:00", "web", "view")]
    utc = datetime(2026, 1, 31, 10, 0, 1, tzinfo=timezone.utc)  # 30 days + 1 s later: dropped
    plus2 = utc.astimezone(timezone(timedelta(hours=2)))
    minus5 = datetime(2026, 1, 31, 4, 59, 59, tzinfo=timezone(timedelta(hours=-5)))  # 30 days - 1 s: open
    assert build(rows, as_of=utc).journeys["status"].to_list() == ["dropped"]
    assert build(rows, as_of=plus2).journeys["status"].to_list() == ["dropped"]
    assert build(rows, as_of=minus5).journeys["status"].to_list() == ["open"]


def test_as_of_with_a_named_time_zone():
    """as_of is an instant also when its zone is an IANA name: 05:00:01 in New York is 10:00:01 UTC."""
    rows = [("c1", "2026-01-01 10:00", "web", "view")]
    new_york = ZoneInfo("America/New_York")
    later = datetime(2026, 1, 31, 10, 0, 1, tzinfo=timezone.utc).astimezone(new_york)  # 30 days + 1 s: dropped
    earlier = datetime(2026, 1, 31, 9, 59, 59, tzinfo=timezone.utc).astimezone(ZoneInfo("Asia/Tokyo"))  # open
    assert build(rows, as_of=later).journeys["status"].to_list() == ["dropped"]
    assert build(rows, as_of=earlier).journeys["status"].to_list() == ["open"]


def test_no_journey_timeout_means_dropped():
    """With no journey timeout, histories are complete: a journey without the goal is dropped."""
    rows = [("c1", at(0), "web", "view")]
    assert build(rows, as_of=at(1), rules=FUNNEL_RULES, journey_timeout=None).journeys["status"].to_list() == ["dropped"]


def test_sessions_and_journeys_tables():
    """sessions: first/last time, events and sorted distinct channels; journeys: sessions and events counted."""
    rows = [("c1", at(0), "web", "view"), ("c1", at(10), "email", "open"), ("c1", at(12), "web", "view"),
            ("c1", at(100), "store", "buy")]
    core = build(rows, rules=FUNNEL_RULES)
    sessions = core.sessions.sort("started_at")
    assert sessions.select("started_at", "ended_at", "events").rows() == [(at(0), at(12), 3), (at(100), at(100), 1)]
    assert sessions["channels"].to_list() == [["email", "web"], ["store"]]
    assert sessions["journey_key"].to_list() == [key("c1", "e1")] * 2
    assert core.journeys.select("sessions", "events", "status").rows() == [(2, 4, "converted")]


# --------------------------------------------------------------------------- option checks


@pytest.mark.parametrize(
    "options, message",
    [
        ({"inactivity_timeout": 0}, "inactivity_timeout"),
        ({"max_length": -5}, "max_length"),
        ({"journey_timeout": 0}, "journey_timeout"),
        ({"level": "channel"}, "level"),
        ({"rules": (StageRule("bad", "x", properties=(("a.b", ("1",)),)),)}, "property name"),
        ({"channel_timeouts": {"web": -60}}, "web"),
    ],
)
def test_bad_settings_raise_build_error(options, message):
    """Settings that cannot work raise BuildError naming what to fix, before any work."""
    with pytest.raises(BuildError, match=message):
        build([("c1", at(0), "web", "view")], **options)


# --------------------------------------------------------------------------- properties

CUSTOMERS = ["a", "b", "c"]
CHANNELS = ["web", "store", "email", "app"]
EVENT_TYPES = ["view", "compare", "buy", "open", "visit", "other"]
PROPERTIES = ['{}', '{"tier": "gold"}', '{"tier": "silver"}', '{"tier": "gold", "paid": "yes"}', '{"paid": "no"}']
# gaps chosen to land on and around the timeouts below
GAPS = [0, 0, 1, 59, 600, 1799, 1800, 1801, 3600, 3601, 7200, 7201, 40000, 86400, 86401, 200000]

RULE_POOL = (
    StageRule("store_buy", "purchase", channel=("store",), event_type=("buy", "visit")),
    StageRule("glob_o", "advocacy", event_type=("o*", "?ther")),
    StageRule("glob_mid", "consideration", channel=("app", "web"), event_type=("*mpa*",)),
    StageRule("buy", "purchase", event_type=("buy",)),
    StageRule("paid", "purchase", properties=(("paid", ("yes",)),)),
    StageRule("gold_view", "loyalty", event_type=("view",), properties=(("tier", ("gold",)),)),
    StageRule("view", "awareness", event_type=("view", "open")),
    StageRule("email", "retention", channel=("email",)),
    StageRule("compare", "consideration", event_type=("compare",)),
)


@st.composite
def event_logs(draw, max_events=14):
    """Small random event logs: per-customer gaps around the timeouts, ties, channels, types, properties."""
    n = draw(st.integers(1, max_events))
    clocks = {c: 0 for c in CUSTOMERS}
    rows = []
    for _ in range(n):
        customer = draw(st.sampled_from(CUSTOMERS))
        clocks[customer] += draw(st.sampled_from(GAPS))
        when = T0 + timedelta(seconds=clocks[customer])
        rows.append((customer, when, draw(st.sampled_from(CHANNELS)), draw(st.sampled_from(EVENT_TYPES)),
                     draw(st.sampled_from(PROPERTIES))))
    frame = events_frame(rows)
    # input position is lineage, independent of time order: give rows random sources and row numbers
    positions = draw(st.permutations(range(1, n + 1)))
    sources = draw(st.lists(st.sampled_from(["s1", "s2"]), min_size=n, max_size=n))
    return frame.with_columns(source=pl.Series(sources), source_row=pl.Series(list(positions), dtype=pl.Int64))


@st.composite
def build_settings(draw):
    channel_timeouts = draw(st.dictionaries(st.sampled_from(CHANNELS), st.sampled_from([None, 600, 1800, 7200]), max_size=2))
    rules = tuple(draw(st.permutations(RULE_POOL)))[: draw(st.integers(0, len(RULE_POOL)))]
    return BuildSettings(
        inactivity_timeout=draw(st.sampled_from([None, 1800, 3600])),
        max_length=draw(st.sampled_from([None, 3600, 7200, 86400])),
        channel_timeouts=channel_timeouts,
        journey_timeout=draw(st.sampled_from([None, 7200, 86400, 172800])),
        goal_stage=draw(st.sampled_from(["purchase", "loyalty"])),
        rules=rules,
        level=draw(st.sampled_from(schema.LEVELS)),
    )


as_of_times = st.integers(0, 10 * 86400).map(lambda s: T0 + timedelta(seconds=s))

PROPERTY_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def reference_build(frame: pl.DataFrame, s: BuildSettings, as_of: datetime) -> dict:
    return reference.build(
        frame.to_dicts(), as_of,
        inactivity_timeout=s.inactivity_timeout, max_length=s.max_length, channel_timeouts=s.channel_timeouts,
        journey_timeout=s.journey_timeout, goal_stage=s.goal_stage, rules=s.rules, level=s.level,
    )


STEP_COLUMNS = ["event_id", "customer_id", "journey_key", "session_key", "step_index", "ts", "channel",
                "event_type", "stage", "rule_id", "node"]
SESSION_COLUMNS = ["session_key", "customer_id", "journey_key", "started_at", "ended_at", "events", "channels"]
JOURNEY_COLUMNS = ["journey_key", "customer_id", "started_at", "ended_at", "sessions", "events", "converted_at", "status",
                   "visits", "path", "channels"]


def rows_of(frame: pl.DataFrame, columns: list[str]) -> list[tuple]:
    return sorted(frame.select(columns).rows(), key=lambda r: r[0])


def ref_rows(items: list[dict], columns: list[str]) -> list[tuple]:
    return sorted((tuple(item[c] for c in columns) for item in items), key=lambda r: r[0])


@PROPERTY_SETTINGS
@given(frame=event_logs(), s=build_settings(), as_of=as_of_times)
def test_every_event_in_exactly_one_session_and_journey(frame, s, as_of):
    """Every event is one step, in exactly one session and one journey; the counts add up."""
    core = build_journeys(frame, s, as_of)
    assert sorted(core.steps["event_id"].to_list()) == sorted(frame["event_id"].to_list())
    assert core.steps["session_key"].null_count() == 0 and core.steps["journey_key"].null_count() == 0
    assert core.sessions["events"].sum() == frame.height
    assert core.journeys["events"].sum() == frame.height
    assert core.sessions["session_key"].n_unique() == core.sessions.height
    assert core.journeys["journey_key"].n_unique() == core.journeys.height
    assert set(core.steps["session_key"]) == set(core.sessions["session_key"])
    assert set(core.steps["journey_key"]) == set(core.journeys["journey_key"])
    assert core.journeys["sessions"].sum() == core.sessions.height


@PROPERTY_SETTINGS
@given(frame=event_logs(), s=build_settings(), as_of=as_of_times)
def test_session_never_spans_two_journeys_or_customers(frame, s, as_of):
    """All steps of a session share one journey and one customer; all steps of a journey one customer."""
    steps = build_journeys(frame, s, as_of).steps
    per_session = steps.group_by("session_key").agg(pl.col("journey_key").n_unique(), pl.col("customer_id").n_unique())
    assert per_session["journey_key"].max() == 1 and per_session["customer_id"].max() == 1
    per_journey = steps.group_by("journey_key").agg(pl.col("customer_id").n_unique())
    assert per_journey["customer_id"].max() == 1


@PROPERTY_SETTINGS
@given(frame=event_logs(), s=build_settings(), as_of=as_of_times)
def test_sessions_of_a_customer_never_overlap(frame, s, as_of):
    """Sessions (and journeys) of one customer never overlap in time: each ends no later than the next starts."""
    core = build_journeys(frame, s, as_of)
    for table in (core.sessions, core.journeys):
        for _, group in table.group_by("customer_id"):
            group = group.sort("started_at", "ended_at")
            ends = group["ended_at"].to_list()
            starts = group["started_at"].to_list()
            for end, next_start in zip(ends, starts[1:]):
                assert end <= next_start


@PROPERTY_SETTINGS
@given(frame=event_logs(), s=build_settings(), as_of=as_of_times)
def test_output_equals_reference(frame, s, as_of):
    """steps, sessions and journeys equal the plain-Python reference implementation."""
    core = build_journeys(frame, s, as_of)
    ref = reference_build(frame, s, as_of)
    assert rows_of(core.steps, STEP_COLUMNS) == ref_rows(ref["steps"], STEP_COLUMNS)
    assert rows_of(core.sessions, SESSION_COLUMNS) == ref_rows(ref["sessions"], SESSION_COLUMNS)
    assert rows_of(core.journeys, JOURNEY_COLUMNS) == ref_rows(ref["journeys"], JOURNEY_COLUMNS)


@PROPERTY_SETTINGS
@given(frame=event_logs(), s=build_settings(), as_of=as_of_times, seed=st.integers(0, 2**32 - 1))
def test_shuffling_rows_changes_nothing(frame, s, as_of, seed):
    """Any permutation of the input rows gives the same steps, sessions and journeys (compared sorted)."""
    core = build_journeys(frame, s, as_of)
    other = build_journeys(frame.sample(fraction=1.0, shuffle=True, seed=seed), s, as_of)
    assert other.steps.sort("event_id").equals(core.steps.sort("event_id"))
    assert other.sessions.sort("session_key").equals(core.sessions.sort("session_key"))
    assert other.journeys.sort("journey_key").equals(core.journeys.sort("journey_key"))


@PROPERTY_SETTINGS
@given(frame=event_logs(), s=build_settings(), as_of=as_of_times)
def test_session_cuts_obey_the_limits(frame, s, as_of):
    """Inside a session no gap is over its event's channel timeout and no event is over max_length
    after the session's first event; inside a journey no gap is over the journey timeout."""
    steps = build_journeys(frame, s, as_of).steps.sort("customer_id", "journey_key", "step_index")
    starts = {}
    previous = None
    for row in steps.iter_rows(named=True):
        if previous is not None and previous["journey_key"] == row["journey_key"]:
            gap = (row["ts"] - previous["ts"]).total_seconds()
            if s.journey_timeout is not None:
                assert gap <= s.journey_timeout
            if previous["session_key"] == row["session_key"]:
                timeout = s.channel_timeouts.get(row["channel"], s.inactivity_timeout)  # an override may be None
                if timeout is not None:
                    assert gap <= timeout
        starts.setdefault(row["session_key"], row["ts"])
        if s.max_length is not None:
            assert (row["ts"] - starts[row["session_key"]]).total_seconds() <= s.max_length
        previous = row


LABEL_PROPERTIES = PROPERTIES + ['{"tier": 7, "paid": true}', '{"tier": "gold", "paid": "yes", "n": 1.5}',
                                 'not json', '[1, 2]', '{"tier": null}', None]
LABEL_RULES = RULE_POOL + (StageRule("numbers", "loyalty", properties=(("tier", ("7",)), ("paid", ("true",)))),)


@settings(max_examples=150, deadline=None)
@given(events=st.lists(st.tuples(st.sampled_from(CHANNELS), st.sampled_from(EVENT_TYPES + ["ompa"]),
                                 st.sampled_from(LABEL_PROPERTIES)), max_size=40),
       rules=st.permutations(LABEL_RULES).flatmap(
           lambda rules: st.integers(1, len(rules)).map(lambda n: tuple(rules[:n]))))
def test_labels_equal_the_reference_event_by_event(events, rules):
    """Without property rules the rules are judged once per distinct channel and event type and
    joined back; with them, each property a rule names is read once per event. Either way every
    event, repeats, bad JSON and non-string values included, gets the stage and rule of the
    first rule it matches (the reference, event by event), in the events' order, and no helper
    column is left. (Staging quarantines events without a channel or event type.)"""
    frame = pl.DataFrame({"channel": [e[0] for e in events], "event_type": [e[1] for e in events],
                          "properties": [e[2] for e in events], "row": list(range(len(events)))},
                         schema={"channel": pl.String, "event_type": pl.String, "properties": pl.String,
                                 "row": pl.Int64})
    labelled = label_stages(frame, rules)
    assert labelled.columns == [*frame.columns, "stage", "rule_id"]
    assert labelled["row"].to_list() == list(range(len(events)))
    expected = [reference.label({"channel": c, "event_type": e, "properties": p}, rules) for c, e, p in events]
    assert list(zip(labelled["stage"], labelled["rule_id"])) == expected


def test_reference_agrees_on_a_hand_case():
    """The reference itself reproduces a hand-counted case (guards the oracle): 20-min events over 30 h."""
    frame = events_frame([("c1", at(20 * i), "web", "view") for i in range(91)])
    ref = reference_build(frame, BuildSettings(), AS_OF)
    assert sorted(s["events"] for s in ref["sessions"]) == [18, 73]
    core = build(frame)
    assert rows_of(core.sessions, SESSION_COLUMNS) == ref_rows(ref["sessions"], SESSION_COLUMNS)


def test_settings_dataclass_defaults():
    """Defaults: 30 min inactivity, 24 h max length, 30 day journeys, goal 'purchase', level 'stage'."""
    d = BuildSettings()
    assert (d.inactivity_timeout, d.max_length, d.journey_timeout, d.goal_stage, d.level) == (1800, 86400, 2592000, "purchase", "stage")
    assert dataclasses.replace(d, level="event_type").level == "event_type"
