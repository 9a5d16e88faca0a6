"""marts.repeat_contacts (sql/marts/repeat_contacts.sql) on hand-counted journeys, built by the real
SQL through conftest.marts_db with mart_options contact_channels / contact_window.

Rule: an event on a contact channel within the window after the journey's latest earlier event on
another channel (the touch) is a repeat contact from that touch's channel. journeys_touched =
journeys with any event on from_channel; journeys = those with at least one repeat contact from it;
share = journeys / journeys_touched."""

from __future__ import annotations

import polars as pl
import pytest

from conftest import events_frame, marts_db, ts
from pipeline.journeys import BuildSettings

AS_OF = ts("2026-06-01")
HOUR = 3600


def build(rows, segments=None, **mart_options):
    segs = None
    if segments is not None:
        segs = pl.DataFrame(segments, schema=["customer_id", "segment_key", "segment_value"], orient="row")
    return marts_db(events_frame(rows), BuildSettings(), AS_OF, segments_long=segs, **mart_options)


def contacts(con, segment=("all", "all")) -> dict:
    """{(from_channel, to_channel): (journeys_touched, journeys, contacts, share, wait_p50_seconds)}."""
    return {(r[0], r[1]): r[2:] for r in con.sql(
        "select from_channel, to_channel, journeys_touched, journeys, contacts, share, wait_p50_seconds "
        "from marts.repeat_contacts where segment_key = ? and segment_value = ?", params=list(segment)).fetchall()}


# One journey per customer on 2026-01-01, contact channel call_center, window 1 h:
#   c1 web 10:00, call 10:30                          (web, call_center): 1 contact, wait 1800
#   c2 web 10:00, call 11:30                          call 90 min after the touch: none
#   c3 call 10:00, call 10:10                         a call after a call is no repeat from call_center: none
#   c4 web 10:00, call 10:10, call 10:20              2 contacts (waits 600, 1200) in 1 journey
#   c5 web 10:00                                      touched, no contact
#   c6 store 10:00, call 10:05, web 10:10, call 10:40 (store, call_center) wait 300; (web, call_center) wait 1800
# web touched by c1, c2, c4, c5, c6 = 5 journeys; with a repeat contact: c1, c4, c6 = 3; contacts 4;
# share 3/5; waits 600, 1200, 1800, 1800 -> median 1500. store: touched 1, 1 journey, 1 contact, share 1.
ROWS = [
    ("c1", "2026-01-01 10:00", "web", "page_view"), ("c1", "2026-01-01 10:30", "call_center", "call"),
    ("c2", "2026-01-01 10:00", "web", "page_view"), ("c2", "2026-01-01 11:30", "call_center", "call"),
    ("c3", "2026-01-01 10:00", "call_center", "call"), ("c3", "2026-01-01 10:10", "call_center", "call"),
    ("c4", "2026-01-01 10:00", "web", "page_view"), ("c4", "2026-01-01 10:10", "call_center", "call"),
    ("c4", "2026-01-01 10:20", "call_center", "call"),
    ("c5", "2026-01-01 10:00", "web", "page_view"),
    ("c6", "2026-01-01 10:00", "store", "visit"), ("c6", "2026-01-01 10:05", "call_center", "call"),
    ("c6", "2026-01-01 10:10", "web", "page_view"), ("c6", "2026-01-01 10:40", "call_center", "call"),
]


@pytest.fixture(scope="module")
def six():
    con = build(ROWS, segments=[("c1", "tier", "gold"), ("c2", "tier", "gold"), ("c4", "tier", "silver")],
                contact_channels=("call_center",), contact_window=HOUR)
    yield con
    con.close()


def test_repeat_contacts_hand_counted(six):
    """The six journeys above, segment all: only (web, call_center) and (store, call_center) rows."""
    assert contacts(six) == {
        ("store", "call_center"): (1, 1, 1, 1.0, 300.0),
        ("web", "call_center"): (5, 3, 4, pytest.approx(3 / 5), 1500.0),
    }


def test_call_after_call_is_not_a_repeat_from_call_center(six):
    """No row has from_channel call_center: c3's second call follows a call, not another channel."""
    assert six.sql("select count(*) from marts.repeat_contacts where from_channel = 'call_center'").fetchall() == [(0,)]


def test_window_one_journey_at_a_time():
    """Within the window counts (c1, 30 min), outside it does not (c2, 90 min); the window is inclusive
    (exactly 1 h counts); the second of two calls counts only if it too is within the window of the touch."""
    rows = [
        ("c1", "2026-01-01 10:00", "web", "page_view"), ("c1", "2026-01-01 10:30", "call_center", "call"),
        ("c2", "2026-01-01 10:00", "web", "page_view"), ("c2", "2026-01-01 11:30", "call_center", "call"),
        ("c3", "2026-01-01 10:00", "web", "page_view"), ("c3", "2026-01-01 11:00", "call_center", "call"),
        ("c4", "2026-01-01 10:00", "web", "page_view"), ("c4", "2026-01-01 10:30", "call_center", "call"),
        ("c4", "2026-01-01 11:30", "call_center", "call"),
    ]
    per_customer = {}
    for customer in ("c1", "c2", "c3", "c4"):
        con = build([r for r in rows if r[0] == customer], contact_channels=("call_center",), contact_window=HOUR)
        per_customer[customer] = contacts(con).get(("web", "call_center"))
    assert per_customer == {
        "c1": (1, 1, 1, 1.0, 1800.0),
        "c2": None,
        "c3": (1, 1, 1, 1.0, 3600.0),
        "c4": (1, 1, 1, 1.0, 1800.0),  # the 11:30 call is 90 min after the 10:00 touch
    }


def test_two_calls_after_one_web_touch_are_two_contacts_in_one_journey():
    """web, call, call (10 and 20 min later): 2 contacts, 1 journey, share 1/1, waits 600 and 1200 -> median 900."""
    rows = [("c1", "2026-01-01 10:00", "web", "page_view"), ("c1", "2026-01-01 10:10", "call_center", "call"),
            ("c1", "2026-01-01 10:20", "call_center", "call")]
    assert contacts(build(rows, contact_window=HOUR)) == {("web", "call_center"): (1, 1, 2, 1.0, 900.0)}


def test_wider_window_counts_more():
    """With a 2 h window the six journeys gain c2's call (90 min): web journeys 4 of 5, contacts 5."""
    con = build(ROWS, contact_channels=("call_center",), contact_window=2 * HOUR)
    got = contacts(con)[("web", "call_center")]
    assert got[:4] == (5, 4, 5, pytest.approx(4 / 5))


def test_contacts_never_cross_journeys():
    """A call in a new journey (after the 30-day journey timeout) is no repeat of a web touch in the
    previous journey, however wide the window (60 days here)."""
    rows = [("c1", "2026-01-01 10:00", "web", "page_view"), ("c1", "2026-02-15 10:00", "call_center", "call")]
    con = build(rows, contact_window=60 * 86400)
    assert con.sql("select count(*) from core.journeys").fetchall() == [(2,)]
    assert contacts(con) == {}


def test_several_contact_channels():
    """contact_channels = (call_center, store): a store visit 20 min after a web touch is a repeat contact
    (web, store), and a call 5 min after a store visit one from store; email is touched but never a contact.
    c1 web, store (20 min); c2 store, call (5 min); c3 email, web (10 min) -> email and web are not contact
    channels, so nothing from c3. web touched c1, c3 = 2, store touched c1, c2 = 2."""
    rows = [("c1", "2026-01-01 10:00", "web", "page_view"), ("c1", "2026-01-01 10:20", "store", "visit"),
            ("c2", "2026-01-01 10:00", "store", "visit"), ("c2", "2026-01-01 10:05", "call_center", "call"),
            ("c3", "2026-01-01 10:00", "email", "open"), ("c3", "2026-01-01 10:10", "web", "page_view")]
    con = build(rows, contact_channels=("call_center", "store"), contact_window=HOUR)
    assert contacts(con) == {
        ("web", "store"): (2, 1, 1, 0.5, 1200.0),
        ("store", "call_center"): (2, 1, 1, 0.5, 300.0),
    }


def test_repeat_contacts_per_segment(six):
    """Segments (c1, c2 gold; c4 silver; the rest unknown), (web, call_center):
    gold touched c1, c2 = 2, contact c1: 1 journey, 1 contact, share 1/2;
    silver touched c4: 1 journey, 2 contacts, share 1; unknown touched c5, c6: c6, 1 contact, share 1/2.
    The segment rows of one key add up to all's journeys, contacts and journeys_touched."""
    assert contacts(six, ("tier", "gold")) == {("web", "call_center"): (2, 1, 1, 0.5, 1800.0)}
    assert contacts(six, ("tier", "silver")) == {("web", "call_center"): (1, 1, 2, 1.0, 900.0)}
    assert contacts(six, ("tier", "(unknown)")) == {
        ("store", "call_center"): (1, 1, 1, 1.0, 300.0),
        ("web", "call_center"): (2, 1, 1, 0.5, 1800.0),
    }
    sums = six.sql("select sum(journeys_touched), sum(journeys), sum(contacts) from marts.repeat_contacts "
                   "where segment_key = 'tier' and from_channel = 'web'").fetchall()[0]
    assert tuple(int(v) for v in sums) == (5, 3, 4)
