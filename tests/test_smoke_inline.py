from pipeline.config import StageRule
from pipeline.journeys import BuildSettings
from conftest import events_frame, marts_db, ts


def test_two_events_make_one_transition():
    """A journey awareness -> purchase gives START->awareness->purchase->CONVERTED."""
    rules = (StageRule("a", "awareness", event_type=("view",)), StageRule("p", "purchase", event_type=("buy",)))
    ev = events_frame([("c1", "2026-01-01 10:00", "web", "view"), ("c1", "2026-01-01 10:05", "web", "buy")])
    con = marts_db(ev, BuildSettings(rules=rules), ts("2026-03-01"))
    got = con.execute("select from_node, to_node, transitions, wait_p50_seconds from marts.transitions order by all").fetchall()
    assert got == [("START", "awareness", 1, None), ("awareness", "purchase", 1, 300.0), ("purchase", "CONVERTED", 1, None)]
