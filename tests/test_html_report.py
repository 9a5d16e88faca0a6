"""The standalone HTML report (pipeline/html_report.py) on the bundled sample, built by the real
CLI: it loads nothing from the network, its numbers are the warehouse's (recomputed here with
duckdb from marts.transitions and core.*, not read back from the report's own queries), and in a
headless Chromium its Sankey renders with those numbers and the segment picker switches them."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import duckdb
import polars as pl
import pytest

from conftest import JOURNEYS_BIN, SAMPLE, copy_config, events_frame, marts_db, ts
from pipeline.config import StageRule
from pipeline.html_report import write_report
from pipeline.journeys import BuildSettings

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
TERMINALS = ("CONVERTED", "DROPPED", "OPEN")
OTHER_SEGMENT = "acquisition_channel=social"

pytestmark = pytest.mark.skipif(not (SAMPLE / "journeys.toml").exists(), reason="data/sample missing: run `make sample`")


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """The sample run once by the real CLI (`journeys run`), then write_report on its warehouse."""
    out = tmp_path_factory.mktemp("html_report")
    config = copy_config(SAMPLE / "journeys.toml", out)
    env = {"CI": "true", "PATH": str(JOURNEYS_BIN.parent)}
    run = subprocess.run([str(JOURNEYS_BIN), "run", "--config", str(config)], capture_output=True, text=True, env=env,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    con = duckdb.connect(str(out / "build" / "journeys.duckdb"), read_only=True)
    path = write_report(con, out / "report" / "report.html")
    yield {"con": con, "path": path, "html": path.read_text(encoding="utf-8")}
    con.close()


# --- reading the page ----------------------------------------------------------------------------

URL_ATTRIBUTES = {"src", "href", "srcset", "data", "poster", "action", "formaction", "background", "xlink:href",
                  "manifest", "ping", "codebase", "archive", "longdesc"}
REMOTE = re.compile(r"^\s*(?:[a-z][a-z0-9+.-]*:)?//", re.I)  # http://, https://, ws://, protocol-relative //
CSS_REMOTE = re.compile(r"(?:@import\s*(?:url\()?|url\()\s*['\"]?\s*(?:[a-z][a-z0-9+.-]*:)?//", re.I)


class Resources(HTMLParser):
    """What the page would load: URL attributes of every element, and the CSS of <style> elements and
    style attributes (where @import and url() load). Script text is code, not a resource: skipped."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.urls: list[tuple[str, str, str]] = []
        self.css: list[str] = []
        self.scripts: list[dict[str, str | None]] = []
        self._style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in URL_ATTRIBUTES and value:
                self.urls.append((tag, name, value))
            if name == "style" and value:
                self.css.append(value)
        if tag == "meta" and any(n == "http-equiv" and (v or "").lower() == "refresh" for n, v in attrs):
            self.urls.append((tag, "content", dict(attrs).get("content") or ""))
        if tag == "script":
            self.scripts.append(dict(attrs))
        self._style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self._style = False

    def handle_data(self, data: str) -> None:
        if self._style:
            self.css.append(data)


def resources(page: str) -> Resources:
    parser = Resources()
    parser.feed(page)
    parser.close()
    return parser


def report_data(page: str) -> dict:
    found = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.S)
    assert found, "no report-data script"
    return json.loads(found.group(1))


def segment_block(page: str, segment: str) -> str:
    """The HTML of one segment's block (blocks are consecutive, each a top-level div)."""
    start = page.index(f'data-segment="{segment}" data-journeys=')
    end = page.find('<div class="segment-block"', start)
    return page[start:end if end > 0 else len(page)]


# --- the warehouse, independently ----------------------------------------------------------------


def sankey_expected(con: duckdb.DuckDBPyConnection, segment: str) -> dict[str, dict[str, int]]:
    """Per node of the segment's graph: moves in and out along edges between different nodes."""
    key, value = segment.split("=", 1)
    rows = con.execute(
        """
        with edges as (
            select from_node, to_node, transitions from marts.transitions
            where segment_key = ? and segment_value = ? and from_node <> to_node
              and level = (select value from meta.settings where key = 'level')
        ),
        nodes as (select from_node as node from edges union select to_node from edges)
        select n.node,
               coalesce((select sum(transitions) from edges where to_node = n.node), 0) as moves_in,
               coalesce((select sum(transitions) from edges where from_node = n.node), 0) as moves_out
        from nodes as n
        """,
        [key, value],
    ).fetchall()
    return {node: {"in": int(i), "out": int(o)} for node, i, o in rows}


def journeys_by_status(con: duckdb.DuckDBPyConnection, segment: str) -> dict[str, int]:
    """From core.journeys (not the marts): the segment's journeys by status, and all of them."""
    key, value = segment.split("=", 1)
    rows = con.execute(
        "select j.status, count(*) from core.journeys as j join core.customer_segments as s using (customer_id) "
        "where s.segment_key = ? and s.segment_value = ? group by j.status",
        [key, value],
    ).fetchall()
    counts = {status: n for status, n in rows}
    counts["all"] = sum(counts.values())
    return counts


def check_sankey(con: duckdb.DuckDBPyConnection, segment: str, shown: dict[str, int]) -> None:
    """`shown`: node -> its total as the page has it (plotly's node value = the larger of in and out)."""
    expected = sankey_expected(con, segment)
    assert set(shown) == set(expected), segment
    for node, moves in expected.items():
        assert shown[node] == max(moves["in"], moves["out"]), (segment, node)
        if node not in ("START", *TERMINALS):
            assert moves["in"] == moves["out"], (segment, node)  # flow balance, self-loops left out
    status = journeys_by_status(con, segment)
    assert shown["START"] == status["all"]
    for terminal in TERMINALS:
        assert shown.get(terminal, 0) == status.get(terminal.lower(), 0), (segment, terminal)


# --- without a browser ---------------------------------------------------------------------------


def test_page_loads_nothing_from_the_network(sample):
    """No element, stylesheet or refresh loads an http(s) or protocol-relative URL: plotly is inlined
    (no <script src>), the favicon is a data: URL; only plotly's code mentions URLs, as strings."""
    found = resources(sample["html"])
    remote = [u for u in found.urls if REMOTE.match(u[2]) or re.search(r"url\s*=\s*(?:[a-z]+:)?//", u[2], re.I)]
    assert remote == []
    assert [css for css in found.css if CSS_REMOTE.search(css)] == []
    assert all("src" not in s for s in found.scripts)
    assert any(s.get("id") == "report-data" for s in found.scripts)
    assert sample["html"].count("Plotly.newPlot") >= 1 and "plotly.js v" in sample["html"]
    assert sample["path"].stat().st_size > 1_000_000  # the plotly bundle is in the file


def test_the_offline_check_catches_a_remote_resource():
    """The resource scan above would see a CDN script, a stylesheet link, a web font and a CSS url()."""
    page = ('<html><head><script src="https://cdn.plot.ly/plotly.min.js"></script>'
            '<link rel="stylesheet" href="//fonts.example.com/x.css"><style>@import url("https://f.example/a.css");'
            ' body { background: url(http://x.example/b.png) }</style></head>'
            '<body><script>var s = "<img src=\\"https://in.code/ok.png\\">";</script></body></html>')
    found = resources(page)
    assert [u[2] for u in found.urls if REMOTE.match(u[2])] == ["https://cdn.plot.ly/plotly.min.js",
                                                                 "//fonts.example.com/x.css"]
    assert len([css for css in found.css if CSS_REMOTE.search(css)]) == 1
    assert len(CSS_REMOTE.findall(found.css[0])) == 2


def test_picker_lists_all_then_every_segment(sample):
    """The picker offers all=all, then every segment of marts.segment_summary, and each has one block."""
    con, page = sample["con"], sample["html"]
    picker = re.search(r'<select id="segment-picker"[^>]*>(.*?)</select>', page, re.S)
    assert picker
    options = re.findall(r'<option value="([^"]*)"', picker.group(1))
    segments = con.execute(
        "select segment_key || '=' || segment_value from marts.segment_summary "
        "order by segment_key <> 'all', segment_key, segment_value"
    ).fetchall()
    assert options[0] == "all=all"
    assert options == [s for (s,) in segments]
    assert OTHER_SEGMENT in options
    blocks = re.findall(r'<div class="segment-block" id="[^"]+" data-segment="([^"]*)"', page)
    assert blocks == options
    assert page.count('data-segment="all=all" data-journeys=') == 1


def test_embedded_numbers_are_the_warehouse_numbers(sample):
    """For every segment, the Sankey's node totals and the journeys by status in report-data are those
    recomputed from marts.transitions and core.journeys."""
    con = sample["con"]
    data = report_data(sample["html"])
    assert len(data["segments"]) == con.execute("select count(*) from marts.segment_summary").fetchall()[0][0]
    for seg in data["segments"]:
        nodes = {n["node"]: n for n in seg["sankey"]["nodes"]}
        check_sankey(con, seg["segment"], {name: max(n["in"], n["out"]) for name, n in nodes.items()})
        status = journeys_by_status(con, seg["segment"])
        assert (seg["journeys"], seg["converted"], seg["dropped"], seg["open"]) == (
            status["all"], status.get("converted", 0), status.get("dropped", 0), status.get("open", 0))
        loops = dict(con.execute(
            "select from_node, transitions from marts.transitions where segment_key = ? and segment_value = ? "
            "and from_node = to_node", [seg["segment_key"], seg["segment_value"]]).fetchall())
        for name, node in nodes.items():
            assert node["repeats"] == loops.get(name, 0)
            assert node["label"] == (f"{name} ↻{loops[name]:,}" if name in loops else name)


def test_journey_map_adds_up_to_the_stage_marts(sample):
    """Journey map cells (stage x channel), summed over channels, give marts.drop_offs' drop-offs per stage;
    its stage totals are marts.stage_stats' journeys reaching the stage (graph level stage); each cell's
    journeys are the distinct journeys with an event at that stage on that channel."""
    con = sample["con"]
    assert con.execute("select value from meta.settings where key = 'level'").fetchall() == [("stage",)]
    stats = con.sql("select segment_key || '=' || segment_value as segment, node, journeys, drop_offs from marts.stage_stats").pl()
    cells = (con.sql("select s.segment_key || '=' || s.segment_value as segment, p.stage, p.channel, "
                     "count(distinct p.journey_id) as journeys from core.steps as p "
                     "join core.customer_segments as s using (customer_id) group by all").pl())
    for seg in report_data(sample["html"])["segments"]:
        shown = pl.DataFrame(seg["journey_map"]["cells"])
        per_stage = shown.filter(pl.col("channel").is_null())
        per_cell = shown.filter(pl.col("channel").is_not_null())
        mine = stats.filter(pl.col("segment") == seg["segment"])
        assert dict(zip(per_stage["stage"], per_stage["journeys"])) == dict(zip(mine["node"], mine["journeys"]))
        drops = per_cell.group_by("stage").agg(pl.col("drop_offs").sum())
        assert dict(zip(drops["stage"], drops["drop_offs"])) == dict(zip(mine["node"], mine["drop_offs"]))
        expected = cells.filter(pl.col("segment") == seg["segment"])
        assert sorted(zip(per_cell["stage"], per_cell["channel"], per_cell["journeys"])) == sorted(
            zip(expected["stage"], expected["channel"], expected["journeys"]))
        assert seg["journey_map"]["stages"][:6] == ["awareness", "consideration", "purchase", "retention", "loyalty",
                                                    "advocacy"]


def journey_map_recount(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """The journey map recomputed in Polars from core.steps, core.journeys and core.customer_segments:
    per segment, stage and channel (and per segment and stage, channel null) the distinct journeys,
    the median wait before entering the stage (previous event at another stage -> this one) and the
    drop-offs (last event of a dropped journey)."""
    steps = (con.sql("select journey_id, customer_id, step_index, ts, stage, channel from core.steps").pl()
             .sort("journey_id", "step_index")
             .with_columns(previous_stage=pl.col("stage").shift(1).over("journey_id"),
                           previous_ts=pl.col("ts").shift(1).over("journey_id"),
                           last=pl.col("step_index") == pl.col("step_index").max().over("journey_id")))
    status = con.sql("select journey_id, status from core.journeys").pl()
    steps = steps.join(status, on="journey_id").with_columns(
        wait=pl.when(pl.col("previous_stage").is_not_null() & (pl.col("stage") != pl.col("previous_stage")))
        .then((pl.col("ts") - pl.col("previous_ts")).dt.total_microseconds() / 1e6),
        drop=pl.col("last") & (pl.col("status") == "dropped"))
    segments = con.sql("select customer_id, segment_key || '=' || segment_value as segment from core.customer_segments").pl()
    steps = steps.join(segments, on="customer_id")
    agg = [pl.col("journey_id").n_unique().alias("journeys"), pl.col("wait").median().alias("wait_p50_seconds"),
           pl.col("drop").sum().alias("drop_offs")]
    per_cell = steps.group_by("segment", "stage", "channel").agg(agg)
    per_stage = steps.group_by("segment", "stage").agg(agg).with_columns(channel=pl.lit(None, pl.String))
    return pl.concat([per_cell, per_stage.select(per_cell.columns)])


def test_journey_map_cells_equal_a_polars_recount(sample):
    """Every cell of every segment's journey map (journeys, median wait before entering, drop-offs),
    and every stage total, equals the Polars recount; the report's scratch file is gone after."""
    expected = {(r["segment"], r["stage"], r["channel"]): r for r in journey_map_recount(sample["con"]).iter_rows(named=True)}
    shown = {}
    for seg in report_data(sample["html"])["segments"]:
        for c in seg["journey_map"]["cells"]:
            shown[(seg["segment"], c["stage"], c["channel"])] = c
    assert set(shown) == set(expected)
    assert sum(1 for r in expected.values() if r["wait_p50_seconds"] is not None) > 20
    for key, c in shown.items():
        e = expected[key]
        assert (c["journeys"], c["drop_offs"]) == (e["journeys"], e["drop_offs"]), key
        if e["wait_p50_seconds"] is None:
            assert c["wait_p50_seconds"] is None, key
        else:
            assert c["wait_p50_seconds"] == pytest.approx(e["wait_p50_seconds"], rel=1e-9, abs=1e-6), key
    assert sorted(p.name for p in sample["path"].parent.iterdir()) == ["report.html"]


def test_the_journey_map_holds_no_unspillable_aggregate_state():
    """The journey map query uses no aggregate whose state DuckDB keeps in memory whole (distinct
    counts, quantile_cont/median, string or list aggregation): at 100M events those ran out of the
    report's memory budget (docs/scaling.md)."""
    from pipeline.warehouse import sql_dir

    query = (sql_dir() / "report" / "journey_map.sql").read_text()
    code = "\n".join(line.split("--")[0] for line in query.splitlines())
    assert "exact_quantiles(" in code
    assert not re.search(r"count\s*\(\s*distinct|quantile_(?:cont|disc)|\bmedian\s*\(|string_agg|\blist\s*\(|array_agg",
                         code, re.I)


def test_bottlenecks_and_drop_offs_are_the_top_ranks_with_their_journeys(sample):
    """Each segment lists marts.bottlenecks' top 5 edges and marts.drop_offs' top drop-off nodes, and
    every journey id shown beside a number is one of the journeys behind it."""
    con = sample["con"]
    for seg in report_data(sample["html"])["segments"]:
        key, value = seg["segment_key"], seg["segment_value"]
        edges = con.execute("select rank, from_node, to_node, journeys from marts.bottlenecks where segment_key = ? "
                            "and segment_value = ? and kind = 'edge' and rank <= 5 order by rank", [key, value]).fetchall()
        assert [(b["rank"], b["from_node"], b["to_node"], b["journeys"]) for b in seg["bottlenecks"]] == edges
        for b in seg["bottlenecks"]:
            behind = {j for (j,) in con.execute(
                "select journey_id from marts.bottleneck_journeys where segment_key = ? and segment_value = ? "
                "and kind = 'edge' and rank = ?", [key, value, b["rank"]]).fetchall()}
            assert b["journey_ids"] and set(b["journey_ids"]) <= behind
        drops = con.execute("select rank, node, drop_offs from marts.drop_offs where segment_key = ? and segment_value = ? "
                            "and rank <= 5 and drop_offs > 0 order by rank", [key, value]).fetchall()
        assert [(d["rank"], d["node"], d["drop_offs"]) for d in seg["drop_offs"]] == drops
        for d in seg["drop_offs"]:
            dropped_there = {j for (j,) in con.execute(
                "select m.journey_id from core.moves as m join core.customer_segments as s using (customer_id) "
                "where s.segment_key = ? and s.segment_value = ? and m.from_node = ? and m.to_node = 'DROPPED'",
                [key, value, d["node"]]).fetchall()}
            assert d["journey_ids"] and set(d["journey_ids"]) <= dropped_there


def test_suppressed_comparisons_are_never_shown_as_rates(sample):
    """A suppressed segment comparison row says "suppressed" where the rates and p-value would be, and no
    percentage; a significant one carries a marker; the all=all block compares every key's values."""
    con, page = sample["con"], sample["html"]
    block = segment_block(page, OTHER_SEGMENT)
    rows = re.findall(rf'<tr[^>]*data-segment="{OTHER_SEGMENT}"[^>]*data-suppressed="true"[^>]*>.*?</tr>', block, re.S)
    expected = con.execute("select count(*) from marts.segment_comparison where segment_key = 'acquisition_channel' "
                           "and segment_value = 'social' and is_suppressed").fetchall()[0][0]
    assert expected > 0 and len(rows) == expected
    for row in rows:
        assert "%" not in row and row.count("suppressed") >= 4
    significant = re.findall(r'<tr[^>]*data-significant="true"[^>]*>.*?</tr>', block, re.S)
    assert significant and all("significant" in r and ("▲" in r or "▼" in r) for r in significant)
    everyone = segment_block(page, "all=all")
    keys = {k for (k,) in con.execute("select segment_key from meta.segment_keys").fetchall()}
    assert {k for k in keys if f'data-segment="{k}=' in everyone} == keys


def test_a_warehouse_without_runs_still_gets_a_report(tmp_path):
    """A warehouse built without `journeys run` (no meta.runs, no ingest) gets a report that says so."""
    rules = (StageRule("r_view", "awareness", event_type=("view",)),
             StageRule("r_buy", "purchase", event_type=("buy",)))
    rows = [("c1", "2026-01-01 10:00", "web", "view"), ("c1", "2026-01-01 10:05", "web", "buy"),
            ("c2", "2026-01-02 10:00", "social", "view"), ("c2", "2026-01-02 10:01", "web", "view")]
    segments = pl.DataFrame([("c1", "tier", "gold"), ("c2", "tier", "basic")],
                            schema=["customer_id", "segment_key", "segment_value"], orient="row")
    con = marts_db(events_frame(rows), BuildSettings(rules=rules), ts("2026-03-01"), segments_long=segments)
    page = write_report(con, tmp_path / "r.html", top=2).read_text(encoding="utf-8")
    assert "no succeeded run" in page
    data = report_data(page)
    assert [s["segment"] for s in data["segments"]] == ["all=all", "tier=basic", "tier=gold"]
    everyone = {n["node"]: n for n in data["segments"][0]["sankey"]["nodes"]}
    assert everyone["START"]["out"] == 2 and everyone["CONVERTED"]["in"] == 1 and everyone["DROPPED"]["in"] == 1
    with pytest.raises(ValueError, match="top"):
        write_report(con, tmp_path / "r.html", top=0)


# --- in a browser --------------------------------------------------------------------------------

NODES_JS = """
const block = document.querySelector('.segment-block[data-segment="' + arguments[0] + '"]');
if (!block) return null;
return Array.from(block.querySelectorAll('.sankey .sankey-node')).map(function (n) {
  return [n.__data__.node.customdata[0], n.__data__.node.value, n.querySelector('.node-label').textContent];
});
"""


@pytest.fixture
def browser(tmp_path):
    if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
        pytest.skip("the browser test needs Debian's chromium and chromedriver (/usr/bin/chromium, "
                    "/usr/bin/chromedriver): apt-get install chromium chromium-driver, or `make test` as root")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1400,1000"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def test_report_renders_in_chromium_and_the_picker_switches_segments(sample, browser, tmp_path):
    """Opened from file:// in headless Chromium: no SEVERE console message and no network request; the
    Sankey of all=all shows START, the stages, CONVERTED and DROPPED with the warehouse's node totals;
    choosing acquisition_channel=social shows that segment's block, Sankey and journeys instead.
    A full-page screenshot goes to $JOURNEYS_ARTIFACTS (default: the test's tmp dir) as report.png."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    con = sample["con"]
    browser.get(sample["path"].as_uri())
    wait = WebDriverWait(browser, 30)
    nodes = wait.until(lambda d: d.execute_script(NODES_JS, "all=all") or None)

    stages = [s for (s,) in con.execute("select stage from meta.funnel_stages order by stage_order").fetchall()]
    labels = [label for _, _, label in nodes]
    for name in ["START", *stages, "CONVERTED", "DROPPED"]:
        assert any(label == name or label.startswith(name + " ↻") for label in labels), (name, labels)
    svg_text = browser.execute_script(
        "return Array.from(document.querySelectorAll('[data-segment=\"all=all\"] .sankey svg .node-label'))"
        ".map(function (e) { return e.textContent; })")
    assert sorted(svg_text) == sorted(labels)
    check_sankey(con, "all=all", {name: int(value) for name, value, _ in nodes})

    artifacts = Path(os.environ.get("JOURNEYS_ARTIFACTS") or tmp_path)
    artifacts.mkdir(parents=True, exist_ok=True)
    height = browser.execute_script("return document.documentElement.scrollHeight")
    shot = browser.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": 1400, "height": min(height, 16000), "scale": 1}})
    png = artifacts / "report.png"
    png.write_bytes(base64.b64decode(shot["data"]))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 50_000

    everyone = browser.find_element(By.CSS_SELECTOR, '.segment-block[data-segment="all=all"]')
    other = browser.find_element(By.CSS_SELECTOR, f'.segment-block[data-segment="{OTHER_SEGMENT}"]')
    assert everyone.is_displayed() and not other.is_displayed()
    Select(browser.find_element(By.ID, "segment-picker")).select_by_value(OTHER_SEGMENT)
    social = wait.until(lambda d: d.execute_script(NODES_JS, OTHER_SEGMENT) or None)
    assert other.is_displayed() and not everyone.is_displayed()
    check_sankey(con, OTHER_SEGMENT, {name: int(value) for name, value, _ in social})
    status = journeys_by_status(con, OTHER_SEGMENT)
    shown = other.find_element(By.CSS_SELECTOR, '[data-metric="journeys"]')
    assert shown.text == f"{status['all']:,}" and int(shown.get_attribute("data-value")) == status["all"]
    dropped = other.find_element(By.CSS_SELECTOR, '[data-metric="dropped"]').text
    assert dropped == f"{status['dropped']:,}"
    assert status["all"] != journeys_by_status(con, "all=all")["all"]
    assert browser.find_element(By.TAG_NAME, "body").get_attribute("data-shown-segment") == OTHER_SEGMENT

    requested = browser.execute_script("return performance.getEntriesByType('resource').map(function (e) { return e.name; })")
    assert [r for r in requested if not r.startswith(("file:", "data:", "blob:"))] == []
    severe = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert severe == []
