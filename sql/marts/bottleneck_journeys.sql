-- marts.bottleneck_journeys: the journeys behind each of the top 10 bottlenecks of every
-- segment (marts.bottlenecks), so an analyst can open them: for an edge, every move of a
-- journey along it with its wait; for a stage, every visit with its dwell.
-- Grain: level, segment_key, segment_value, kind, rank, journey_id, seconds (one row per move or visit).
create or replace table marts.bottleneck_journeys as
with top as (
    select * from marts.bottlenecks where rank <= 10
),
segments as (
    select customer_id, segment_key, segment_value from core.customer_segments
),
edge_rows as (
    select t.level, t.segment_key, t.segment_value, t.kind, t.rank, m.journey_id, m.customer_id,
           m.wait_seconds as seconds
    from top as t
    join segments as s on s.segment_key = t.segment_key and s.segment_value = t.segment_value
    join core.moves as m
        on m.customer_id = s.customer_id and m.from_node = t.from_node and m.to_node = t.to_node
    where t.kind = 'edge'
),
stage_rows as (
    select t.level, t.segment_key, t.segment_value, t.kind, t.rank, v.journey_id, v.customer_id,
           (epoch_us(v.left_at) - epoch_us(v.entered_at)) / 1e6 as seconds
    from top as t
    join segments as s on s.segment_key = t.segment_key and s.segment_value = t.segment_value
    join core.visits as v on v.customer_id = s.customer_id and v.node = t.from_node
    where t.kind = 'stage'
)
-- no order by: the table has a row per move of the top edges (more rows than events on
-- a large log) and sorting them was half of its cost; readers order what they select
select * from edge_rows
union all
select * from stage_rows;
