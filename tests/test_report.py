"""`journeys report --json` on the bundled sample, run for real in subprocesses: every number it lists
is the top by the documented rule (recomputed here from core.moves / core.journeys with Polars, not
read from marts.bottlenecks or marts.drop_offs), and every journey id it shows really is behind
that number."""

from __future__ import annotations

import json
import re
import subprocess

import duckdb
import polars as pl
import pytest

from conftest import JOURNEYS_BIN, SAMPLE, copy_config

TOP = 3
EXAMPLES = 5  # journey ids the report shows per number (pipeline.report.EXAMPLES)

pytestmark = pytest.mark.skipif(not (SAMPLE / "journeys.toml").exists(), reason="data/sample missing: run `make sample`")


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """The sample run once (`journeys run`), then `journeys report --json --top 3`; the warehouse read-only."""
    out = tmp_path_factory.mktemp("report")
    config = copy_config(SAMPLE / "journeys.toml", out)
    env = {"CI": "true", "PATH": str(JOURNEYS_BIN.parent)}
    run = subprocess.run([str(JOURNEYS_BIN), "run", "--config", str(config)], capture_output=True, text=True, env=env,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    report = subprocess.run([str(JOURNEYS_BIN), "report", "--config", str(config), "--json", "--top", str(TOP)],
                            capture_output=True, text=True, env=env, timeout=120)
    assert report.returncode == 0, report.stderr
    con = duckdb.connect(str(out / "build" / "journeys.duckdb"), read_only=True)
    moves = con.sql("select m.journey_id, m.from_node, m.to_node, m.wait_seconds, s.segment_key, s.segment_value "
                    "from core.moves as m join core.customer_segments as s using (customer_id)").pl()
    journeys = con.sql("select j.journey_id, j.status, s.segment_key, s.segment_value "
                       "from core.journeys as j join core.customer_segments as s using (customer_id)").pl()
    yield {"report": json.loads(report.stdout), "con": con, "moves": moves, "journeys": journeys, "config": config}
    con.close()


def by_segment(items: list[dict]) -> dict[tuple[str, str], list[dict]]:
    grouped: dict = {}
    for item in items:
        grouped.setdefault((item["segment_key"], item["segment_value"]), []).append(item)
    return grouped


def time_lost(moves: pl.DataFrame) -> pl.DataFrame:
    """Per segment and edge with a wait: distinct journeys x median wait (linear interpolation, as quantile_cont)."""
    return (moves.filter(pl.col("wait_seconds").is_not_null())
            .group_by("segment_key", "segment_value", "from_node", "to_node")
            .agg(journeys=pl.col("journey_id").n_unique(), median=pl.col("wait_seconds").median())
            .with_columns(time_lost=pl.col("journeys") * pl.col("median")))


def drop_offs(moves: pl.DataFrame) -> pl.DataFrame:
    """Per segment and node: dropped journeys whose last node it is (the from_node of their move to DROPPED)."""
    return (moves.filter(to_node="DROPPED").group_by("segment_key", "segment_value", node="from_node")
            .agg(drop_offs=pl.col("journey_id").n_unique(), journey_ids=pl.col("journey_id")))


def test_report_lists_every_segment(sample):
    """Every segment of the warehouse (all, and each value of each segment key) has its bottlenecks and
    drop-offs in the report, at most --top of each."""
    segments = set(sample["journeys"].select("segment_key", "segment_value").unique().iter_rows())
    assert ("all", "all") in segments and len(segments) > 3
    bottlenecks = by_segment(sample["report"]["bottlenecks"])
    drops = by_segment(sample["report"]["drop_offs"])
    assert set(bottlenecks) == segments
    assert set(drops) <= segments and ("all", "all") in drops
    assert all(len(v) <= TOP for v in [*bottlenecks.values(), *drops.values()])
    assert all([i["rank"] for i in v] == list(range(1, len(v) + 1)) for v in [*bottlenecks.values(), *drops.values()])


def test_bottlenecks_are_the_top_by_time_lost(sample):
    """Per segment, the listed edges are the --top edges by time lost = journeys x median wait, over the
    edges with a wait, recomputed from core.moves: same time_lost values in the same order, and each
    listed edge has the journeys, median and time lost recomputed for it."""
    expected = time_lost(sample["moves"])
    for (key, value), listed in by_segment(sample["report"]["bottlenecks"]).items():
        seg = expected.filter(segment_key=key, segment_value=value).sort("time_lost", descending=True)
        assert [b["time_lost_seconds"] for b in listed] == pytest.approx(seg["time_lost"].head(TOP).to_list())
        for b in listed:
            row = seg.filter(from_node=b["from_node"], to_node=b["to_node"]).row(0, named=True)
            assert (b["journeys"], b["median_wait_seconds"]) == (row["journeys"], pytest.approx(row["median"]))
            assert b["time_lost_seconds"] == pytest.approx(row["time_lost"])


def test_bottleneck_journeys_traverse_the_edge_in_the_segment(sample):
    """Every journey id shown beside a bottleneck is a journey of that segment with a move along that edge;
    as many are shown as the edge has journeys, up to 5."""
    moves = sample["moves"]
    checked = 0
    for b in sample["report"]["bottlenecks"]:
        ids = b["journey_ids"]
        assert len(ids) == len(set(ids)) == min(EXAMPLES, b["journeys"])
        walked = set(moves.filter(segment_key=b["segment_key"], segment_value=b["segment_value"],
                                  from_node=b["from_node"], to_node=b["to_node"])["journey_id"])
        assert set(ids) <= walked, b
        checked += len(ids)
    assert checked > 0


def test_drop_offs_are_the_top_by_drop_offs(sample):
    """Per segment, the listed nodes are the top by drop-offs (dropped journeys ending there, recomputed
    from core.moves; nodes without drop-offs are not listed), in order, with their drop-off counts."""
    expected = drop_offs(sample["moves"])
    for (key, value), listed in by_segment(sample["report"]["drop_offs"]).items():
        seg = expected.filter(segment_key=key, segment_value=value).sort("drop_offs", descending=True)
        assert [d["drop_offs"] for d in listed] == seg["drop_offs"].head(TOP).to_list()
        counts = dict(zip(seg["node"], seg["drop_offs"]))
        assert all(counts[d["node"]] == d["drop_offs"] > 0 for d in listed)
        assert all(d["drop_off_rate"] == pytest.approx(d["drop_offs"] / d["journeys"]) for d in listed)


def test_drop_off_journeys_are_dropped_journeys_ending_at_the_node(sample):
    """Every journey id beside a drop-off is a dropped journey of that segment whose last node is the listed
    node (its move to DROPPED leaves from it); as many are shown as there are drop-offs, up to 5."""
    moves, journeys = sample["moves"], sample["journeys"]
    checked = 0
    for d in sample["report"]["drop_offs"]:
        ids = d["journey_ids"]
        assert len(ids) == len(set(ids)) == min(EXAMPLES, d["drop_offs"])
        seg_journeys = journeys.filter(segment_key=d["segment_key"], segment_value=d["segment_value"])
        assert set(seg_journeys.filter(pl.col("journey_id").is_in(ids))["status"]) == {"dropped"}
        last_node = moves.filter(pl.col("journey_id").is_in(ids), to_node="DROPPED", segment_key=d["segment_key"],
                                 segment_value=d["segment_value"])
        assert last_node.height == len(ids) and set(last_node["from_node"]) == {d["node"]}
        checked += len(ids)
    assert checked > 0


def test_drop_off_journeys_table_is_every_dropped_journey_at_the_top_nodes(sample):
    """marts.drop_off_journeys, whole: recomputed with Polars from core.journeys (dropped ones, their
    ended_at), core.visits (the node of the last visit) and the segments, for the top-10 nodes of
    marts.drop_offs. The mart reads neither of the first two (it reads the terminal moves)."""
    con = sample["con"]
    journeys = con.sql("select j.journey_id, j.customer_id, j.ended_at, s.segment_key, s.segment_value from core.journeys as j "
                       "join core.customer_segments as s using (customer_id) where j.status = 'dropped'").pl()
    last_visit = con.sql("select journey_id, node, visit_index from core.visits").pl().sort("visit_index").group_by(
        "journey_id").agg(node=pl.col("node").last())
    top = con.sql("select level, segment_key, segment_value, rank, node from marts.drop_offs "
                  "where rank <= 10 and drop_offs > 0").pl()
    want = top.join(journeys.join(last_visit, on="journey_id"), on=["segment_key", "segment_value", "node"]).select(
        "level", "segment_key", "segment_value", "rank", "node", "journey_id", "customer_id", "ended_at")
    got = con.sql("select * from marts.drop_off_journeys").pl()
    assert got.columns == want.columns
    assert want.height > 100
    key = ["level", "segment_key", "segment_value", "rank", "journey_id"]
    assert got.sort(key).equals(want.sort(key))


KEPT = 1000  # moves or visits kept per bottleneck in marts.bottleneck_journeys (sql/marts/bottleneck_journeys.sql)


def test_bottleneck_journeys_are_the_longest_moves_and_visits(sample):
    """marts.bottleneck_journeys holds, for every top-10 bottleneck of every segment, the KEPT moves along
    the edge (or visits of the stage) with the longest waits (dwells), equal ones by journey_id: recomputed
    here with Polars from core.moves / core.visits and the segments. The sample has bottlenecks with more
    than KEPT moves, so the cut is exercised, and ones with fewer, which keep every move."""
    con = sample["con"]
    segments = con.sql("select customer_id, segment_key, segment_value from core.customer_segments").pl()
    moves = con.sql("select journey_id, customer_id, from_node, to_node, wait_seconds as seconds from core.moves "
                    "where wait_seconds is not null").pl().join(segments, on="customer_id")
    visits = (con.sql("select journey_id, customer_id, node, entered_at, left_at from core.visits").pl()
              .with_columns(seconds=(pl.col("left_at") - pl.col("entered_at")).dt.total_microseconds() / 1e6)
              .join(segments, on="customer_id"))
    tops = con.sql("select segment_key, segment_value, kind, rank, from_node, to_node from marts.bottlenecks "
                   "where rank <= 10").fetchall()
    kept = con.sql("select segment_key, segment_value, kind, rank, journey_id, customer_id, seconds "
                   "from marts.bottleneck_journeys").pl()
    cut = full = total = 0
    for key, value, kind, rank, from_node, to_node in tops:
        if kind == "edge":
            rows = moves.filter(segment_key=key, segment_value=value, from_node=from_node, to_node=to_node)
        else:
            rows = visits.filter(segment_key=key, segment_value=value, node=from_node)
        expected = (rows.sort(["seconds", "journey_id"], descending=[True, False]).head(KEPT)
                    .select("journey_id", "customer_id", "seconds").sort("journey_id", "seconds").rows())
        got = (kept.filter(segment_key=key, segment_value=value, kind=kind, rank=rank)
               .select("journey_id", "customer_id", "seconds").sort("journey_id", "seconds").rows())
        assert [(j, c) for j, c, _ in got] == [(j, c) for j, c, _ in expected], (key, value, kind, rank)
        assert [x for _, _, x in got] == pytest.approx([x for _, _, x in expected]), (key, value, kind, rank)
        cut += rows.height > KEPT
        full += 0 < rows.height <= KEPT
        total += min(KEPT, rows.height)
    assert cut > 0 and full > 0
    assert kept.height == total  # no rows beyond the top bottlenecks


def test_report_with_html_prints_the_same_findings(sample, tmp_path):
    """`journeys report --html` prints the same findings as without it, at --top, although it computes
    them once at the HTML report's 5 per segment; the page lists the top 5 of marts.bottlenecks."""
    con = sample["con"]
    page = tmp_path / "page.html"
    env = {"CI": "true", "PATH": str(JOURNEYS_BIN.parent)}
    done = subprocess.run([str(JOURNEYS_BIN), "report", "--config", str(sample["config"]), "--json", "--top", str(TOP),
                           "--html", str(page)], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == sample["report"]
    data = json.loads(re.search(r'<script type="application/json" id="report-data">(.*?)</script>',
                                page.read_text(encoding="utf-8"), re.S).group(1))
    edges = {(s["segment_key"], s["segment_value"]): [b["rank"] for b in s["bottlenecks"]] for s in data["segments"]}
    expected = {}
    for key, value, rank in con.sql("select segment_key, segment_value, rank from marts.bottlenecks "
                                    "where kind = 'edge' and rank <= 5 order by rank").fetchall():
        expected.setdefault((key, value), []).append(rank)
    assert edges == {k: v for k, v in expected.items() if k in edges} and max(map(len, edges.values())) > TOP


@pytest.mark.parametrize("top", [1, 2, 3, 4])
def test_trimmed_findings_equal_the_findings_at_that_top(sample, top):
    """trim_findings(summarize(top=5), n) is summarize(top=n): the same items, ranks and example journeys."""
    from pipeline.report import summarize, trim_findings

    con = sample["con"]
    assert trim_findings(summarize(con, top=5), top) == summarize(con, top=top)


def test_write_report_does_not_compute_findings_it_is_given(sample, tmp_path, monkeypatch):
    """write_report(findings=...) shows the findings it is given instead of computing them again."""
    from pipeline import html_report
    from pipeline.report import summarize

    found = summarize(sample["con"], top=5)

    def again(*args, **kwargs):
        raise AssertionError("findings computed again")

    monkeypatch.setattr(html_report, "summarize", again)
    page = html_report.write_report(sample["con"], tmp_path / "r.html", top=5, findings=found).read_text(encoding="utf-8")
    first = found["bottlenecks"][0]
    assert first["journey_ids"][0] in page
