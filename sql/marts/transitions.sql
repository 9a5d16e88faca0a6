-- marts.transitions: one row per level, segment and edge of the transition graph.
-- Grain: level, segment_key, segment_value, from_node, to_node. Contract: sql/marts/transitions.md
--
-- Memory: the distinct counts (journeys, customers), the quantiles and the rest are computed
-- in separate passes, so each stays within DuckDB's memory limit at 100M+ events: the
-- distinct counts by grouping first per customer (hash aggregates spill to disk), the
-- quantiles by exact_quantiles (sql/marts/quantiles.sql), the rest in one grouping.
create schema if not exists scratch;

create or replace table scratch.edge_customers as  -- a table in the file (a temp table stays in memory): journeys per customer and edge, before any join
select customer_id, from_node, to_node, count(*) as journeys
from (select customer_id, journey_id, from_node, to_node from core.moves group by all)
group by all;

create or replace temp table _edge_reach as
select s.segment_key, s.segment_value, c.from_node, c.to_node,
       cast(sum(c.journeys) as bigint) as journeys, count(*) as customers
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
with moves as (
    select * from core.moves
),
segments as (
    select customer_id, segment_key, segment_value from core.customer_segments
),
settings as (
    select value as level from meta.settings where key = 'level'
),
edges as (
    select
        s.segment_key,
        s.segment_value,
        m.from_node,
        m.to_node,
        count(*) as transitions,
        -- mean of whole microseconds: an exact integer sum, so reruns agree to the last bit
        avg(cast(round(m.wait_seconds * 1e6) as bigint)) / 1e6 as wait_mean_seconds
    from moves as m
    join segments as s using (customer_id)
    group by all
)
select
    (select level from settings) as level,
    segment_key,
    segment_value,
    from_node,
    to_node,
    transitions,
    r.journeys,
    r.customers,
    cast(transitions / sum(transitions) over (partition by segment_key, segment_value, from_node) as double) as probability,
    q.p50 as wait_p50_seconds,
    q.p90 as wait_p90_seconds,
    wait_mean_seconds
from edges
join _edge_reach as r using (segment_key, segment_value, from_node, to_node)
left join _edge_wait_quantiles as q using (segment_key, segment_value, from_node, to_node)
order by segment_key, segment_value, from_node, to_node;

drop table _edge_reach;
drop table _edge_wait_quantiles;
