"""marts.funnel (sql/marts/funnel.sql) on hand-made journeys, built by the real SQL through
conftest.marts_db: strict against any order, the window, conversion from the previous stage and
from the start, per segment. Every expected number is counted by hand in the comments.

The funnel stages each journey reached (core.journeys.funnel_reached, found by the Polars build)
are also checked against a plain step-by-step reference on random journeys (hypothesis)."""

from __future__ import annotations

from datetime import timedelta

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import events_frame, marts_db, ts
from pipeline.config import StageRule
from pipeline.journeys import BuildSettings, funnel_reached

RULES = (
    StageRule("r_view", "awareness", event_type=("view",)),
    StageRule("r_compare", "consideration", event_type=("compare",)),
    StageRule("r_buy", "purchase", event_type=("buy",)),
)
FUNNEL = ("awareness", "consideration", "purchase")
AS_OF = ts("2026-03-01")


def build(rows, segments=None, **mart_options):
    segs = None
    if segments is not None:
        segs = pl.DataFrame(segments, schema=["customer_id", "segment_key", "segment_value"], orient="row")
    return marts_db(events_frame(rows), BuildSettings(rules=RULES), AS_OF, stage_order=FUNNEL, segments_long=segs,
                    **mart_options)


def funnel(con, segment=("all", "all")) -> list[tuple]:
    """[(stage_order, stage, journeys, conversion_from_previous, conversion_from_start)] of one segment."""
    return con.sql(
        "select stage_order, stage, journeys, conversion_from_previous, conversion_from_start from marts.funnel "
        "where segment_key = ? and segment_value = ? order by stage_order",
        params=list(segment),
    ).fetchall()


def journeys(con, segment=("all", "all")) -> list[int]:
    return [row[2] for row in funnel(con, segment)]


# Five journeys, one per customer (all on 2026-01-01, minutes apart: one journey each):
#   c1 view, compare, buy      strict 1,2,3   any 1,2,3
#   c2 compare, view           strict 1       any 1,2   (consideration came before awareness)
#   c3 view                    strict 1       any 1
#   c4 buy, compare, view      strict 1       any 1,2,3
#   c5 compare                 strict -       any -     (never reached awareness)
ORDER = [
    ("c1", "2026-01-01 10:00", "web", "view"), ("c1", "2026-01-01 10:05", "web", "compare"),
    ("c1", "2026-01-01 10:10", "web", "buy"),
    ("c2", "2026-01-01 10:00", "web", "compare"), ("c2", "2026-01-01 10:05", "web", "view"),
    ("c3", "2026-01-01 10:00", "web", "view"),
    ("c4", "2026-01-01 10:00", "store", "buy"), ("c4", "2026-01-01 10:05", "web", "compare"),
    ("c4", "2026-01-01 10:10", "web", "view"),
    ("c5", "2026-01-01 10:00", "web", "compare"),
]


def test_strict_counts_stages_reached_in_order():
    """strict: a journey counts at stage k when it reached stages 1..k in that order. 5 journeys;
    awareness: c1-c4 = 4 (4/5 from the previous = the start); consideration after awareness: c1 only
    (c2's and c4's came before it) = 1 (1/4, 1/5); purchase after that: c1 = 1 (1/1, 1/5)."""
    con = build(ORDER, funnel_mode="strict")
    assert funnel(con) == [
        (1, "awareness", 4, pytest.approx(4 / 5), pytest.approx(4 / 5)),
        (2, "consideration", 1, pytest.approx(1 / 4), pytest.approx(1 / 5)),
        (3, "purchase", 1, pytest.approx(1 / 1), pytest.approx(1 / 5)),
    ]


def test_any_order_counts_stages_reached_in_any_order():
    """any: a journey counts at stage k when it reached all of stages 1..k, in any order. awareness: 4;
    consideration: c1, c2, c4 = 3 (3/4, 3/5); purchase: c1, c4 = 2 (2/3, 2/5)."""
    con = build(ORDER, funnel_mode="any")
    assert funnel(con) == [
        (1, "awareness", 4, pytest.approx(4 / 5), pytest.approx(4 / 5)),
        (2, "consideration", 3, pytest.approx(3 / 4), pytest.approx(3 / 5)),
        (3, "purchase", 2, pytest.approx(2 / 3), pytest.approx(2 / 5)),
    ]


def test_consideration_before_awareness_counts_only_in_any_order():
    """The one rule on its own: one journey, compare then view. At stage 2 it counts in 'any', not in 'strict'."""
    rows = [("c1", "2026-01-01 10:00", "web", "compare"), ("c1", "2026-01-01 10:05", "web", "view")]
    assert journeys(build(rows, funnel_mode="strict")) == [1, 0, 0]
    assert journeys(build(rows, funnel_mode="any")) == [1, 1, 0]


def test_strict_order_uses_the_next_step_after_the_previous_stage():
    """strict: a stage reached again after the previous stage counts, even if it was also reached before:
    compare, view, compare, buy -> awareness at step 2, consideration at step 3, purchase at step 4."""
    rows = [("c1", "2026-01-01 10:00", "web", "compare"), ("c1", "2026-01-01 10:01", "web", "view"),
            ("c1", "2026-01-01 10:02", "web", "compare"), ("c1", "2026-01-01 10:03", "web", "buy")]
    assert journeys(build(rows, funnel_mode="strict")) == [1, 1, 1]


def test_equal_times_follow_the_input_order():
    """Steps at the same time are ordered by their input position: view and compare at 10:00 in that
    order count as awareness then consideration in strict mode; the other way round they do not."""
    in_order = [("c1", "2026-01-01 10:00", "web", "view"), ("c1", "2026-01-01 10:00", "web", "compare")]
    reversed_ = [("c1", "2026-01-01 10:00", "web", "compare"), ("c1", "2026-01-01 10:00", "web", "view")]
    assert journeys(build(in_order, funnel_mode="strict")) == [1, 1, 0]
    assert journeys(build(reversed_, funnel_mode="strict")) == [1, 0, 0]


# Window of one hour (3600 s), measured from the first counted stage:
#   c1 view 10:00, compare 10:30, buy 11:30    purchase 90 min after awareness: not counted
#   c2 view 10:00, compare 10:20, buy 11:00    exactly 3600 s: counted (the window is inclusive)
#   c3 view 10:00, compare 11:00:01, buy 11:05 consideration 3601 s after: neither it nor purchase counts
#   c4 view 10:00, compare 10:50, buy 11:40    each step 50 min apart, purchase 100 min after the start: not counted
#   c5 compare 10:00, view 10:30, buy 11:10    any order: consideration within 30 min, purchase 70 min: not counted
WINDOW_ROWS = [
    ("c1", "2026-01-01 10:00", "web", "view"), ("c1", "2026-01-01 10:30", "web", "compare"),
    ("c1", "2026-01-01 11:30", "web", "buy"),
    ("c2", "2026-01-01 10:00", "web", "view"), ("c2", "2026-01-01 10:20", "web", "compare"),
    ("c2", "2026-01-01 11:00", "web", "buy"),
    ("c3", "2026-01-01 10:00", "web", "view"), ("c3", "2026-01-01 11:00:01", "web", "compare"),
    ("c3", "2026-01-01 11:05", "web", "buy"),
    ("c4", "2026-01-01 10:00", "web", "view"), ("c4", "2026-01-01 10:50", "web", "compare"),
    ("c4", "2026-01-01 11:40", "web", "buy"),
    ("c5", "2026-01-01 10:00", "web", "compare"), ("c5", "2026-01-01 10:30", "web", "view"),
    ("c5", "2026-01-01 11:10", "web", "buy"),
]


def test_strict_window_a_stage_reached_after_the_window_does_not_count():
    """strict, window 1 h from the first counted stage: awareness c1-c5 = 5; consideration in order and
    within 1 h: c1, c2, c4 = 3 (c3 at 3601 s, c5 before awareness); purchase within 1 h of the
    awareness step: c2 only (exactly 3600 s) = 1. Conversions 5/5, 3/5, 1/3; from the start 1, 3/5, 1/5."""
    con = build(WINDOW_ROWS, funnel_mode="strict", funnel_window=3600)
    assert funnel(con) == [
        (1, "awareness", 5, pytest.approx(1.0), pytest.approx(1.0)),
        (2, "consideration", 3, pytest.approx(3 / 5), pytest.approx(3 / 5)),
        (3, "purchase", 1, pytest.approx(1 / 3), pytest.approx(1 / 5)),
    ]


def test_strict_without_window_counts_the_same_journeys_to_the_end():
    """Without a window the same journeys all reach every stage in order except c5 (compare before
    view, no compare after it): 5, 4, 4."""
    assert journeys(build(WINDOW_ROWS, funnel_mode="strict")) == [5, 4, 4]


def test_any_window_spans_the_first_reach_of_every_counted_stage():
    """any, window 1 h: stage k counts when the first reaches of stages 1..k lie within 1 h of each other.
    consideration: c1 (30 min), c2 (20), c4 (50), c5 (30) = 4, not c3 (3601 s); purchase: c2 (60 min) = 1
    (c1 90, c4 100, c5 70 min)."""
    con = build(WINDOW_ROWS, funnel_mode="any", funnel_window=3600)
    assert funnel(con) == [
        (1, "awareness", 5, pytest.approx(1.0), pytest.approx(1.0)),
        (2, "consideration", 4, pytest.approx(4 / 5), pytest.approx(4 / 5)),
        (3, "purchase", 1, pytest.approx(1 / 4), pytest.approx(1 / 5)),
    ]


def test_funnel_per_segment():
    """Every segment value gets its own funnel over its own journeys, the stage rows always present
    (0 journeys where nobody got there), and customers missing from the segments file are '(unknown)'.
    strict on ORDER with c1, c2 gold; c3, c4 silver; c5 unknown:
      gold    awareness 2 (2/2), consideration 1 (1/2), purchase 1 (1/1)
      silver  awareness 2 (2/2), consideration 0 (0/2), purchase 0 (0 of 0: no rate)
      unknown awareness 0 (0/1), then no previous journeys: no rate."""
    con = build(ORDER, segments=[("c1", "tier", "gold"), ("c2", "tier", "gold"), ("c3", "tier", "silver"),
                                 ("c4", "tier", "silver")], funnel_mode="strict")
    assert funnel(con, ("tier", "gold")) == [
        (1, "awareness", 2, 1.0, 1.0),
        (2, "consideration", 1, 0.5, 0.5),
        (3, "purchase", 1, 1.0, 0.5),
    ]
    assert funnel(con, ("tier", "silver")) == [
        (1, "awareness", 2, 1.0, 1.0),
        (2, "consideration", 0, 0.0, 0.0),
        (3, "purchase", 0, None, 0.0),
    ]
    assert funnel(con, ("tier", "(unknown)")) == [
        (1, "awareness", 0, 0.0, 0.0),
        (2, "consideration", 0, None, 0.0),
        (3, "purchase", 0, None, 0.0),
    ]
    assert journeys(con) == [4, 1, 1]
    # segment funnels add up to the whole one, stage by stage
    per_stage = con.sql("select stage_order, sum(journeys) from marts.funnel where segment_key = 'tier' "
                        "group by all order by stage_order").fetchall()
    assert [int(n) for _, n in per_stage] == journeys(con)


def test_funnel_segments_with_any_order_and_window():
    """The same segmentation in 'any' mode with a 1 h window on WINDOW_ROWS: gold = c1, c2 reach
    awareness 2, consideration 2 (30 and 20 min), purchase 1 (c2); silver = c3, c4, c5: awareness 3,
    consideration 2 (c4, c5), purchase 0."""
    con = build(WINDOW_ROWS, segments=[("c1", "tier", "gold"), ("c2", "tier", "gold"), ("c3", "tier", "silver"),
                                       ("c4", "tier", "silver"), ("c5", "tier", "silver")],
                funnel_mode="any", funnel_window=3600)
    assert journeys(con, ("tier", "gold")) == [2, 2, 1]
    assert journeys(con, ("tier", "silver")) == [3, 2, 0]
    silver = funnel(con, ("tier", "silver"))
    assert silver[1][3:] == (pytest.approx(2 / 3), pytest.approx(2 / 3))


# --------------------------------------------------------------------------- funnel_reached


def reference_reached(journey: list[tuple[str, int]], stages: tuple[str, ...], mode: str, window: int | None) -> int:
    """Funnel stages reached by one journey of (stage, seconds) steps in order, one step at a time:
    strict walks the steps and advances on the next stage's step (with a window: stops at the first
    such step more than `window` after the step that reached stage 1); any takes each stage's
    first time and counts k while stages 1..k all have one and they lie within the window."""
    if mode == "strict":
        reached, start = 0, None
        for stage, t in journey:
            if reached < len(stages) and stage == stages[reached]:
                if reached == 0:
                    start = t
                elif window is not None and t - start > window:
                    break
                reached += 1
        return reached
    firsts: dict[str, int] = {}
    for stage, t in journey:
        firsts.setdefault(stage, t)
    reached = 0
    for k in range(1, len(stages) + 1):
        times = [firsts.get(stage) for stage in stages[:k]]
        if None in times or (window is not None and max(times) - min(times) > window):
            break
        reached = k
    return reached


POOL = ("a", "b", "c", "x")
journey_st = st.lists(st.tuples(st.sampled_from(POOL), st.sampled_from([0, 0, 5, 60, 3600])), max_size=9)


@settings(max_examples=300, deadline=None)
@given(journeys=st.lists(journey_st, min_size=1, max_size=6),
       stages=st.lists(st.sampled_from(POOL[:3]), max_size=4).map(tuple),
       mode=st.sampled_from(["strict", "any"]),
       window=st.sampled_from([None, 0, 5, 60, 3665]))
def test_funnel_reached_equals_a_step_by_step_reference(journeys, stages, mode, window):
    """Random journeys (gaps of 0 s to 1 h, stages repeated or outside the funnel, funnels with a
    stage twice or empty): every journey's count equals the reference's."""
    timed = []
    for journey in journeys:
        t, steps = 0, []
        for stage, gap in journey or [("x", 0)]:  # every journey has a step
            t += gap
            steps.append((stage, t))
        timed.append(steps)
    frame = pl.DataFrame(
        [(j, stage, ts("2026-01-01") + timedelta(seconds=t)) for j, steps in enumerate(timed) for stage, t in steps],
        schema={"journey_no": pl.Int64, "stage": pl.String, "ts": pl.Datetime("us", "UTC")}, orient="row",
    )
    got = funnel_reached(frame, stages, mode, window).to_list()
    assert got == [reference_reached(steps, stages, mode, window) for steps in timed]
