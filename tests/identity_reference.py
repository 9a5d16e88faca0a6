"""A plain-Python reference for identity resolution (pipeline/identity.py), written from its rules in
docs/identity.md with a union-find, for tiny and sample-sized inputs: the SQL label propagation is
compared against it.

`resolve(rows, customer_type, exclusive_types)` takes rows as dicts {identifier type: value} (the
identifiers of an event or of an identity-map row) and returns (the customer of each row, the customer
of each identifier (type, value), the cut identifiers {(type, value): reason})."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence


class UnionFind:
    def __init__(self) -> None:
        self.parent: dict = {}

    def find(self, x):
        self.parent.setdefault(x, x)
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a, b) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)  # the root is the smallest node


def resolve(rows: Sequence[dict[str, str]], customer_type: str = "customer",
            exclusive_types: Iterable[str] | None = None) -> tuple[list[str], dict[tuple[str, str], str], dict[tuple[str, str], str]]:
    exclusive = None if exclusive_types is None else set(exclusive_types)
    nodes = sorted({(t, v) for row in rows for t, v in row.items()})
    known_values = {v for t, v in nodes if t == customer_type}
    # shared: an exclusive identifier on the rows of two or more known customers
    customers_of = defaultdict(set)
    for row in rows:
        if customer_type in row:
            for t, v in row.items():
                if t != customer_type and (exclusive is None or t in exclusive):
                    customers_of[(t, v)].add(row[customer_type])
    cut = {n: "shared_identifier" for n, cs in customers_of.items() if len(cs) >= 2}
    uf = UnionFind()
    for n in nodes:
        uf.find(n)
    for row in rows:
        linking = [n for n in row.items() if n not in cut]
        for n in linking[1:]:
            uf.union(linking[0], n)
    members = defaultdict(list)
    for n in nodes:
        members[uf.find(n)].append(n)
    root_of = {n: uf.find(n) for n in nodes}
    for root, ns in list(members.items()):
        if sum(t == customer_type for t, _ in ns) >= 2:  # ambiguous: isolate every identifier
            for n in ns:
                if n[0] != customer_type:
                    cut.setdefault(n, "ambiguous_link")
                root_of[n] = n
    component = defaultdict(list)
    for n, root in root_of.items():
        component[root].append(n)
    customer_of_root = {}
    for root, ns in component.items():
        known = [v for t, v in ns if t == customer_type]
        if len(known) == 1:
            customer_of_root[root] = known[0]
        else:
            t, v = min(ns)
            customer_of_root[root] = "anon_" + hashlib.md5(f"{t}\x1f{v}".encode()).hexdigest() if v in known_values else v
    node_customer = {n: customer_of_root[root_of[n]] for n in nodes}
    out = []
    for row in rows:
        if customer_type in row:
            out.append(row[customer_type])
            continue
        linking = [n for n in row.items() if n not in cut] or list(row.items())
        out.append(node_customer[min(linking, key=lambda n: root_of[n])])
    return out, node_customer, cut
