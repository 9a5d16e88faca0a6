-- marts.bottleneck_journeys: the journeys that lost the most time at each of the top 10
-- bottlenecks of every segment (marts.bottlenecks), so an analyst can open them: for an edge,
-- the 1,000 moves along it with the longest waits; for a stage, the 1,000 visits with the
-- longest dwells (every one, when there are fewer). Every move of an edge is in core.moves.
-- Grain: level, segment_key, segment_value, kind, rank, then one row per kept move or visit.
-- Kept: the largest seconds first, equal seconds by journey_id (smallest first), so a rerun
-- keeps the same rows. A per-group top-n (min_by with n: a bounded heap per bottleneck) instead
-- of every move: that was a copy of nearly all of core.moves (12.5M rows at 10M events).
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
    where t.kind = 'edge' and m.wait_seconds is not null
),
stage_rows as (
    select t.level, t.segment_key, t.segment_value, t.kind, t.rank, v.journey_id, v.customer_id,
           (epoch_us(v.left_at) - epoch_us(v.entered_at)) / 1e6 as seconds
    from top as t
    join segments as s on s.segment_key = t.segment_key and s.segment_value = t.segment_value
    join core.visits as v on v.customer_id = s.customer_id and v.node = t.from_node
    where t.kind = 'stage'
),
kept as (
    select level, segment_key, segment_value, kind, rank,
           min_by({'journey_id': journey_id, 'customer_id': customer_id, 'seconds': seconds},
                  {'longest': -seconds, 'journey_id': journey_id}, 1000) as rows
    from (select * from edge_rows union all select * from stage_rows)
    group by level, segment_key, segment_value, kind, rank
)
-- no order by: readers order what they select (e.g. rank, seconds desc)
select level, segment_key, segment_value, kind, rank,
       r.journey_id, r.customer_id, r.seconds
from kept, unnest(kept.rows) as u(r);
