-- marts.transitions: one row per level, segment and edge of the transition graph.
-- Grain: level, segment_key, segment_value, from_node, to_node. Contract: sql/marts/transitions.md
--
-- Memory and speed: the distinct counts are counts of flags set by the build
-- (core.moves.is_first_in_journey / is_first_for_customer: one move per journey, or per
-- customer, and edge), so counts, distinct counts and the mean are one hash aggregate of few
-- groups; the quantiles come from exact_quantiles (sql/marts/quantiles.sql). Each pass stays
-- within DuckDB's memory limit at 100M+ events. (Before the flags, the distinct counts were a
-- group-by of every move by customer and journey: 10 s of the 10M-event build.)
create schema if not exists scratch;

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
        count(*) filter (where m.is_first_in_journey) as journeys,
        count(*) filter (where m.is_first_for_customer) as customers,
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
    q.p50 as wait_p50_seconds,
    q.p90 as wait_p90_seconds,
    wait_mean_seconds
from edges
left join _edge_wait_quantiles as q using (segment_key, segment_value, from_node, to_node)
order by segment_key, segment_value, from_node, to_node;

drop table _edge_wait_quantiles;
