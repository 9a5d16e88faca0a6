"""The transition graph per segment with networkx: conservation check, likely paths, GraphML and DOT.

Works on the aggregated marts (a few hundred edges per segment), never on events.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import duckdb
import networkx as nx
import polars as pl

from pipeline import schema
from pipeline.report import duration

EDGE_ATTRS = ("transitions", "journeys", "customers", "probability", "wait_p50_seconds", "wait_p90_seconds", "wait_mean_seconds")
NODE_ATTRS = ("journeys", "visits", "exits", "drop_offs", "drop_off_rate", "dwell_p50_seconds", "dwell_p90_seconds", "repeats")


def segment_graphs(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, str], nx.DiGraph]:
    """One DiGraph per (segment_key, segment_value) from marts.transitions and marts.stage_stats."""
    edges = con.sql("select * from marts.transitions").pl()
    nodes = con.sql("select * from marts.stage_stats").pl()
    graphs: dict[tuple[str, str], nx.DiGraph] = {}
    for (key, value), part in edges.group_by(["segment_key", "segment_value"], maintain_order=True):
        g = nx.DiGraph(segment_key=key, segment_value=value, level=part["level"][0])
        attrs = part.select(EDGE_ATTRS).to_dict(as_series=False)
        g.add_edges_from(
            (f, t, {a: attrs[a][i] for a in EDGE_ATTRS if attrs[a][i] is not None})
            for i, (f, t) in enumerate(zip(part["from_node"], part["to_node"]))
        )
        graphs[(key, value)] = g
    for (key, value), part in nodes.group_by(["segment_key", "segment_value"], maintain_order=True):
        g = graphs[(key, value)]
        attrs = part.select(NODE_ATTRS).to_dict(as_series=False)
        for i, node in enumerate(part["node"]):
            g.add_node(node, kind="step", **{a: attrs[a][i] for a in NODE_ATTRS if attrs[a][i] is not None})
    for g in graphs.values():
        for n in (schema.START, *schema.TERMINALS):
            if n in g:
                g.nodes[n]["kind"] = "start" if n == schema.START else "end"
    return graphs


OTHER = "OTHER"


def fold_edges(g: nx.DiGraph, top_edges: int | None = None, min_transitions: int = 0) -> nx.DiGraph:
    """A readable copy of a segment graph: per node, keep its `top_edges` out-edges with
    the most journeys (and only edges with at least `min_transitions`); every other edge
    X -> Y is routed through one explicit node OTHER as X -> OTHER and OTHER -> Y, with
    the transitions it carried. So every node keeps its totals in and out, OTHER is
    balanced too, and nothing is silently dropped. Folded edges carry `folded_edges`."""
    if top_edges is None and min_transitions <= 0:
        return g.copy()
    keep: set[tuple[str, str]] = set()
    for node in g:
        out = sorted(g.out_edges(node, data=True), key=lambda e: (-e[2].get("journeys", 0), -e[2].get("transitions", 0), e[1]))
        kept = [e for e in out if e[2].get("transitions", 0) >= min_transitions]
        keep.update((f, t) for f, t, _ in (kept[:top_edges] if top_edges is not None else kept))
    h = nx.DiGraph(**g.graph)
    h.add_nodes_from(g.nodes(data=True))
    for f, t, data in g.edges(data=True):
        if (f, t) in keep:
            h.add_edge(f, t, **data)
            continue
        n = data.get("transitions", 0)
        for a, b in ((f, OTHER), (OTHER, t)):
            if h.has_edge(a, b):
                h[a][b]["transitions"] += n
                h[a][b]["folded_edges"] += 1
            else:
                h.add_edge(a, b, transitions=n, folded_edges=1)
    if OTHER in h:
        h.nodes[OTHER]["kind"] = "other"
    for node in h:
        total = h.out_degree(node, weight="transitions")
        for _, _, data in h.out_edges(node, data=True):
            data["probability"] = data["transitions"] / total if total else 0.0
    return h


def likely_paths(graphs: dict[tuple[str, str], nx.DiGraph]) -> pl.DataFrame:
    """The most probable path from START to each terminal per segment: the typical route
    to converting and to dropping off. Repeats are skipped: edge X -> Y weighs
    -log(p(X, Y) / (1 - p(X, X))), the probability that Y is the next different node."""
    rows = []
    for (key, value), g in graphs.items():
        stay = {f: p for f, t, p in g.edges(data="probability") if f == t and p}
        h = nx.DiGraph()
        h.add_weighted_edges_from(
            ((f, t, -math.log(p / (1.0 - stay.get(f, 0.0)))) for f, t, p in g.edges(data="probability") if f != t and p and p > 0),
        )
        for terminal in schema.TERMINALS:
            if schema.START not in h or terminal not in h or not nx.has_path(h, schema.START, terminal):
                continue
            path = nx.dijkstra_path(h, schema.START, terminal)
            cost = nx.path_weight(h, path, weight="weight")
            rows.append((g.graph["level"], key, value, terminal, " > ".join(path), len(path) - 2, math.exp(-cost)))
    return pl.DataFrame(
        rows,
        schema={"level": pl.String, "segment_key": pl.String, "segment_value": pl.String, "outcome": pl.String,
                "path": pl.String, "steps": pl.Int64, "probability": pl.Float64},
        orient="row",
    )


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", name)


def write_graphml(graphs: dict[tuple[str, str], nx.DiGraph], out_dir: Path) -> list[Path]:
    """One GraphML file per segment (Gephi, yEd and networkx read them)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for (key, value), g in graphs.items():
        path = out_dir / f"{_safe(key)}={_safe(value)}.graphml"
        nx.write_graphml(g, path)
        paths.append(path)
    return paths


def dot_text(text: str) -> str:
    """`text` as a DOT double-quoted string whose label shows exactly `text`: backslashes and
    quotes escaped (so no name can end the string or turn into a Graphviz escape such as \\N or
    \\l), line breaks as \\n, other control characters as spaces."""
    text = text.replace("\\", "\\\\").replace('"', '\\"')
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\\n")
    return '"' + re.sub(r"[\x00-\x08\x0b-\x1f\x7f]", " ", text) + '"'


NODE_STYLE = {
    "start": 'shape=oval, style="filled,bold", fillcolor="#e0e0e0"',
    "end": 'shape=box, style="rounded,filled,bold"',
    "other": 'shape=box, style="rounded,dashed"',
    "step": 'shape=box, style="rounded"',
}
TERMINAL_FILL = {"CONVERTED": "#c7e9c0", "DROPPED": "#fcbba1", "OPEN": "#deebf7"}
KIND_ORDER = {"start": 0, "step": 1, "other": 2, "end": 3}


def to_dot(g: nx.DiGraph) -> str:
    """The DOT text of a segment graph (Graphviz: `dot -Tsvg file.dot > file.svg`). Nodes are
    n1, n2, ... labelled with their name and numbers: a node its visits and drop-offs (with the
    drop-off rate), START the journeys it starts, a terminal the journeys ending there. Edges
    are labelled with their transitions and median wait, drawn thicker with more transitions.
    START and the terminals are filled (CONVERTED green, DROPPED red, OPEN blue), OTHER dashed."""
    kind = {n: g.nodes[n].get("kind", "step") for n in g}
    order = sorted(g, key=lambda n: (KIND_ORDER.get(kind[n], 1), schema.TERMINALS.index(n) if n in schema.TERMINALS else 0, n))
    ids = {n: f"n{i}" for i, n in enumerate(order, start=1)}
    position = {n: i for i, n in enumerate(order)}
    title = f"{g.graph.get('segment_key', '')} = {g.graph.get('segment_value', '')} (level {g.graph.get('level', '')})"
    lines = [
        "// journeys transition graph: nodes from marts.stage_stats, edges from marts.transitions",
        "digraph journeys {",
        f"  graph [rankdir=LR, labelloc=t, fontname=Helvetica, label={dot_text(title)}];",
        "  node [fontname=Helvetica, fontsize=11];",
        "  edge [fontname=Helvetica, fontsize=9];",
    ]
    for n in order:
        data = g.nodes[n]
        if kind[n] == "start":
            detail = f"{g.out_degree(n, weight='transitions')} journeys"
        elif kind[n] == "end":
            detail = f"{g.in_degree(n, weight='transitions')} journeys"
        elif kind[n] == "other":
            detail = "folded edges"
        else:
            rate = data.get("drop_off_rate")
            detail = f"visits {data.get('visits', 0)}, drop-offs {data.get('drop_offs', 0)}" + (f" ({rate:.0%})" if rate is not None else "")
        style = NODE_STYLE.get(kind[n], NODE_STYLE["step"])
        if n in TERMINAL_FILL:
            style += f', fillcolor="{TERMINAL_FILL[n]}"'
        lines.append(f"  {ids[n]} [label={dot_text(n + chr(10) + detail)}, {style}];")
    widest = max((d.get("transitions", 0) for _, _, d in g.edges(data=True)), default=0) or 1
    for f, t, data in sorted(g.edges(data=True), key=lambda e: (position[e[0]], position[e[1]])):
        n = data.get("transitions", 0)
        label = f"{n}"
        if data.get("wait_p50_seconds") is not None:
            label += f", median {duration(data['wait_p50_seconds'])}"
        if data.get("folded_edges"):
            label += f" ({data['folded_edges']} edges)"
        lines.append(f"  {ids[f]} -> {ids[t]} [label={dot_text(label)}, penwidth={1 + 4 * n / widest:.2f}];")
    starts = " ".join(ids[n] for n in order if kind[n] == "start")
    ends = " ".join(ids[n] for n in order if kind[n] == "end")
    if starts:
        lines.append(f"  {{ rank=source; {starts} }}")
    if ends:
        lines.append(f"  {{ rank=sink; {ends} }}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def write_dot(graphs: dict[tuple[str, str], nx.DiGraph], out_dir: Path) -> list[Path]:
    """One DOT file per segment, named as its GraphML file (Graphviz renders them)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for (key, value), g in graphs.items():
        path = out_dir / f"{_safe(key)}={_safe(value)}.dot"
        path.write_text(to_dot(g), encoding="utf-8")
        paths.append(path)
    return paths


def analyse(con: duckdb.DuckDBPyConnection, graph_dir: Path, top_edges: int | None = None, min_transitions: int = 0) -> dict:
    """Write marts.likely_paths (from the full graphs) and, per segment, one GraphML and one DOT
    file (folded for readability when top_edges or min_transitions is set)."""
    graphs = segment_graphs(con)
    paths = likely_paths(graphs)
    con.register("_likely_paths", paths.to_arrow())
    con.execute("create or replace table marts.likely_paths as select * from _likely_paths")
    con.unregister("_likely_paths")
    readable = {k: fold_edges(g, top_edges, min_transitions) for k, g in graphs.items()}
    files = write_graphml(readable, graph_dir)
    dots = write_dot(readable, graph_dir)
    return {"segments": len(graphs), "graphml_files": len(files), "dot_files": len(dots)}
