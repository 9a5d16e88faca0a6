-- marts.transitions: one row per level, segment and edge of the transition graph.
-- Grain: level, segment_key, segment_value, from_node, to_node. Contract: sql/marts/transitions.md
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
        count(distinct m.journey_id) as journeys,
        count(distinct m.customer_id) as customers,
        quantile_cont(m.wait_seconds, 0.5) as wait_p50_seconds,
        quantile_cont(m.wait_seconds, 0.9) as wait_p90_seconds,
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
    journeys,
    customers,
    cast(transitions / sum(transitions) over (partition by segment_key, segment_value, from_node) as double) as probability,
    wait_p50_seconds,
    wait_p90_seconds,
    wait_mean_seconds
from edges
order by segment_key, segment_value, from_node, to_node;
