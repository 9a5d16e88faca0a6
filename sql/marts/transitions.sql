-- marts.transitions: one row per level, segment and edge of the transition graph.
-- Grain: level, segment_key, segment_value, from_node, to_node. Contract: sql/marts/transitions.md
--
-- Memory and time: each pass over core.moves stays within DuckDB's memory limit at 100M+
-- events. The counts, distinct counts and mean wait take one pass, grouping first per journey
-- and per customer (hash aggregates spill to disk), so the join to the segments has a row per
-- customer and edge, not one per move; the quantiles take two (exact_quantiles,
-- sql/marts/quantiles.sql).
create schema if not exists scratch;

-- one pass over core.moves, grouped per journey then per customer (hash aggregates spill to
-- disk): for each customer and edge, its journeys, its moves and their waits' sum in whole
-- microseconds (an exact integer sum, so reruns agree to the last bit) and count
create or replace table scratch.edge_customers as  -- a table in the file (a temp table stays in memory)
select customer_id, from_node, to_node, count(*) as journeys, cast(sum(moves) as bigint) as transitions,
       sum(wait_us) as wait_us, cast(sum(waits) as bigint) as waits
from (
    select customer_id, journey_id, from_node, to_node, count(*) as moves,
           sum(cast(round(wait_seconds * 1e6) as bigint)) as wait_us, count(wait_seconds) as waits
    from core.moves
    group by all
)
group by all;

-- the same per segment: the customers' sums added up (each customer is in one value of a key)
create or replace temp table _edges as
select s.segment_key, s.segment_value, c.from_node, c.to_node,
       cast(sum(c.transitions) as bigint) as transitions,
       cast(sum(c.journeys) as bigint) as journeys, count(*) as customers,
       sum(c.wait_us) / nullif(sum(c.waits), 0) / 1e6 as wait_mean_seconds
from scratch.edge_customers as c
join core.customer_segments as s using (customer_id)
group by all;

drop table scratch.edge_customers;

-- the waits' quantiles, exact and within the memory limit (sql/marts/quantiles.sql)
create or replace temp view _edge_waits as
select {'segment_key': s.segment_key, 'segment_value': s.segment_value,
        'from_node': m.from_node, 'to_node': m.to_node} as grp,
       m.wait_seconds as x
from core.moves as m
join core.customer_segments as s using (customer_id);

create or replace temp table _edge_wait_quantiles as
select grp.segment_key, grp.segment_value, grp.from_node, grp.to_node, p50, p90
from exact_quantiles('_edge_waits');

drop view _edge_waits;

create or replace table marts.transitions as
with settings as (
    select value as level from meta.settings where key = 'level'
)
select
    (select level from settings) as level,
    segment_key,
    segment_value,
    from_node,
    to_node,
    e.transitions,
    e.journeys,
    e.customers,
    cast(e.transitions / sum(e.transitions) over (partition by segment_key, segment_value, from_node) as double) as probability,
    q.p50 as wait_p50_seconds,
    q.p90 as wait_p90_seconds,
    e.wait_mean_seconds
from _edges as e
left join _edge_wait_quantiles as q using (segment_key, segment_value, from_node, to_node)
order by segment_key, segment_value, from_node, to_node;

drop table _edges;
drop table _edge_wait_quantiles;
