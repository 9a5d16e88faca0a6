"""The exports of a run on the bundled sample (the real CLI in a subprocess): the Parquet files
and date partitions read back with pyarrow and with DuckDB equal the warehouse tables; the
manifest describes them; every GraphML file reads back with networkx with the transitions of
marts.transitions; every DOT file renders with Graphviz. Then DOT quoting on hostile names."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import duckdb
import networkx as nx
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from polars.testing import assert_frame_equal

from conftest import JOURNEYS_BIN, SAMPLE, copy_config, events_frame, marts_db, ts
from pipeline import export, graph, schema
from pipeline.export import export_tables
from pipeline.journeys import BuildSettings

PARTITIONED = {"core.steps", "core.moves"}
DOT = shutil.which("dot")
needs_dot = pytest.mark.skipif(DOT is None, reason="Graphviz `dot` is not installed (make test installs it from Debian as root)")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("export")
    config = copy_config(SAMPLE / "journeys.toml", out)
    proc = subprocess.run([str(JOURNEYS_BIN), "run", "--config", str(config), "--json"], capture_output=True, text=True, env={"CI": "true"})
    assert proc.returncode == 0, proc.stderr
    build = out / "build"
    con = duckdb.connect(str(build / "journeys.duckdb"), read_only=True)
    con.execute("set TimeZone = 'UTC'")  # as the pipeline's connections; timestamps read back as UTC
    manifest = json.loads((build / "export" / "manifest.json").read_text())
    yield {"build": build, "export": build / "export", "graph": build / "graph", "con": con,
           "manifest": manifest, "tables": {t["table"]: t for t in manifest["tables"]}, "summary": json.loads(proc.stdout)}
    con.close()


def warehouse_frame(con, table: str) -> pl.DataFrame:
    return con.sql(f"select * from {table}").pl()


def sorted_frame(df: pl.DataFrame) -> pl.DataFrame:
    """Rows in a canonical order: by every column that is not a list (ties there are exact duplicates here)."""
    keys = [c for c, t in df.schema.items() if not isinstance(t, (pl.List, pl.Array, pl.Struct))]
    return df.sort(keys, nulls_last=True)


def read_pyarrow(path: Path) -> pa.Table:
    """A file, or a folder of Hive partitions whose `date` is read as a date."""
    if path.is_dir():
        return ds.dataset(path, format="parquet", partitioning=ds.partitioning(pa.schema([("date", pa.date32())]), flavor="hive")).to_table()
    return pq.read_table(path)


def read_duckdb(path: Path) -> duckdb.DuckDBPyRelation:
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    glob = str(path / "**" / "*.parquet") if path.is_dir() else str(path)
    return con.sql("select * from read_parquet($glob, hive_partitioning = true)", params={"glob": glob})


def test_manifest_lists_every_table_and_view(run):
    """The manifest has the run id of the succeeded run and one entry per table and view of
    core, marts and views, each with its path, partitioning, row count and column types."""
    con = run["con"]
    run_ids = [r[0] for r in con.execute("select run_id from meta.runs where status = 'succeeded'").fetchall()]
    assert run["manifest"]["run_id"] == run["summary"]["run_id"] and run_ids == [run["summary"]["run_id"]]
    names = {f"{s}.{t}" for s, t in con.execute(
        "select table_schema, table_name from information_schema.tables where table_schema in ('core', 'marts', 'views')").fetchall()}
    assert set(run["tables"]) == names and {"views.journey_paths", "views.stage_dwell", "views.rankings"} <= names
    for name, t in run["tables"].items():
        assert t["run_id"] == run["summary"]["run_id"]
        assert t["rows"] == con.execute(f"select count(*) from {name}").fetchall()[0][0], name
        assert t["file"] == t["path"]
        assert t["path"] == f"{name}.parquet"
        if name in PARTITIONED:
            assert t["partitioned_by"] == ["date"] and (run["export"] / t["path"]).is_dir()
        else:
            assert t["partitioned_by"] is None and (run["export"] / t["path"]).is_file()
        described = con.execute(f"select column_name, column_type from (describe {name})").fetchall()
        extra = [("date", "DATE")] if name in PARTITIONED else []
        assert [(c["name"], c["type"]) for c in t["columns"]] == described + extra, name
    assert run["manifest"]["partitioning"]["tables"] == sorted(PARTITIONED)


def test_every_export_reads_back_with_pyarrow(run):
    """pyarrow reads every file and partition folder: the warehouse's columns with the same
    Arrow types (plus `date` for partitioned tables), and the same rows."""
    con = run["con"]
    for name, t in run["tables"].items():
        table = read_pyarrow(run["export"] / t["path"])
        expected = con.sql(f"select * from {name}").arrow()
        expected = expected.read_all() if hasattr(expected, "read_all") else expected
        got_schema = table.schema.remove(table.schema.get_field_index("date")) if name in PARTITIONED else table.schema
        assert got_schema.names == expected.schema.names, name
        assert got_schema.types == expected.schema.types, name
        if name in PARTITIONED:
            assert table.schema.field("date").type == pa.date32()
        got = pl.from_arrow(table.drop_columns(["date"]) if name in PARTITIONED else table)
        assert_frame_equal(sorted_frame(got), sorted_frame(warehouse_frame(con, name)), check_dtypes=True)


def test_every_export_reads_back_with_duckdb(run):
    """DuckDB's read_parquet (hive_partitioning) reads every export with the manifest's column
    types, and the rows equal the warehouse's."""
    con = run["con"]
    for name, t in run["tables"].items():
        rel = read_duckdb(run["export"] / t["path"])
        assert [(c, str(ty)) for c, ty in zip(rel.columns, rel.types)] == [(c["name"], c["type"]) for c in t["columns"]], name
        got = rel.pl()
        if name in PARTITIONED:
            got = got.drop("date")
        assert_frame_equal(sorted_frame(got), sorted_frame(warehouse_frame(con, name)), check_dtypes=True)


def test_steps_are_partitioned_by_their_utc_date(run):
    """core.steps: one folder date=YYYY-MM-DD per distinct UTC date of ts, each holding exactly
    that date's steps, with the manifest's per-partition row counts."""
    steps = warehouse_frame(run["con"], "core.steps").with_columns(date=pl.col("ts").dt.convert_time_zone("UTC").dt.date())
    per_date = dict(steps.group_by("date").len().iter_rows())
    folder = run["export"] / "core.steps.parquet"
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"date={d.isoformat()}" for d in per_date)
    assert len(per_date) > 100  # five months of data
    exported = pl.from_arrow(read_pyarrow(folder)).select("event_id", "date")
    joined = steps.select("event_id", "date").join(exported, on="event_id", how="full", suffix="_exported")
    assert joined.filter(pl.col("date") != pl.col("date_exported")).height == 0 and joined.null_count().sum_horizontal().item() == 0
    manifest = {p["date"]: (p["rows"], p["path"]) for p in run["tables"]["core.steps"]["partitions"]}
    assert manifest == {d.isoformat(): (n, f"core.steps.parquet/date={d.isoformat()}") for d, n in per_date.items()}


def test_moves_are_partitioned_by_the_date_of_their_event(run):
    """core.moves: a move is dated by the event that makes it, so per journey and date there are
    as many moves as steps, plus the terminal move on the date of the journey's last step
    (START is dated by the first step, move k >= 2 by step k). One folder per distinct date."""
    con = run["con"]
    steps = warehouse_frame(con, "core.steps").with_columns(date=pl.col("ts").dt.convert_time_zone("UTC").dt.date())
    last = steps.group_by("journey_id").agg(pl.col("date").sort_by("step_index").last().alias("last_date"))
    expected = (
        steps.group_by("journey_id", "date").len()
        .join(last, on="journey_id")
        .with_columns(pl.col("len") + (pl.col("date") == pl.col("last_date")).cast(pl.UInt32))
        .select("journey_id", "date", "len")
    )
    moves = pl.from_arrow(read_pyarrow(run["export"] / "core.moves.parquet"))
    got = moves.group_by("journey_id", "date").len()
    assert_frame_equal(sorted_frame(got), sorted_frame(expected), check_dtypes=False)
    folders = sorted(p.name for p in (run["export"] / "core.moves.parquet").iterdir())
    assert folders == sorted(f"date={d.isoformat()}" for d in moves["date"].unique())
    manifest = {p["date"]: p["rows"] for p in run["tables"]["core.moves"]["partitions"]}
    assert manifest == {d.isoformat(): n for d, n in moves.group_by("date").len().iter_rows()}
    assert sum(manifest.values()) == moves.height == con.execute("select count(*) from core.moves").fetchall()[0][0]


@pytest.mark.parametrize("table", ["core.steps", "core.moves"])
def test_partitioned_tables_are_dated_without_a_join(run, table):
    """Each event-grain table is dated from its own columns: no join, no aggregate, so the
    export streams it (dating the moves through a join to core.steps ran out of DuckDB's
    memory on a 100M-event warehouse). core.moves is a view: a scan of core.steps (the move into
    each step) and one of core.journeys (the terminal moves), no join either."""
    plan = "\n".join(r[1] for r in run["con"].execute(f"explain {export.PARTITIONED[table]}").fetchall()).lower()
    for operator in ("join", "group by", "aggregate", "window"):
        assert operator not in plan, plan
    for scanned in {"core.steps": ["core.steps"], "core.moves": ["core.steps", "core.journeys"]}[table]:
        assert f"table: journeys.{scanned}" in plan, plan


def test_an_empty_partitioned_table_is_still_readable(tmp_path):
    """With no events, core.steps is a folder with one empty file in Hive's null partition, so
    readers get its columns (and 0 rows) instead of an error."""
    con = marts_db(events_frame([]), BuildSettings(), ts("2026-01-01"))
    manifest = export_tables(con, tmp_path, "r1")
    steps = {t["table"]: t for t in manifest["tables"]}["core.steps"]
    assert steps["rows"] == 0 and steps["partitions"] == []
    table = read_pyarrow(tmp_path / "core.steps.parquet")
    assert table.num_rows == 0 and table.column_names == [c["name"] for c in steps["columns"]]
    rel = read_duckdb(tmp_path / "core.steps.parquet")
    assert rel.fetchall() == [] and rel.columns == table.column_names


# --------------------------------------------------------------------------- GraphML and DOT


def segment_transitions(con) -> dict[str, dict[tuple[str, str], int]]:
    """marts.transitions per graph file stem (segment_key=segment_value, made safe as the files are)."""
    out: dict[str, dict[tuple[str, str], int]] = {}
    for key, value, f, t, n in con.execute("select segment_key, segment_value, from_node, to_node, transitions from marts.transitions").fetchall():
        stem = re.sub(r"[^A-Za-z0-9_.=-]+", "_", key) + "=" + re.sub(r"[^A-Za-z0-9_.=-]+", "_", value)
        out.setdefault(stem, {})[(f, t)] = n
    return out


def test_graphml_reads_back_with_the_marts_transitions(run):
    """Every segment has a GraphML file; networkx reads it, and its edges and their transitions
    are those of marts.transitions for the segment (the sample does not fold edges)."""
    expected = segment_transitions(run["con"])
    files = sorted(run["graph"].glob("*.graphml"))
    assert {p.stem for p in files} == set(expected) and len(files) == run["summary"]["build"]["graphml_files"]
    for path in files:
        g = nx.read_graphml(path)
        assert {(f, t): d["transitions"] for f, t, d in g.edges(data=True)} == expected[path.stem], path.name


def decode(quoted: str) -> str:
    """What Graphviz shows for the inside of a quoted DOT label: \\\\ is a backslash, \\" a quote,
    \\n a line break; this exporter writes no other escape, so any other one fails the test."""
    def one(m: re.Match) -> str:
        assert m.group(1) in ('\\', '"', "n"), f"unexpected escape \\{m.group(1)} in {quoted!r}"
        return "\n" if m.group(1) == "n" else m.group(1)

    return re.sub(r"\\(.)", one, quoted)


def parse_dot(text: str) -> tuple[dict[str, str], dict[tuple[str, str], int]]:
    """The node names by id (the label without its last line, the numbers), and the edges'
    transitions (the first number of their label)."""
    labels = dict(re.findall(r'^  (n\d+) \[label="((?:[^"\\]|\\.)*)"', text, re.M))
    names = {i: decode(label).rsplit("\n", 1)[0] for i, label in labels.items()}
    edges = {(names[a], names[b]): int(n) for a, b, n in re.findall(r'^  (n\d+) -> (n\d+) \[label="(\d+)', text, re.M)}
    return names, edges


def test_dot_files_sit_beside_the_graphml_with_the_same_graph(run):
    """One .dot per .graphml (same name); its edges carry the same transitions, START and the
    terminals are styled apart from the stages."""
    expected = segment_transitions(run["con"])
    dots = sorted(run["graph"].glob("*.dot"))
    assert [p.stem for p in dots] == sorted(p.stem for p in run["graph"].glob("*.graphml"))
    assert len(dots) == run["summary"]["build"]["dot_files"]
    for path in dots:
        text = path.read_text(encoding="utf-8")
        names, edges = parse_dot(text)
        assert edges == expected[path.stem], path.name
        styles = dict(re.findall(r'^  (n\d+) \[label="(?:[^"\\]|\\.)*", (.*)\];$', text, re.M))
        by_name = {names[i]: s for i, s in styles.items()}
        assert "filled" in by_name[schema.START] and all("filled" in by_name[n] for n in schema.TERMINALS if n in by_name)
        assert all("filled" not in s for n, s in by_name.items() if n not in (schema.START, *schema.TERMINALS))


@needs_dot
def test_dot_files_render_with_graphviz(run, tmp_path):
    """`dot -Tsvg` renders every DOT file (exit 0), and the SVG shows every node's name and the
    visits of the stages from marts.stage_stats."""
    visits = {(k, v, n): x for k, v, n, x in run["con"].execute("select segment_key, segment_value, node, visits from marts.stage_stats").fetchall()}
    for path in sorted(run["graph"].glob("*.dot")):
        proc = subprocess.run([DOT, "-Tsvg", str(path)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        texts = [html.unescape(t) for t in re.findall(r"<text[^>]*>([^<]*)</text>", proc.stdout)]
        names, _ = parse_dot(path.read_text(encoding="utf-8"))
        assert set(names.values()) <= set(texts), path.name
        if path.stem == "all=all":
            for (k, v, node), n in visits.items():
                if (k, v) == ("all", "all"):
                    assert any(t.startswith(f"visits {n}, ") for t in texts), node


HOSTILE = ['say "hi"', "back\\slash", "ends with \\", "\\N not a macro", "two\nlines", "<b>html</b> & {braces}; a -> b", "café ☕", "tab\there"]


def hostile_graph() -> nx.DiGraph:
    g = nx.DiGraph(segment_key='k"ey', segment_value="v\\al", level="stage")
    chain = [schema.START, *HOSTILE, schema.CONVERTED]
    for a, b in zip(chain, chain[1:]):
        g.add_edge(a, b, transitions=3, journeys=3, wait_p50_seconds=None if a == schema.START or b == schema.CONVERTED else 90.0)
    g.add_edge(HOSTILE[0], HOSTILE[0], transitions=2, journeys=1, wait_p50_seconds=5.0)
    for n in HOSTILE:
        g.nodes[n].update(kind="step", visits=3, drop_offs=0, drop_off_rate=0.0)
    g.nodes[schema.START]["kind"] = "start"
    g.nodes[schema.CONVERTED]["kind"] = "end"
    return g


def test_dot_quoting_keeps_any_name_intact():
    """Names with quotes, backslashes (also at the end), Graphviz escapes, line breaks, HTML and
    DOT syntax stay inside their quoted labels: every line of the DOT is one whole statement,
    and the labels decode back to exactly those names and the graph's title."""
    g = hostile_graph()
    text = graph.to_dot(g)
    quoted = r'"(?:[^"\\]|\\.)*"'
    statement = re.compile(
        r"^(//.*|digraph journeys \{|\}|  (node|edge) \[[^\"]*\];"
        rf"|  graph \[rankdir=LR, labelloc=t, fontname=Helvetica, label={quoted}\];"
        rf'|  n\d+ (-> n\d+ )?\[label={quoted}(, [a-z]+=("[^"\\]*"|[^",\]]+))*\];'
        r"|  \{ rank=(source|sink);( n\d+)+ \})$"
    )
    assert [line for line in text.splitlines() if not statement.match(line)] == []
    names, edges = parse_dot(text)
    assert sorted(names.values()) == sorted(g.nodes)
    assert edges == {(f, t): d["transitions"] for f, t, d in g.edges(data=True)}
    title = re.search(r'label="((?:[^"\\]|\\.)*)"\];', text.splitlines()[2]).group(1)
    assert decode(title) == 'k"ey = v\\al (level stage)'


@needs_dot
def test_dot_renders_hostile_names(tmp_path):
    """Graphviz renders a graph of hostile names, and the SVG shows each name exactly (a name with
    a line break as its two lines); the folded OTHER node renders too."""
    g = hostile_graph()
    path = tmp_path / "hostile.dot"
    path.write_text(graph.to_dot(g), encoding="utf-8")
    folded = tmp_path / "folded.dot"
    folded.write_text(graph.to_dot(graph.fold_edges(g, top_edges=1)), encoding="utf-8")
    for p in (path, folded):
        proc = subprocess.run([DOT, "-Tsvg", str(p)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        texts = [html.unescape(t) for t in re.findall(r"<text[^>]*>([^<]*)</text>", proc.stdout)]
        for name in HOSTILE:
            for line in name.split("\n"):
                assert line in texts, (p.name, line)
    assert 'k"ey = v\\al (level stage)' in texts
