"""Identity resolution: one customer across every channel (staging.events.identifiers -> customer_id).

Every identifier a row carries (a cookie, a customer id, a social handle, a phone,
a loyalty card, an e-mail: `staging.events.identifiers`, keyed by type) is a node
of a graph; a row that carries two identifiers links them, and so does each row
of an identity-map file (`[[identity.maps]]`, e.g. a CRM export, loaded into
`staging.identity_map`). Each connected component is one customer:

- its `customer_id` is the value of its one identifier of type
  `identity.customer_type` (a known customer id), or, for a component without
  one, its smallest identifier value (by type, then value): a cookie-only
  visitor stays the customer named by its cookie. Should that value be some
  known customer's id, it becomes `anon_` + md5(type, U+001F, value).
- it never holds two known customer ids. An identifier of an exclusive type
  (`identity.exclusive_types`, default every type but the customer type) seen on
  the rows of two or more known customers is *shared* (a family tablet's
  cookie): it links nothing. A component that still reaches two known customers
  through other links is *ambiguous*: none of its identifiers links anything,
  each known customer keeps its own rows. Both are written to
  `staging.identity_conflicts` with the customers they would have joined and
  the rows behind them.

Each event then gets the customer of its own known customer id if it carries
one, else of its identifiers' component (an event whose identifiers were all cut
is the customer named by its smallest one). `staging.events.customer_id` is
rewritten to it; the raw identifiers stay in `identifiers`, so every run
resolves again from scratch over all of staging and a new link re-attributes
past events (the customers whose events moved, old and new, are added to
`_affected_customers`, so an incremental build cuts their journeys again).

Components come from iterative min-label propagation in DuckDB SQL over the
edge table (with pointer jumping): the loop is over iterations, never rows.
The result depends only on the set of rows, not on their order or batches.
"""

from __future__ import annotations

import logging
import time

import duckdb

from pipeline import privacy
from pipeline.config import Config
from pipeline.ingest import _BLANKS, csv_header

log = logging.getLogger(__name__)

MAX_ITERATIONS = 200  # label propagation with pointer jumping needs O(log diameter) rounds; this is a guard
EVIDENCE_LIMIT = 20  # rows listed per conflict


def load_identity_maps(con: duckdb.DuckDBPyConnection, config: Config) -> int:
    """staging.identity_map from the [[identity.maps]] files: one row per map row and non-empty identifier
    (trimmed as ingest trims identifiers, pseudonymized like them when [privacy] pseudonymize is on).
    Returns the number of map rows read."""
    con.execute("delete from staging.identity_map")
    rows = 0
    for m in config.identity_maps:
        header = csv_header(m.path, m.delimiter)
        missing = [c for _, c in m.identifiers if c not in header]
        if missing:
            from pipeline.config import ConfigError

            raise ConfigError(
                f"{m.path}, line 1: identity map '{m.name}' lacks column(s) {', '.join(repr(c) for c in missing)} "
                f"(it has: {', '.join(header) or 'no columns'}). Fix: correct identifiers in the [[identity.maps]] table named '{m.name}'"
            )
        positional = {f"h{j}": "VARCHAR" for j in range(len(header))}
        index = {name: j for j, name in enumerate(header)}
        types = [t for t, _ in m.identifiers]
        cols = [f"h{index[c]}" for _, c in m.identifiers]
        entries = ", ".join(f"{{'type': ${'t' + str(i)}, 'value': nullif(trim({c}, {_BLANKS}), '')}}" for i, c in enumerate(cols))
        params = {"path": m.path, "columns": positional, "delim": m.delimiter, "name": m.name,
                  **{f"t{i}": t for i, t in enumerate(types)}}
        con.execute(
            f"""
            insert into staging.identity_map
            select $name as map_name, $path as source_file, ordinality + 1 as source_row, e.type as identifier_type,
                   e.value as identifier
            from (select ordinality, unnest([{entries}]) as e
                  from read_csv($path, columns = $columns, header = true, delim = $delim, auto_detect = false,
                                quote = '"', escape = '"') with ordinality)
            where e.value is not null
            """,
            params,
        )
        rows += con.execute("select count(distinct source_row) from staging.identity_map where map_name = ?", [m.name]).fetchall()[0][0]
    if config.pseudonymize and rows:
        con.execute(f"update staging.identity_map set identifier = {privacy.pseudonym_sql('identifier')}",
                    privacy.key_params(privacy.read_key(config)))
    return rows


def resolve(con: duckdb.DuckDBPyConnection, config: Config) -> dict:
    """Resolve every identifier in staging.events and staging.identity_map to a customer; write
    core.identities and staging.identity_conflicts, rewrite staging.events.customer_id, and add the
    customers whose events moved (old and new ids) to _affected_customers. Returns the run's counts."""
    started = time.perf_counter()
    con.execute("create temp table if not exists _affected_customers (customer_id varchar)")
    params = {"ct": config.customer_type, "all_exclusive": config.exclusive_types is None,
              "exclusive": list(config.exclusive_types or ())}
    # 1. rows: each distinct identifier set of the events (most events repeat one), then each map row
    con.execute(
        """
        create or replace temp table _sets as
        select row_number() over () as row_key, identifiers, count(*) as events, min(ts) as first_seen_at,
               max(ts) as last_seen_at
        from staging.events
        group by identifiers
        """
    )
    # each occurrence of an identifier in a row, with the row's known customer id (a row has at most one
    # identifier per type: the keys of a MAP, the columns of a map file)
    con.execute(
        """
        create or replace temp table _occ as
        select row_key, e.key as identifier_type, e.value as identifier, events, first_seen_at, last_seen_at,
               row_customer
        from (select row_key, unnest(map_entries(identifiers)) as e, events, first_seen_at, last_seen_at,
                     map_extract_value(identifiers, $ct) as row_customer
              from _sets)
        union all
        select (select count(*) from _sets) + dense_rank() over (order by map_name, source_row) as row_key,
               identifier_type, identifier, 0, null, null,
               max(identifier) filter (where identifier_type = $ct) over (partition by map_name, source_row)
        from staging.identity_map
        """,
        {"ct": params["ct"]},
    )
    # 2. nodes, numbered in (type, value) order: the smallest label of a component is its smallest identifier
    con.execute(
        """
        create or replace temp table _nodes as
        select row_number() over (order by identifier_type, identifier) as node, identifier_type, identifier,
               identifier_type = $ct as is_known
        from (select distinct identifier_type, identifier from _occ)
        """,
        {"ct": params["ct"]},
    )
    con.execute(
        """
        create or replace temp table _occ_n as
        select o.row_key, n.node, n.identifier_type, n.identifier, n.is_known, o.events, o.first_seen_at, o.last_seen_at,
               o.row_customer
        from _occ as o join _nodes as n using (identifier_type, identifier)
        """
    )
    # 3. shared identifiers: an exclusive type seen on the rows of two or more known customers links nothing
    con.execute(
        """
        create or replace temp table _cut as
        select node, 'shared_identifier' as reason, list(distinct row_customer order by row_customer) as customer_ids
        from _occ_n
        where not is_known and row_customer is not null
          and ($all_exclusive or list_contains($exclusive, identifier_type))
        group by node
        having count(distinct row_customer) >= 2
        """,
        {k: params[k] for k in ("all_exclusive", "exclusive")},
    )
    # 4. edges: each row's identifiers (but cut ones) to the row's smallest one, both ways
    con.execute(
        """
        create or replace temp table _edges as
        with linking as (select row_key, node from _occ_n where node not in (select node from _cut)),
        roots as (select row_key, min(node) as root from linking group by row_key),
        star as (select distinct l.node as a, r.root as b from linking as l join roots as r using (row_key) where l.node <> r.root)
        select a, b from star union all select b, a from star  -- disjoint: a star edge always points to the smaller node
        """
    )
    iterations = _propagate(con)
    # 5. ambiguous components: two known customers linked through non-exclusive links; cut them all
    con.execute(
        """
        create or replace temp table _ambiguous as
        select l.label, list(n.identifier order by n.identifier) as customer_ids
        from _labels as l join _nodes as n using (node)
        where n.is_known
        group by l.label
        having count(*) >= 2
        """
    )
    con.execute(
        """
        insert into _cut
        select l.node, 'ambiguous_link', a.customer_ids
        from _labels as l join _ambiguous as a using (label) join _nodes as n using (node)
        where not n.is_known and l.node not in (select node from _cut);
        update _labels set label = node where label in (select label from _ambiguous);
        """
    )
    # 6. the customer of each component, then of each node
    con.execute(
        """
        create or replace temp table _node_customer as
        with comp as (
            select l.label, max(case when n.is_known then n.identifier end) as known
            from _labels as l join _nodes as n using (node)
            group by l.label
        ),
        named as (
            select c.label,
                   coalesce(c.known,
                            case when n.identifier in (select identifier from _nodes where is_known)
                                 then 'anon_' || md5(n.identifier_type || chr(31) || n.identifier)
                                 else n.identifier end) as customer_id,
                   c.known is not null as is_known_customer
            from comp as c join _nodes as n on n.node = c.label
        )
        select l.node, l.label, m.customer_id, m.is_known_customer
        from _labels as l join named as m using (label)
        """
    )
    # 7. the customer of each row: its own known customer, else its linking identifiers' component
    con.execute(
        """
        create or replace temp table _set_customer as
        select o.row_key,
               coalesce(any_value(o.row_customer),
                        arg_min(c.customer_id, c.label) filter (where o.node not in (select node from _cut)),
                        arg_min(c.customer_id, c.label)) as customer_id,
               any_value(o.row_customer) is not null as carries_customer, any_value(o.events) as events
        from _occ_n as o join _node_customer as c using (node)
        where o.row_key <= (select count(*) from _sets)
        group by o.row_key
        """
    )
    # 8. the events whose customer changes (most keep theirs: only those are written)
    con.execute(
        """
        create or replace temp table _event_customer as
        select e.event_id, e.customer_id as old_customer_id, c.customer_id
        from staging.events as e
        join _sets as s on s.identifiers = e.identifiers
        join _set_customer as c using (row_key)
        where e.customer_id <> c.customer_id
        """
    )
    con.execute(
        """
        insert into _affected_customers
        select old_customer_id from _event_customer
        union
        select customer_id from _event_customer
        """
    )
    moved = con.execute("select count(*) from _event_customer").fetchall()[0][0]
    if moved:
        con.execute(
            """
            update staging.events as e set customer_id = c.customer_id
            from _event_customer as c
            where e.event_id = c.event_id
            """
        )
    _write_identities(con)
    _write_conflicts(con)
    counts = con.execute(
        """
        select (select count(*) from core.identities),
               (select count(distinct customer_id) from _set_customer),
               (select coalesce(sum(events), 0) from _set_customer
                 where customer_id not in (select customer_id from _node_customer where is_known_customer)),
               (select coalesce(sum(events), 0) from _set_customer where not carries_customer
                  and customer_id in (select customer_id from _node_customer where is_known_customer)),
               (select count(*) from staging.identity_conflicts)
        """
    ).fetchall()[0]
    for table in ("_sets", "_occ", "_nodes", "_occ_n", "_cut", "_edges", "_labels", "_ambiguous", "_node_customer",
                  "_set_customer", "_event_customer"):
        con.execute(f"drop table if exists {table}")
    result = {
        "identifiers": counts[0],
        "customers": counts[1],
        "anonymous_events": counts[2],
        "stitched_events": counts[3],
        "conflicts": counts[4],
        "events_moved": moved,
        "iterations": iterations,
        "seconds": round(time.perf_counter() - started, 3),
    }
    log.info("identity: %s", result)
    return result


def _propagate(con: duckdb.DuckDBPyConnection) -> int:
    """_labels(node, label): the smallest node of each node's connected component over _edges, by
    min-label propagation with pointer jumping. Returns the number of rounds."""
    # only nodes with a link take part; every other node is a component of its own (its own label)
    con.execute("create or replace temp table _labels as select distinct a as node, a as label from _edges")
    rounds = _propagate_linked(con)
    con.execute("insert into _labels select node, node from _nodes where node not in (select node from _labels)")
    return rounds


def _propagate_linked(con: duckdb.DuckDBPyConnection) -> int:
    for rounds in range(1, MAX_ITERATIONS + 1):
        con.execute(
            """
            create or replace temp table _next as
            with hooked as (
                select l.node, least(l.label, coalesce(min(n.label), l.label)) as label
                from _labels as l
                left join _edges as e on e.a = l.node
                left join _labels as n on n.node = e.b
                group by l.node, l.label
            )
            select h.node, least(h.label, p.label) as label   -- jump: a node takes its label's label
            from hooked as h join hooked as p on p.node = h.label
            """
        )
        changed = con.execute(
            "select count(*) from _next join _labels using (node) where _next.label <> _labels.label"
        ).fetchall()[0][0]
        con.execute("drop table _labels; alter table _next rename to _labels")
        if not changed:
            return rounds
    raise RuntimeError(f"identity resolution did not converge in {MAX_ITERATIONS} rounds")


def _write_identities(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("delete from core.identities")
    con.execute(
        """
        insert into core.identities
        with seen as (  -- identity-map rows carry 0 events, event rows at least 1
            select node, sum(events) as events, min(first_seen_at) as first_seen_at, max(last_seen_at) as last_seen_at,
                   bool_or(events = 0) as in_identity_map
            from _occ_n
            group by node
        )
        select n.identifier_type, n.identifier, c.customer_id,
               case when n.is_known then 'customer'
                    when x.reason = 'shared_identifier' then 'shared'
                    when x.reason = 'ambiguous_link' then 'ambiguous'
                    when c.is_known_customer then 'linked'
                    else 'anonymous' end as status,
               s.events, s.first_seen_at, s.last_seen_at, s.in_identity_map
        from _nodes as n
        join _node_customer as c using (node)
        join seen as s using (node)
        left join _cut as x using (node)
        """
    )


def _write_conflicts(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("delete from staging.identity_conflicts")
    if not con.execute("select count(*) from _cut").fetchall()[0][0]:
        return
    con.execute(
        f"""
        insert into staging.identity_conflicts
        with event_rows as (
            select o.node, e.event_id as evidence, e.source
            from _occ_n as o
            join _sets as s using (row_key)
            join staging.events as e on e.identifiers = s.identifiers
            where o.node in (select node from _cut)
        ),
        map_rows as (
            select n.node, m.map_name || ':' || m.source_row as evidence, m.map_name as source
            from staging.identity_map as m join _nodes as n using (identifier_type, identifier)
            where n.node in (select node from _cut)
        ),
        rows as (select * from event_rows union all select * from map_rows)
        select n.identifier_type, n.identifier, x.reason, x.customer_ids,
               (select count(*) from rows as r where r.node = x.node) as rows,
               (select list(distinct r.source order by r.source) from rows as r where r.node = x.node) as sources,
               (select list(r.evidence order by r.evidence)[1:{EVIDENCE_LIMIT}] from rows as r where r.node = x.node) as evidence
        from _cut as x join _nodes as n using (node)
        """
    )
