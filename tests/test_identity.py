"""Identity resolution (pipeline/identity.py, docs/identity.md): one customer across channels.

Checked against the sample generator's ground truth (who is who), against a plain-Python
union-find reference on random graphs, for independence from row order and batches, and
end to end with the CLI: a login that arrives in a later batch re-attributes the earlier
anonymous events, and the incremental result equals a full run."""

from __future__ import annotations

import json
import re
import subprocess
import types
from collections import Counter
from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from identity_reference import resolve as reference_resolve

from conftest import JOURNEYS_BIN, SAMPLE, copy_config
from pipeline import identity, warehouse
from pipeline.config import ConfigError, load_config

TRUTH = json.loads((SAMPLE / "ground_truth.json").read_text())["identity"]


# --------------------------------------------------------------------------- the sample against its ground truth


@pytest.fixture(scope="module")
def sample_db(tmp_path_factory) -> duckdb.DuckDBPyConnection:
    out = tmp_path_factory.mktemp("identity-sample")
    config = copy_config(SAMPLE / "journeys.toml", out)
    proc = subprocess.run([str(JOURNEYS_BIN), "run", "-c", str(config)], capture_output=True, text=True, env={"CI": "true"})
    assert proc.returncode == 0, proc.stderr
    con = duckdb.connect(str(out / "build" / "journeys.duckdb"), read_only=True)
    yield con
    con.close()


def true_owner() -> dict[tuple[str, str], str]:
    """Each identifier of the ground truth -> the person it belongs to; a shared identifier belongs to
    nobody but itself."""
    owner = {}
    for person in TRUTH["people"]:
        owner[(TRUTH["customer_type"], person["customer_id"])] = person["customer_id"]
        for kind, values in person["identifiers"].items():
            for value in values:
                owner[(kind, value)] = person["customer_id"]
    for cookie in TRUTH["visitors"]:
        owner[("cookie", cookie)] = f"visitor {cookie}"
    for shared in TRUTH["shared"]:
        owner[(shared["type"], shared["value"])] = f"shared {shared['value']}"
    return owner


def pair_scores(pairs: list[tuple[str, str]]) -> tuple[float, float]:
    """Pairwise precision and recall of a clustering: `pairs` are (predicted cluster, true cluster) per item."""
    both = sum(n * (n - 1) // 2 for n in Counter(pairs).values())
    predicted = sum(n * (n - 1) // 2 for n in Counter(p for p, _ in pairs).values())
    true = sum(n * (n - 1) // 2 for n in Counter(t for _, t in pairs).values())
    return both / predicted, both / true


def test_every_planted_identity_resolves_to_its_true_customer(sample_db):
    """Over every identifier in core.identities (each must be in the ground truth), the clustering by
    customer_id has pairwise precision and recall 1.0 against who is who; the same over events, each
    event's true person being the owner of its customer id, else of its identifiers."""
    owner = true_owner()
    rows = sample_db.execute("select identifier_type, identifier, customer_id from core.identities").fetchall()
    assert {(t, v) for t, v, _ in rows} <= owner.keys()
    precision, recall = pair_scores([(c, owner[(t, v)]) for t, v, c in rows])
    assert (precision, recall) == (1.0, 1.0)
    events = sample_db.execute("select customer_id, identifiers from staging.events").fetchall()
    shared = {(s["type"], s["value"]) for s in TRUTH["shared"]}
    pairs = []
    for customer, ids in events:
        mine = [owner[n] for n in ids.items() if n not in shared]
        assert len(set(mine)) == 1, ids
        pairs.append((customer, mine[0]))
    assert pair_scores(pairs) == (1.0, 1.0)
    # and every known customer keeps its own id
    assert all(c == t for c, t in pairs if not t.startswith("visitor"))


def test_planted_cases_are_stitched(sample_db):
    """Anonymous hits before a login, phone-only calls and card-only receipts belong to their customer."""
    got = dict(((t, v), c) for t, v, c in sample_db.execute(
        "select identifier_type, identifier, customer_id from core.identities").fetchall())
    assert TRUTH["anonymous_until_login"] and TRUTH["phone_only_calls"] and TRUTH["card_only_receipts"]
    for case in TRUTH["anonymous_until_login"]:
        assert got[("cookie", case["cookie"])] == case["customer_id"]
    for case in TRUTH["phone_only_calls"]:
        assert got[("phone", case["phone"])] == case["customer_id"]
    for case in TRUTH["card_only_receipts"]:
        assert got[("card", case["card"])] == case["customer_id"]
    anonymous_hits = sum(c["anonymous_hits"] for c in TRUTH["anonymous_until_login"])
    stitched = sample_db.execute(
        "select count(*) from staging.events where not map_contains(identifiers, 'customer') and customer_id like 'C%'"
    ).fetchall()[0][0]
    assert stitched >= anonymous_hits + sum(c["calls"] for c in TRUTH["phone_only_calls"])


def test_shared_device_is_a_conflict_and_not_merged(sample_db):
    """The planted shared cookie (and every phone two customers share) is in staging.identity_conflicts with
    the customers it would join and its evidence; those customers stay apart, each with its own events."""
    conflicts = {(t, v): (reason, customers, rows, evidence) for t, v, reason, customers, rows, evidence in sample_db.execute(
        "select identifier_type, identifier, reason, customer_ids, rows, evidence from staging.identity_conflicts").fetchall()}
    assert conflicts.keys() == {(s["type"], s["value"]) for s in TRUTH["shared"]}
    planted = next(s for s in TRUTH["shared"] if s["planted"])
    reason, customers, rows, evidence = conflicts[(planted["type"], planted["value"])]
    assert reason == "shared_identifier" and customers == sorted(planted["customer_ids"])
    assert rows > 0 and evidence and all(e.startswith("web:") for e in evidence)
    a, b = planted["customer_ids"]
    on_device = sample_db.execute(
        "select distinct customer_id from staging.events where identifiers['cookie'] = ?", [planted["value"]]).fetchall()
    assert sorted(c for (c,) in on_device) == sorted([a, b])
    status = sample_db.execute("select status, customer_id from core.identities where identifier = ?", [planted["value"]]).fetchall()
    assert status == [("shared", planted["value"])]


def test_run_counts_anonymous_stitched_and_conflicts(sample_db):
    """meta.runs records the resolution's counts for the run."""
    counts = json.loads(sample_db.execute("select counts from meta.runs order by started_at desc limit 1").fetchall()[0][0])
    got = counts["ingest"]["identity"]
    visitors_events = sample_db.execute(
        "select count(*) from staging.events where customer_id like 'ck-%'").fetchall()[0][0]
    assert got["anonymous_events"] == visitors_events > 0
    assert got["conflicts"] == len(TRUTH["shared"])
    assert got["stitched_events"] > 0 and got["identity_map_rows"] == len(TRUTH["people"])


def test_anonymous_exclude_leaves_the_anonymous_customers_out_and_counts_them(sample_db, tmp_path):
    """[identity] anonymous = "exclude": the customers of the ground truth keep exactly the journeys they
    have in the default run, nobody else has any, and the events left out are counted (equal to the
    default run's events of customers the ground truth does not know) and stay in staging.events."""
    out = tmp_path / "exclude"
    out.mkdir()
    config = copy_config(SAMPLE / "journeys.toml", out)
    config.write_text(config.read_text().replace("[identity]\n", '[identity]\nanonymous = "exclude"\n', 1))
    proc = subprocess.run([str(JOURNEYS_BIN), "run", "-c", str(config)], capture_output=True, text=True, env={"CI": "true"})
    assert proc.returncode == 0, proc.stderr
    people = sorted(p["customer_id"] for p in TRUTH["people"])
    kept = sample_db.execute("select * from core.journeys where list_contains(?, customer_id) order by journey_id",
                             [people]).fetchall()
    others = sample_db.execute("select count(*) from staging.events where not list_contains(?, customer_id)",
                               [people]).fetchall()[0][0]
    con = duckdb.connect(str(out / "build" / "journeys.duckdb"), read_only=True)
    try:
        assert con.execute("select * from core.journeys order by journey_id").fetchall() == kept
        assert con.execute("select count(*) from staging.events").fetchall()[0][0] == \
            sample_db.execute("select count(*) from staging.events").fetchall()[0][0]
        counts = json.loads(con.execute("select counts from meta.runs order by started_at desc limit 1").fetchall()[0][0])
    finally:
        con.close()
    assert counts["build"]["anonymous_events_left_out"] == others > 0
    assert counts["ingest"]["identity"]["anonymous_events"] == others
    assert re.search(rf"{others} anonymous events left out of the journeys", proc.stdout)


# --------------------------------------------------------------------------- against the reference, on random graphs


def resolve_sql(rows: list[dict[str, str]], batches: list[int] | None = None, exclusive=None) -> tuple[list[str], dict]:
    """Resolve `rows` (identifier maps) as events e0, e1, ... with pipeline.identity; with `batches`, the rows
    arrive in batches of those sizes, resolving after each (like incremental runs)."""
    con = warehouse.connect(":memory:")
    config = types.SimpleNamespace(customer_type="customer", exclusive_types=exclusive)
    sizes = batches or [len(rows)]
    start = 0
    for size in sizes:
        for i in range(start, start + size):
            con.execute(
                "insert into staging.events (event_id, customer_id, identifiers, ts, channel, event_type, source) "
                "values (?, ?, ?, timestamptz '2026-01-01 00:00:00+00' + to_seconds(?), 'web', 'view', 'test')",
                [f"e{i}", next(iter(rows[i].values())), rows[i], i],
            )
        start += size
        identity.resolve(con, config)
    events = dict(con.execute("select event_id, customer_id from staging.events").fetchall())
    nodes = {(t, v): c for t, v, c in con.execute("select identifier_type, identifier, customer_id from core.identities").fetchall()}
    con.close()
    return [events[f"e{i}"] for i in range(len(rows))], nodes


identifier_rows = st.lists(
    st.dictionaries(st.sampled_from(["customer", "cookie", "phone", "card"]), st.sampled_from(["1", "2", "3", "4", "5", "C1"]),
                    min_size=1, max_size=3),
    min_size=1, max_size=14,
)


@settings(max_examples=60, deadline=None)
@given(rows=identifier_rows, exclusive=st.sampled_from([None, ("cookie",), ()]))
def test_sql_resolution_equals_the_union_find_reference(rows, exclusive):
    """On random small graphs (values shared across types, so collisions and conflicts are frequent),
    every event and identifier gets the customer the plain-Python union-find reference gives."""
    events, nodes = resolve_sql(rows, exclusive=exclusive)
    want_events, want_nodes, _ = reference_resolve(rows, "customer", exclusive)
    assert events == want_events
    assert nodes == want_nodes


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=identifier_rows, data=st.data())
def test_resolution_does_not_depend_on_row_order_or_batches(rows, data):
    """Shuffling the rows and cutting them into batches (resolving after each) gives every row the same
    customer and every identifier the same customer as one resolution of all rows."""
    events, nodes = resolve_sql(rows)
    order = data.draw(st.permutations(range(len(rows))), label="order")
    cuts = sorted(data.draw(st.lists(st.integers(0, len(rows)), max_size=3), label="cuts"))
    sizes = [b - a for a, b in zip([0, *cuts], [*cuts, len(rows)])]
    shuffled, shuffled_nodes = resolve_sql([rows[i] for i in order], batches=sizes)
    assert [shuffled[order.index(i)] for i in range(len(rows))] == events
    assert shuffled_nodes == nodes


def test_a_long_chain_converges():
    """A chain of 6000 links (cookie k with phone k, phone k with cookie k+1) is one customer: propagation
    with pointer jumping converges in a few dozen rounds, not thousands."""
    rows = [r for i in range(3000) for r in ({"cookie": f"k{i:05d}", "phone": f"p{i:05d}"},
                                             {"phone": f"p{i:05d}", "cookie": f"k{i + 1:05d}"})]
    rows.append({"customer": "C9", "cookie": "k01500"})
    con = warehouse.connect(":memory:")
    for i, r in enumerate(rows):
        con.execute("insert into staging.events (event_id, customer_id, identifiers, ts, channel, event_type, source) "
                    "values (?, 'x', ?, now(), 'web', 'v', 't')", [f"e{i}", r])
    counts = identity.resolve(con, types.SimpleNamespace(customer_type="customer", exclusive_types=None))
    assert con.execute("select distinct customer_id from staging.events").fetchall() == [("C9",)]
    assert counts["iterations"] < 40


# --------------------------------------------------------------------------- a login in a later batch, with the CLI


WEB_HEADER = "hit_id,user_id,cookie_id,event,ts"
BATCH_1 = [  # C1 browses anonymously on ck-1 in two sessions; C2 is logged in
    "h1,,ck-1,page_view,2026-03-01T10:00:00Z",
    "h2,,ck-1,product_view,2026-03-01T10:05:00Z",
    "h3,,ck-1,page_view,2026-03-03T18:00:00Z",
    "h4,C2,ck-2,page_view,2026-03-02T09:00:00Z",
    "h5,C2,ck-2,purchase,2026-03-02T09:10:00Z",
]
BATCH_2 = [  # later: C1 logs in on ck-1 and buys
    "h6,C1,ck-1,account_login,2026-03-04T08:00:00Z",
    "h7,C1,ck-1,purchase,2026-03-04T08:03:00Z",
]
CONFIG = """
[output]
warehouse = "{out}/journeys.duckdb"
export_dir = "{out}/export"
graph_dir = "{out}/graph"
report = "{out}/report.html"

[[sources]]
name = "web"
path = "web/*.csv"
format = "csv"
channel = "web"
event_id = "hit_id"
customer_id = ["user_id", "cookie_id"]
event_type = "event"
timestamp = {{ column = "ts", format = "iso" }}
identifiers = {{ customer = "user_id", cookie = "cookie_id" }}

[journeys]
timeout = "30d"

[[stages.rules]]
stage = "purchase"
event_type = ["purchase"]

[[stages.rules]]
stage = "awareness"
"""


def run_cli(config: Path, *args: str) -> None:
    proc = subprocess.run([str(JOURNEYS_BIN), "run", "-c", str(config), *args], capture_output=True, text=True,
                          env={"CI": "true"})
    assert proc.returncode == 0, proc.stderr


def journeys_of(db: Path) -> dict[str, list]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return {
            "events": sorted(con.execute("select event_id, customer_id from staging.events").fetchall()),
            "steps": sorted(con.execute("select event_id, customer_id, journey_id, session_id, step_index, stage from core.steps").fetchall()),
            "journeys": sorted(con.execute("select * from core.journeys").fetchall()),
            "identities": sorted(con.execute("select * exclude (first_seen_at, last_seen_at) from core.identities").fetchall()),
        }
    finally:
        con.close()


def test_a_later_login_brings_the_anonymous_events_into_the_customers_journey(tmp_path):
    """Batch 1: three anonymous hits on ck-1 are the customer ck-1. Batch 2 (an incremental run) brings
    C1's login on ck-1: the three earlier hits now belong to C1 and sit in C1's one converted journey, and
    the whole warehouse equals a full run on all the data."""
    landing = tmp_path / "landing"
    (landing / "web").mkdir(parents=True)
    (landing / "web" / "day1.csv").write_text("\n".join([WEB_HEADER, *BATCH_1]) + "\n")
    config = landing / "journeys.toml"
    config.write_text(CONFIG.format(out=tmp_path / "inc"))
    run_cli(config)
    first = journeys_of(tmp_path / "inc" / "journeys.duckdb")
    assert {e: c for e, c in first["events"] if e in ("web:h1", "web:h2", "web:h3")} == dict.fromkeys(("web:h1", "web:h2", "web:h3"), "ck-1")

    (landing / "web" / "day2.csv").write_text("\n".join([WEB_HEADER, *BATCH_2]) + "\n")
    run_cli(config)
    after = journeys_of(tmp_path / "inc" / "journeys.duckdb")
    owners = dict(after["events"])
    assert all(owners[f"web:h{i}"] == "C1" for i in (1, 2, 3, 6, 7))
    c1_journeys = [j for j in after["journeys"] if j[1] == "C1"]
    assert len(c1_journeys) == 1 and c1_journeys[0][4] == "converted"
    assert {s[0] for s in after["steps"] if s[2] == c1_journeys[0][0]} == {f"web:h{i}" for i in (1, 2, 3, 6, 7)}
    assert not [j for j in after["journeys"] if j[1] == "ck-1"]  # the anonymous journey is gone

    full_config = landing / "full.toml"
    full_config.write_text(CONFIG.format(out=tmp_path / "full"))
    run_cli(full_config, "--full-refresh")
    assert after == journeys_of(tmp_path / "full" / "journeys.duckdb")


def test_a_later_login_with_anonymous_excluded_builds_the_earlier_events_then(tmp_path):
    """With [identity] anonymous = "exclude", batch 1's anonymous hits on ck-1 are left out (no journey of
    ck-1, counted); batch 2's login makes ck-1 C1's, and the incremental run builds C1's journey with the
    three earlier hits in it, equal to a full run on all the data."""
    landing = tmp_path / "landing"
    (landing / "web").mkdir(parents=True)
    (landing / "web" / "day1.csv").write_text("\n".join([WEB_HEADER, *BATCH_1]) + "\n")
    exclude = '\n[identity]\nanonymous = "exclude"\n'
    config = landing / "journeys.toml"
    config.write_text(CONFIG.format(out=tmp_path / "inc") + exclude)
    run_cli(config)
    first = journeys_of(tmp_path / "inc" / "journeys.duckdb")
    assert not [j for j in first["journeys"] if j[1] == "ck-1"]
    assert {s[0] for s in first["steps"]}.isdisjoint({"web:h1", "web:h2", "web:h3"})

    (landing / "web" / "day2.csv").write_text("\n".join([WEB_HEADER, *BATCH_2]) + "\n")
    run_cli(config)
    after = journeys_of(tmp_path / "inc" / "journeys.duckdb")
    c1_journeys = [j for j in after["journeys"] if j[1] == "C1"]
    assert len(c1_journeys) == 1 and c1_journeys[0][4] == "converted"
    assert {s[0] for s in after["steps"] if s[2] == c1_journeys[0][0]} == {f"web:h{i}" for i in (1, 2, 3, 6, 7)}

    full_config = landing / "full.toml"
    full_config.write_text(CONFIG.format(out=tmp_path / "full") + exclude)
    run_cli(full_config, "--full-refresh")
    assert after == journeys_of(tmp_path / "full" / "journeys.duckdb")


def test_pseudonymized_resolution_has_the_same_customers(tmp_path, monkeypatch):
    """Resolution runs after pseudonymization: pseudonyms keep every equality, so the events are grouped
    into the same customers, and a known customer's id is its pseudonym."""
    from pipeline.privacy import pseudonym

    landing = tmp_path / "landing"
    (landing / "web").mkdir(parents=True)
    (landing / "web" / "all.csv").write_text("\n".join([WEB_HEADER, *BATCH_1, *BATCH_2]) + "\n")
    plain, hidden = landing / "plain.toml", landing / "hidden.toml"
    plain.write_text(CONFIG.format(out=tmp_path / "plain"))
    hidden.write_text(CONFIG.format(out=tmp_path / "hidden") + '\n[privacy]\npseudonymize = true\n')
    key = "k" * 32
    monkeypatch.setenv("JOURNEYS_PSEUDONYM_KEY", key)
    run_cli(plain)
    proc = subprocess.run([str(JOURNEYS_BIN), "run", "-c", str(hidden)], capture_output=True, text=True,
                          env={"CI": "true", "JOURNEYS_PSEUDONYM_KEY": key})
    assert proc.returncode == 0, proc.stderr
    a = dict(journeys_of(tmp_path / "plain" / "journeys.duckdb")["events"])
    b = dict(journeys_of(tmp_path / "hidden" / "journeys.duckdb")["events"])
    assert b == {e: pseudonym(key, c) for e, c in a.items()}


# --------------------------------------------------------------------------- config


def test_identity_config_errors_name_the_key_and_fix(tmp_path):
    base = (SAMPLE / "journeys.toml").read_text().replace('path = "', f'path = "{SAMPLE.as_posix()}/')
    cases = {
        'exclusive_types = ["cookie", "handle", "phone", "card", "email"]': ('exclusive_types = ["customer"]', "identity.exclusive_types"),
        'name = "crm"': ('name = "crm"\nformat = "xml"', "identity.maps[0].format"),
        'customer_type = "customer"': ('customer_type = "customer"\nanonymous = "drop"', "identity.anonymous"),
        'path = "' + SAMPLE.as_posix() + '/crm/crm_export.csv"': ('path = "nowhere.csv"', "identity.maps[0].path"),
    }
    for old, (new, key) in cases.items():
        assert old in base, old
        path = tmp_path / "bad.toml"
        path.write_text(base.replace(old, new))
        with pytest.raises(ConfigError, match=rf"line \d+: key {re.escape(repr(key))}.*Fix: "):
            load_config(path)
