"""The flow laws of sql/checks/ run by marts.check_laws: they hold on a warehouse built by the real
SQL, and tampering with one number makes check_laws raise LawError naming the law, the segment,
the node and the numbers. Then the rule that decides open against dropped: a journey is open
while as_of - ended_at <= the journey timeout, and dropped from the first microsecond after."""

from __future__ import annotations

from datetime import timedelta

import pytest

from conftest import events_frame, marts_db, ts
from pipeline import marts, warehouse
from pipeline.config import StageRule
from pipeline.journeys import BuildSettings

RULES = (
    StageRule("r_view", "awareness", event_type=("view",)),
    StageRule("r_compare", "consideration", event_type=("compare",)),
    StageRule("r_buy", "purchase", event_type=("buy",)),
)
FUNNEL = ("awareness", "consideration", "purchase")
AS_OF = ts("2026-03-01")

# Three journeys, hand-counted graph of segment all=all:
#   c1 view, compare, buy    -> converted
#   c2 view, compare         -> dropped (two months before as_of)
#   c3 view, 2 days before as_of -> open
# START -> awareness 3; awareness -> consideration 2; awareness -> OPEN 1;
# consideration -> purchase 1; consideration -> DROPPED 1; purchase -> CONVERTED 1.
ROWS = [
    ("c1", "2026-01-01 10:00", "web", "view"), ("c1", "2026-01-01 10:05", "web", "compare"),
    ("c1", "2026-01-01 10:10", "web", "buy"),
    ("c2", "2026-01-01 11:00", "web", "view"), ("c2", "2026-01-01 11:05", "web", "compare"),
    ("c3", "2026-02-27 12:00", "web", "view"),
]


@pytest.fixture
def con():
    c = marts_db(events_frame(ROWS), BuildSettings(rules=RULES), AS_OF, stage_order=FUNNEL)
    yield c
    c.close()


def edges(con) -> dict:
    return dict(((f, t), n) for f, t, n in con.sql(
        "select from_node, to_node, transitions from marts.transitions where segment_key = 'all'").fetchall())


def test_laws_hold_on_a_built_warehouse(con):
    """check_laws returns normally, with the number of laws in sql/checks/ (one file each)."""
    assert edges(con) == {
        ("START", "awareness"): 3, ("awareness", "consideration"): 2, ("awareness", "OPEN"): 1,
        ("consideration", "purchase"): 1, ("consideration", "DROPPED"): 1, ("purchase", "CONVERTED"): 1,
    }
    n = len(list((warehouse.sql_dir() / "checks").glob("*.sql")))
    assert n >= 5
    assert marts.check_laws(con) == n


def law_error(con) -> str:
    with pytest.raises(marts.LawError) as info:
        marts.check_laws(con)
    return str(info.value)


def test_one_more_transition_on_an_edge_breaks_node_balance(con):
    """awareness -> consideration 2 -> 3: consideration now has 3 in and 2 out, awareness 3 in and 4 out,
    and awareness sends 3 onward while visits 3 - exits 1 = 2."""
    con.execute("update marts.transitions set transitions = transitions + 1 "
                "where segment_key = 'all' and from_node = 'awareness' and to_node = 'consideration'")
    message = law_error(con)
    assert "node_balance: segment all=all, node consideration: 3 transitions in, 2 out" in message
    assert "node_balance: segment all=all, node awareness: 3 transitions in, 4 out" in message
    assert "visits_minus_exits: segment all=all, node awareness: visits 3 - exits 1 = 2" in message
    assert "but 3 onward and 3 out incl. self-loops" in message


def test_deleting_a_terminal_edge_breaks_start_and_terminals(con):
    """Without purchase -> CONVERTED, CONVERTED receives 0 of the 1 converted journey and purchase
    has 1 transition in and 0 out."""
    con.execute("delete from marts.transitions where segment_key = 'all' and to_node = 'CONVERTED'")
    message = law_error(con)
    assert "start_and_terminals: segment all=all, node CONVERTED: 1 journeys expected, 0 in the graph" in message
    assert "node_balance: segment all=all, node purchase: 1 transitions in, 0 out" in message


def test_a_start_edge_too_many_breaks_start_and_terminals(con):
    """START -> awareness 3 -> 5: START sends out 5 journeys where there are 3."""
    con.execute("update marts.transitions set transitions = 5 where segment_key = 'all' and from_node = 'START'")
    assert "start_and_terminals: segment all=all, node START: 3 journeys expected, 5 in the graph" in law_error(con)


def test_a_funnel_stage_above_the_previous_breaks_funnel_reconciles(con):
    """Strict funnel: awareness 3, consideration 2, purchase 1. Setting purchase to 4 exceeds both the
    previous stage (2) and the journeys that reached purchase at all (1)."""
    assert con.sql("select journeys from marts.funnel where segment_key = 'all' order by stage_order").fetchall() == \
        [(3,), (2,), (1,)]
    con.execute("update marts.funnel set journeys = 4 where segment_key = 'all' and stage = 'purchase'")
    message = law_error(con)
    assert "funnel_reconciles: segment all=all, node purchase: funnel 4 (previous stage 2), reached at all 1" in message


def test_a_first_funnel_stage_below_the_journeys_reaching_it_breaks_funnel_reconciles(con):
    """Strict, no window: the first stage must count every journey that reached it at all (3), not 2."""
    con.execute("update marts.funnel set journeys = 2 where segment_key = 'all' and stage_order = 1")
    assert "funnel_reconciles: segment all=all, node awareness:" in law_error(con)


def test_first_funnel_stage_break_message_gives_the_numbers(con):
    """The LawError for a broken first funnel stage gives its numbers: funnel 2, reached at all 3."""
    con.execute("update marts.funnel set journeys = 2 where segment_key = 'all' and stage_order = 1")
    message = law_error(con)
    assert "funnel_reconciles: segment all=all, node awareness: funnel 2" in message
    assert "reached at all 3" in message


def test_a_node_missing_from_stage_stats_breaks_visits_minus_exits(con):
    """Deleting consideration's stage_stats row leaves 2 transitions out of a node with no visits:
    transitions out to real nodes (1) is not visits - exits (0 - 0), so a law must break."""
    con.execute("delete from marts.stage_stats where segment_key = 'all' and node = 'consideration'")
    assert "node consideration" in law_error(con)


def test_stage_stats_visits_breaks_visits_minus_exits(con):
    """stage_stats consideration visits 2 -> 5: onward transitions (1 to purchase) are no longer visits - exits."""
    con.execute("update marts.stage_stats set visits = 5 where segment_key = 'all' and node = 'consideration'")
    message = law_error(con)
    assert "visits_minus_exits: segment all=all, node consideration: visits 5 - exits 1 = 4, repeats 0, " \
           "but 1 onward and 1 out incl. self-loops" in message


# --------------------------------------------------------------------------- open becomes dropped at the timeout

TIMEOUT = 30 * 86400
LAST = ts("2026-01-01 11:00")  # the journey's last event


def timeout_db(as_of):
    rows = [("c1", "2026-01-01 10:00", "web", "view"), ("c1", "2026-01-01 11:00", "web", "compare")]
    return marts_db(events_frame(rows), BuildSettings(rules=RULES, journey_timeout=TIMEOUT), as_of, stage_order=FUNNEL)


def drop_offs(con) -> dict:
    return dict(con.sql("select node, drop_offs from marts.stage_stats where segment_key = 'all'").fetchall())


def test_journey_is_open_at_exactly_the_timeout():
    """as_of = ended_at + timeout: not more than the timeout has passed, so the journey is open and no
    drop-off anywhere (stage_stats.drop_offs 0, no DROPPED edge, OPEN receives it)."""
    con = timeout_db(LAST + timedelta(seconds=TIMEOUT))
    assert con.sql("select status from core.journeys").fetchall() == [("open",)]
    assert drop_offs(con) == {"awareness": 0, "consideration": 0}
    assert edges(con) == {("START", "awareness"): 1, ("awareness", "consideration"): 1, ("consideration", "OPEN"): 1}
    assert con.sql("select dropped, open from marts.segment_summary where segment_key = 'all'").fetchall() == [(0, 1)]
    assert marts.check_laws(con) > 0


@pytest.mark.parametrize("after", [timedelta(microseconds=1), timedelta(seconds=1)])
def test_journey_is_dropped_just_after_the_timeout(after):
    """as_of = ended_at + timeout + 1 microsecond (or 1 second): dropped, counted once, at its last stage
    (consideration), with one DROPPED edge and no OPEN one."""
    con = timeout_db(LAST + timedelta(seconds=TIMEOUT) + after)
    assert con.sql("select status from core.journeys").fetchall() == [("dropped",)]
    assert drop_offs(con) == {"awareness": 0, "consideration": 1}
    assert edges(con) == {("START", "awareness"): 1, ("awareness", "consideration"): 1, ("consideration", "DROPPED"): 1}
    assert con.sql("select dropped, open from marts.segment_summary where segment_key = 'all'").fetchall() == [(1, 0)]
    assert con.sql("select node, journey_id from marts.drop_off_journeys where segment_key = 'all'").fetchall() == \
        [("consideration", con.sql("select journey_id from core.journeys").fetchall()[0][0])]
    assert marts.check_laws(con) > 0
