"""The transition graph per segment with networkx: conservation check, likely paths, GraphML.

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

EDGE_ATTRS = ("transitions", "journeys", "customers", "probability", "wait_p50_seconds", "wait_p90_seconds", "wait_mean_seconds")
NODE_ATTRS = ("journeys", "visits", "exits", "drop_offs", "drop_off_rate", "dwell_p50_seconds", "dwell_p90_seconds", "repeats")


class ConservationError(RuntimeError):
    """The marts break a flow law; the run must fail and publish nothing."""


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


def check_conservation(graphs: dict[tuple[str, str], nx.DiGraph], journeys_by_segment: dict[tuple[str, str], dict[str, int]]) -> None:
    """Every real node: transitions in = transitions out (self-loops count both ways);
    START out = journeys; each terminal's inflow = journeys with that status."""
    for (key, value), g in graphs.items():
        by_status = journeys_by_segment.get((key, value), {})
        total = sum(by_status.values())
        start_out = g.out_degree(schema.START, weight="transitions") if schema.START in g else 0
        if start_out != total:
            raise ConservationError(f"segment {key}={value}: START sends {start_out} journeys but the segment has {total}")
        for status, terminal in zip(schema.STATUSES, schema.TERMINALS):
            inflow = g.in_degree(terminal, weight="transitions") if terminal in g else 0
            if inflow != by_status.get(status, 0):
                raise ConservationError(f"segment {key}={value}: {terminal} receives {inflow} journeys but {by_status.get(status, 0)} are {status}")
        for node in g:
            if node == schema.START or node in schema.TERMINALS:
                continue
            i, o = g.in_degree(node, weight="transitions"), g.out_degree(node, weight="transitions")
            if i != o:
                raise ConservationError(f"segment {key}={value}: node {node} has {i} transitions in but {o} out")


def likely_paths(graphs: dict[tuple[str, str], nx.DiGraph]) -> pl.DataFrame:
    """The most probable path from START to each terminal per segment (edge weight -log p,
    self-loops left out): the typical route to converting and to dropping off."""
    rows = []
    for (key, value), g in graphs.items():
        h = nx.DiGraph()
        h.add_weighted_edges_from(
            ((f, t, -math.log(p)) for f, t, p in g.edges(data="probability") if f != t and p and p > 0),
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


def analyse(con: duckdb.DuckDBPyConnection, graph_dir: Path) -> dict:
    """Check the flow laws, write marts.likely_paths and the GraphML files."""
    graphs = segment_graphs(con)
    counts = con.execute(
        "select s.segment_key, s.segment_value, j.status, count(*) from core.journeys j "
        "join core.customer_segments s using (customer_id) group by all"
    ).fetchall()
    by_segment: dict[tuple[str, str], dict[str, int]] = {}
    for key, value, status, n in counts:
        by_segment.setdefault((key, value), {})[status] = n
    check_conservation(graphs, by_segment)
    paths = likely_paths(graphs)
    con.register("_likely_paths", paths.to_arrow())
    con.execute("create or replace table marts.likely_paths as select * from _likely_paths")
    con.unregister("_likely_paths")
    files = write_graphml(graphs, graph_dir)
    return {"segments": len(graphs), "graphml_files": len(files)}
