-- marts.stage_stats: one row per level, segment and node (START and terminals excluded).
-- visits = entries into the node (consecutive repeats collapsed); repeats = the events
-- collapsed; exits = journeys whose last visit is the node; drop_offs = exits of dropped
-- journeys; drop_off_rate = drop_offs / journeys reaching the node.
-- Laws: transitions out to real nodes other than itself = visits - exits;
--       all transitions out (self-loop included) = visits + repeats - exits.
-- Grain: level, segment_key, segment_value, node. Contract: sql/marts/stage_stats.md
--
-- Memory: the distinct journeys are counted in a pass of their own, grouping first per
-- customer (hash aggregates spill to disk), and the dwell quantiles by exact_quantiles
-- (sql/marts/quantiles.sql), so each pass stays within DuckDB's memory limit.
create schema if not exists scratch;

create or replace table scratch.node_customers as  -- a table in the file (a temp table stays in memory): journeys per customer and node, before any join
select customer_id, node, count(*) as journeys
from (select customer_id, journey_id, node from core.visits group by all)
group by all;

create or replace temp table _node_reach as
select s.segment_key, s.segment_value, c.node, cast(sum(c.journeys) as bigint) as journeys
from scratch.node_customers as c
join core.customer_segments as s using (customer_id)
group by all;

drop table scratch.node_customers;

-- exits and drop-offs: a journey's terminal move (to CONVERTED, DROPPED or OPEN) leaves from
-- the node of its last visit
create or replace temp table _node_exits as
select s.segment_key, s.segment_value, m.from_node as node,
       count(*) as exits, count(*) filter (where m.to_node = 'DROPPED') as drop_offs
from core.moves as m
join core.customer_segments as s using (customer_id)
where m.to_node in ('CONVERTED', 'DROPPED', 'OPEN')
group by all;

-- the dwells' quantiles, exact and within the memory limit (sql/marts/quantiles.sql)
create or replace temp view _node_dwells as
select {'segment_key': s.segment_key, 'segment_value': s.segment_value, 'node': v.node} as grp,
       (epoch_us(v.left_at) - epoch_us(v.entered_at)) / 1e6 as x
from core.visits as v
join core.customer_segments as s using (customer_id);

create or replace temp table _node_dwell_quantiles as
select grp.segment_key, grp.segment_value, grp.node, p50, p90
from exact_quantiles('_node_dwells');

drop view _node_dwells;

create or replace table marts.stage_stats as
with segments as (
    select customer_id, segment_key, segment_value from core.customer_segments
),
settings as (
    select value as level from meta.settings where key = 'level'
),
nodes as (
    select
        s.segment_key,
        s.segment_value,
        v.node,
        count(*) as visits,
        cast(sum(v.repeats) as bigint) as repeats
    from core.visits as v
    join segments as s using (customer_id)
    group by all
)
select
    (select level from settings) as level,
    n.segment_key,
    n.segment_value,
    n.node,
    r.journeys,
    n.visits,
    coalesce(x.exits, 0) as exits,
    coalesce(x.drop_offs, 0) as drop_offs,
    coalesce(x.drop_offs, 0) / r.journeys as drop_off_rate,
    q.p50 as dwell_p50_seconds,
    q.p90 as dwell_p90_seconds,
    n.repeats
from nodes as n
join _node_reach as r using (segment_key, segment_value, node)
left join _node_exits as x using (segment_key, segment_value, node)
left join _node_dwell_quantiles as q using (segment_key, segment_value, node)
order by n.segment_key, n.segment_value, n.node;

drop table _node_reach;
drop table _node_exits;
drop table _node_dwell_quantiles;
