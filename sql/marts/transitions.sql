-- marts.transitions: one row per level, segment and edge of the transition graph.
-- Grain: level, segment_key, segment_value, from_node, to_node. Contract: sql/marts/transitions.md
--
-- Memory: the distinct counts (journeys, customers) and the quantiles are computed in separate
-- passes, so each stays within DuckDB's memory limit at 100M+ events: the distinct counts
-- by grouping first per customer (hash aggregates spill to disk), the rest in one pass.
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
        quantile_cont(m.wait_seconds, [0.5, 0.9]) as wait_quantiles,  -- one sorted state for both
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
    wait_quantiles[1] as wait_p50_seconds,
    wait_quantiles[2] as wait_p90_seconds,
    wait_mean_seconds
from edges
join _edge_reach as r using (segment_key, segment_value, from_node, to_node)
order by segment_key, segment_value, from_node, to_node;

drop table _edge_reach;
