-- marts.stage_stats: one row per level, segment and node (START and terminals excluded).
-- visits = entries into the node (consecutive repeats collapsed); repeats = the events
-- collapsed; exits = journeys whose last visit is the node; drop_offs = exits of dropped
-- journeys; drop_off_rate = drop_offs / journeys reaching the node.
-- Laws: transitions out to real nodes other than itself = visits - exits;
--       all transitions out (self-loop included) = visits + repeats - exits.
-- Grain: level, segment_key, segment_value, node. Contract: sql/marts/stage_stats.md
--
-- Memory and speed: the distinct journeys are a count of core.visits.is_first_in_journey (one
-- visit per journey and node, flagged by the build), in the same hash aggregate as the visits;
-- the dwell quantiles come from exact_quantiles (sql/marts/quantiles.sql), so each pass stays
-- within DuckDB's memory limit.

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
        count(*) filter (where v.is_first_in_journey) as journeys,
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
    n.journeys,
    n.visits,
    coalesce(x.exits, 0) as exits,
    coalesce(x.drop_offs, 0) as drop_offs,
    coalesce(x.drop_offs, 0) / n.journeys as drop_off_rate,
    q.p50 as dwell_p50_seconds,
    q.p90 as dwell_p90_seconds,
    n.repeats
from nodes as n
left join _node_exits as x using (segment_key, segment_value, node)
left join _node_dwell_quantiles as q using (segment_key, segment_value, node)
order by n.segment_key, n.segment_value, n.node;

drop table _node_exits;
drop table _node_dwell_quantiles;
