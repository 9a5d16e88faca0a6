-- marts.bottlenecks: where journeys lose time, ranked per segment.
-- Edges (kind = 'edge', between two real nodes, self-loops included) by
-- time_lost_seconds = journeys on the edge x median wait of the edge;
-- nodes (kind = 'stage') by journeys reaching the node x median dwell in it.
-- rank 1 = most time lost within (level, segment, kind). START and terminal edges
-- carry no wait and are not ranked. Grain: level, segment_key, segment_value, kind, rank.
create or replace table marts.bottlenecks as
with edges as (
    select level, segment_key, segment_value, 'edge' as kind, from_node, to_node,
           journeys, wait_p50_seconds as median_seconds, journeys * wait_p50_seconds as time_lost_seconds
    from marts.transitions
    where wait_p50_seconds is not null
),
nodes as (
    select level, segment_key, segment_value, 'stage' as kind, node as from_node, node as to_node,
           journeys, dwell_p50_seconds as median_seconds, journeys * dwell_p50_seconds as time_lost_seconds
    from marts.stage_stats
),
ranked as (
    select *,
           row_number() over (partition by level, segment_key, segment_value, kind
                              order by time_lost_seconds desc, journeys desc, from_node, to_node) as rank
    from (select * from edges union all select * from nodes)
)
select level, segment_key, segment_value, kind, cast(rank as integer) as rank,
       from_node, to_node, journeys, median_seconds, time_lost_seconds
from ranked
order by level, segment_key, segment_value, kind, rank;
