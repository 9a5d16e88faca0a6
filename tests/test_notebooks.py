"""The analyst notebook (notebooks/walkthrough.py) runs top to bottom on a warehouse
that the real `journeys run` built from the bundled sample, and prints true numbers."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import duckdb
import pytest

from conftest import JOURNEYS_BIN, ROOT, SAMPLE, copy_config

jupytext = pytest.importorskip("jupytext")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = ROOT / "notebooks" / "walkthrough.py"
CONFIG = SAMPLE / "journeys.toml"
TOP_LINE = re.compile(
    r"Top bottleneck in (?P<key>[^=\n]+)=(?P<value>[^\n]+?): (?P<from_node>[^\n]+?) -> (?P<to_node>[^\n]+?): (?P<journeys>\d+) journeys"
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (SAMPLE / "ground_truth.json").exists(), reason="data/sample/ground_truth.json missing: run `make sample`"),
]


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> Path:
    """A warehouse built by the real CLI in a subprocess, from a copy of the sample config
    whose [output] points into a temporary folder."""
    out = tmp_path_factory.mktemp("notebook")
    config = copy_config(CONFIG, out)
    env = {**os.environ, "CI": "true"}
    proc = subprocess.run(
        [str(JOURNEYS_BIN), "run", "--config", str(config)], capture_output=True, text=True, env=env, timeout=900
    )
    assert proc.returncode == 0, proc.stderr
    path = out / "build" / "journeys.duckdb"
    assert path.exists()
    return path


@pytest.fixture(scope="module")
def executed(warehouse, tmp_path_factory):
    """The notebook converted with jupytext and executed with nbclient (kernel python3 of this
    interpreter), reading the warehouse through JOURNEYS_WAREHOUSE."""
    nb = jupytext.read(NOTEBOOK)
    previous = os.environ.get("JOURNEYS_WAREHOUSE")
    os.environ["JOURNEYS_WAREHOUSE"] = str(warehouse)  # the kernel inherits this process's environment
    try:
        client = nbclient.NotebookClient(
            nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
        )
        client.execute()
    finally:
        if previous is None:
            os.environ.pop("JOURNEYS_WAREHOUSE", None)
        else:
            os.environ["JOURNEYS_WAREHOUSE"] = previous
    return nb


def _outputs(nb) -> list[dict]:
    return [out for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", [])]


def _text(nb) -> str:
    parts = []
    for out in _outputs(nb):
        if out.get("output_type") == "stream":
            parts.append(out.get("text", ""))
        elif "data" in out:
            parts.append(out["data"].get("text/plain", ""))
    return "\n".join(parts)


def test_notebook_runs_without_errors(executed):
    """Every code cell runs, none has an error output, and the charts are drawn."""
    errors = [out for out in _outputs(executed) if out.get("output_type") == "error"]
    assert errors == []
    assert all(cell.get("execution_count") for cell in executed.cells if cell.cell_type == "code")
    images = [out for out in _outputs(executed) if "image/png" in out.get("data", {})]
    assert len(images) >= 2, "the funnel and the drop-off charts"


def test_notebook_reads_the_given_warehouse(executed, warehouse):
    """The notebook opened the warehouse named by JOURNEYS_WAREHOUSE, not the default one."""
    assert f"warehouse: {warehouse}" in _text(executed)


def test_printed_top_bottleneck_is_rank_one_of_the_chosen_segment(executed, warehouse):
    """The printed top bottleneck is the rank-1 edge of marts.bottlenecks for the segment the
    notebook chose, and that segment is the one whose rank-1 edge loses the most time per
    journey of the segment (segments of at least comparison.min_journeys journeys, '(unknown)'
    left out),
    as the notebook says."""
    found = TOP_LINE.search(_text(executed))
    assert found, "the notebook prints 'Top bottleneck in <key>=<value>: <from> -> <to>: <n> journeys ...'"
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        rank_one = con.execute(
            "select from_node, to_node, journeys from marts.bottlenecks "
            "where kind = 'edge' and rank = 1 and segment_key = ? and segment_value = ?",
            [found["key"], found["value"]],
        ).fetchall()
        sizes = dict(
            ((k, v), n)
            for k, v, n in con.execute(
                "select s.segment_key, s.segment_value, count(*) from core.journeys j "
                "join core.customer_segments s using (customer_id) group by all"
            ).fetchall()
        )
        min_journeys = int(dict(con.execute("select key, value from meta.settings").fetchall())["min_journeys"])
        edges = con.execute(
            "select segment_key, segment_value, time_lost_seconds from marts.bottlenecks "
            "where kind = 'edge' and rank = 1 and segment_key <> 'all' and segment_value <> '(unknown)'"
        ).fetchall()
    finally:
        con.close()
    assert rank_one == [(found["from_node"], found["to_node"], int(found["journeys"]))]
    per_journey = {(k, v): lost / sizes[(k, v)] for k, v, lost in edges if sizes[(k, v)] >= min_journeys}
    assert per_journey, "the sample has segments big enough to rank"
    best = max(per_journey.values())
    assert per_journey[(found["key"], found["value"])] == pytest.approx(best)


def test_notebook_lists_journeys_behind_the_bottleneck(executed):
    """The journeys behind the top bottleneck are shown with their path from START to an end."""
    text = _text(executed)
    assert "START > " in text
    assert any(end in text for end in ("CONVERTED", "DROPPED", "OPEN"))


def test_notebook_finds_the_planted_truths(executed):
    """On the sample, the segment the notebook studies is the one with the planted bottleneck
    (ground_truth.json: segment, from and to node), and the segment it compares for drop-offs
    is the one with the planted drop-off."""
    truth = json.loads((SAMPLE / "ground_truth.json").read_text())
    text = _text(executed)
    b, d = truth["bottleneck"], truth["drop_off"]
    assert f"Top bottleneck in {b['segment_key']}={b['segment_value']}: {b['from_node']} -> {b['to_node']}:" in text
    assert f"Drop-off rate {d['segment_key']}={d['segment_value']}:" in text
