"""pipeline/graph.py: folding a segment graph for reading (fold_edges) keeps every flow total,
and likely_paths finds the most probable route. Graphs are built here from random journeys
(hypothesis) or by hand, not from the pipeline."""

from __future__ import annotations

import copy
import math
from collections import Counter, defaultdict

import networkx as nx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import events_frame, marts_db, ts
from pipeline import schema
from pipeline.config import StageRule
from pipeline.graph import OTHER, fold_edges, likely_paths, segment_graphs
from pipeline.journeys import BuildSettings

START, TERMINALS = schema.START, set(schema.TERMINALS)
NODES = ("a", "b", "c", "d", "e", "f")


@st.composite
def journey_graphs(draw):
    """A graph counted from 1..40 random journeys START -> 1..6 real nodes (repeats allowed, so
    self-loops occur) -> a terminal: per edge, 'transitions' (times walked) and 'journeys'
    (distinct journeys walking it), and 'probability' = transitions / all transitions out of the node."""
    paths = draw(st.lists(
        st.tuples(st.lists(st.sampled_from(NODES), min_size=1, max_size=6), st.sampled_from(schema.TERMINALS)),
        min_size=1, max_size=40))
    transitions: Counter = Counter()
    journeys: dict = defaultdict(set)
    for i, (nodes, terminal) in enumerate(paths):
        route = [START, *nodes, terminal]
        for edge in zip(route, route[1:]):
            transitions[edge] += 1
            journeys[edge].add(i)
    g = nx.DiGraph(segment_key="all", segment_value="all", level="stage")
    for (f, t), n in transitions.items():
        g.add_edge(f, t, transitions=n, journeys=len(journeys[(f, t)]))
    for f, t, data in g.edges(data=True):
        data["probability"] = data["transitions"] / g.out_degree(f, weight="transitions")
    return g


def totals(g: nx.DiGraph, node: str) -> tuple[int, int]:
    return g.in_degree(node, weight="transitions"), g.out_degree(node, weight="transitions")


FOLD_SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
top_edges_st = st.one_of(st.none(), st.integers(0, 4))
min_transitions_st = st.integers(0, 6)


@FOLD_SETTINGS
@given(g=journey_graphs(), top_edges=top_edges_st, min_transitions=min_transitions_st)
def test_fold_keeps_every_node_balanced(g, top_edges, min_transitions):
    """After folding, every node except START and the terminals, OTHER included, has transitions
    in = transitions out; START's total out and each terminal's total in are unchanged."""
    h = fold_edges(g, top_edges, min_transitions)
    for node in h:
        if node == START or node in TERMINALS:
            continue
        inflow, outflow = totals(h, node)
        assert inflow == outflow, (node, inflow, outflow)
        if node != OTHER:
            assert (inflow, outflow) == totals(g, node)
    assert totals(h, START) == totals(g, START)
    for terminal in TERMINALS & set(g):
        assert totals(h, terminal) == totals(g, terminal)


@FOLD_SETTINGS
@given(g=journey_graphs(), top_edges=top_edges_st, min_transitions=min_transitions_st)
def test_fold_total_is_the_original_plus_what_passes_through_other(g, top_edges, min_transitions):
    """Each folded edge X -> Y of n transitions becomes X -> OTHER and OTHER -> Y with n each, so
    sum of transitions after = sum before + F, where F = the transitions of the folded edges
    = the transitions into OTHER = the transitions out of OTHER."""
    h = fold_edges(g, top_edges, min_transitions)
    kept = {(f, t) for f, t in h.edges if OTHER not in (f, t)}
    folded = sum(n for f, t, n in g.edges(data="transitions") if (f, t) not in kept)
    before = g.size(weight="transitions")
    after = h.size(weight="transitions")
    assert after == before + folded
    if folded:
        assert totals(h, OTHER) == (folded, folded)
        assert sum(n for _, _, n in h.edges(data="folded_edges", default=0)) == 2 * (g.number_of_edges() - len(kept))
    else:
        assert OTHER not in h


@FOLD_SETTINGS
@given(g=journey_graphs(), top_edges=top_edges_st, min_transitions=min_transitions_st)
def test_fold_keeps_the_top_edges_above_the_minimum(g, top_edges, min_transitions):
    """A kept edge is an original edge with its numbers, carrying at least min_transitions; each node
    keeps at most top_edges out-edges besides its edge to OTHER, and they are its edges with the most
    journeys among those at or above the minimum (a folded eligible edge never has more journeys
    than a kept one of the same node)."""
    h = fold_edges(g, top_edges, min_transitions)
    for node in g:
        kept = [t for t in h.successors(node) if t != OTHER]
        eligible = [t for t in g.successors(node) if g[node][t]["transitions"] >= min_transitions]
        for t in kept:
            assert g.has_edge(node, t)
            assert h[node][t]["transitions"] == g[node][t]["transitions"] >= min_transitions
            assert h[node][t]["journeys"] == g[node][t]["journeys"]
        expected_count = len(eligible) if top_edges is None else min(top_edges, len(eligible))
        assert len(kept) == expected_count
        if kept:
            least_kept = min(g[node][t]["journeys"] for t in kept)
            assert all(g[node][t]["journeys"] <= least_kept for t in eligible if t not in kept)
        folded_out = g.out_degree(node, weight="transitions") - sum(g[node][t]["transitions"] for t in kept)
        assert (h[node][OTHER]["transitions"] if h.has_edge(node, OTHER) else 0) == folded_out


@FOLD_SETTINGS
@given(g=journey_graphs(), top_edges=top_edges_st, min_transitions=min_transitions_st)
def test_fold_probabilities_and_input_unchanged(g, top_edges, min_transitions):
    """The folded graph's out-probabilities of every node sum to 1, and the input graph is not changed."""
    before = copy.deepcopy(g)
    h = fold_edges(g, top_edges, min_transitions)
    assert nx.utils.graphs_equal(g, before)
    for node in h:
        if h.out_degree(node):
            assert sum(p for _, _, p in h.out_edges(node, data="probability")) == pytest.approx(1.0)


def test_fold_by_hand():
    """a has out-edges to b (5 journeys), c (3), d (1), CONVERTED (2). top_edges=2 keeps a -> b and a -> c;
    a -> d (1) and a -> CONVERTED (2) go through OTHER: a -> OTHER 3, OTHER -> d 1, OTHER -> CONVERTED 2."""
    g = nx.DiGraph(level="stage")
    g.add_edge(START, "a", transitions=11, journeys=11)
    for t, n in (("b", 5), ("c", 3), ("d", 1), ("CONVERTED", 2)):
        g.add_edge("a", t, transitions=n, journeys=n)
    for t in ("b", "c", "d"):
        g.add_edge(t, "DROPPED", transitions=g["a"][t]["transitions"], journeys=g["a"][t]["journeys"])
    h = fold_edges(g, top_edges=2)
    assert {(f, t): n for f, t, n in h.edges(data="transitions") if f in ("a", OTHER)} == {
        ("a", "b"): 5, ("a", "c"): 3, ("a", OTHER): 3, (OTHER, "d"): 1, (OTHER, "CONVERTED"): 2}
    assert h["a"][OTHER]["folded_edges"] == 2
    assert h["a"][OTHER]["probability"] == pytest.approx(3 / 11)


# --------------------------------------------------------------------------- likely paths


def hand_graph() -> nx.DiGraph:
    """START -> a 0.55, START -> b 0.45; a -> a 0.5 (self-loop), a -> CONVERTED 0.3, a -> c 0.2;
    c -> DROPPED 1; b -> CONVERTED 0.6, b -> DROPPED 0.1, b -> OPEN 0.3."""
    g = nx.DiGraph(level="stage", segment_key="all", segment_value="all")
    for f, t, p in ((START, "a", 0.55), (START, "b", 0.45), ("a", "a", 0.5), ("a", "CONVERTED", 0.3), ("a", "c", 0.2),
                    ("c", "DROPPED", 1.0), ("b", "CONVERTED", 0.6), ("b", "DROPPED", 0.1), ("b", "OPEN", 0.3)):
        g.add_edge(f, t, probability=p)
    return g


def test_likely_paths_by_hand():
    """Paths and products with repeats skipped (docs/metrics.md): a's self-loop 0.5 makes its next
    different node CONVERTED with 0.3 / 0.5 = 0.6 and c with 0.2 / 0.5 = 0.4.
    To CONVERTED: via a 0.55 x 0.6 = 0.33, via b 0.45 x 0.6 = 0.27 -> START > a > CONVERTED;
    to DROPPED: a, c 0.55 x 0.4 x 1 = 0.22 against b 0.45 x 0.1 = 0.045 -> START > a > c > DROPPED;
    to OPEN: only START > b > OPEN, 0.135."""
    got = likely_paths({("all", "all"): hand_graph()})
    rows = {r["outcome"]: (r["path"], r["steps"], r["probability"]) for r in got.iter_rows(named=True)}
    assert rows == {
        "CONVERTED": ("START > a > CONVERTED", 1, pytest.approx(0.33)),
        "DROPPED": ("START > a > c > DROPPED", 2, pytest.approx(0.22)),
        "OPEN": ("START > b > OPEN", 1, pytest.approx(0.135)),
    }
    assert set(got["level"]) == {"stage"} and set(got["segment_key"]) == {"all"}


def test_likely_paths_leave_out_unreachable_outcomes():
    """An outcome no path reaches has no row."""
    g = hand_graph()
    g.remove_edge("b", "OPEN")
    got = likely_paths({("tier", "gold"): g})
    assert sorted(got["outcome"]) == ["CONVERTED", "DROPPED"]
    assert set(got["segment_value"]) == {"gold"}


def best_by_enumeration(g: nx.DiGraph, terminal: str) -> tuple[str, float]:
    """Brute force: the simple path START -> terminal with the highest product of next-different-node
    probabilities p(u, v) / (1 - p(u, u)), which must be unique (a tie would make the comparison meaningless)."""

    def step(u: str, v: str) -> float:
        stay = g[u][u]["probability"] if g.has_edge(u, u) else 0.0
        return g[u][v]["probability"] / (1 - stay)

    scored = sorted(((math.prod(step(u, v) for u, v in zip(p, p[1:])), " > ".join(p))
                     for p in nx.all_simple_paths(g, START, terminal)), reverse=True)
    assert len(scored) == 1 or scored[0][0] > scored[1][0] * (1 + 1e-9), scored[:2]
    return scored[0][1], scored[0][0]


def test_likely_paths_on_a_built_warehouse_equal_brute_force():
    """On segment graphs built from events by the real SQL (a few customers with loops between stages),
    each likely path is the simple path with the highest product of next-different-node probabilities."""
    rules = (StageRule("r_view", "awareness", event_type=("view",)),
             StageRule("r_compare", "consideration", event_type=("compare",)),
             StageRule("r_buy", "purchase", event_type=("buy",)))
    day = "2026-01-0{}"
    routes = {
        "c1": ["view", "compare", "buy"], "c2": ["view", "compare", "view", "compare", "buy"],
        "c3": ["view", "view", "view"], "c4": ["compare", "buy"], "c5": ["view", "compare"],
        "c6": ["compare", "view", "buy"], "c7": ["view", "buy"], "c8": ["view", "compare", "compare", "buy"],
    }
    rows = [(c, f"{day.format(i % 9 + 1)} 10:{m:02d}", "web", e)
            for i, (c, route) in enumerate(routes.items()) for m, e in enumerate(route)]
    con = marts_db(events_frame(rows), BuildSettings(rules=rules), ts("2026-03-01"))
    graphs = segment_graphs(con)
    got = likely_paths(graphs)
    assert sorted(got["outcome"]) == ["CONVERTED", "DROPPED"]
    for r in got.iter_rows(named=True):
        path, p = best_by_enumeration(graphs[(r["segment_key"], r["segment_value"])], r["outcome"])
        assert r["path"] == path
        assert r["probability"] == pytest.approx(p)
