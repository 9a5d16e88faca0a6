-- marts.funnel: one row per segment and funnel stage (funnel.stages of the config,
-- default stages.order). mode 'strict': a journey counts at stage k when it reached
-- stages 1..k in that order (each stage's first step after the previous stage's);
-- mode 'any': when it reached all of stages 1..k in any order. With a window, every
-- counted stage must be reached within funnel.window of the first counted stage.
-- conversion_from_previous = journeys / journeys at the previous stage (the first
-- stage: / all journeys); conversion_from_start = journeys / all journeys.
-- Grain: segment_key, segment_value, stage_order. Contract: sql/marts/funnel.md
-- How many funnel stages each journey reached is core.journeys.funnel_reached, found by the
-- Polars build one bucket at a time (pipeline.journeys): stages are reached as a prefix, so
-- a journey counts at stage k when funnel_reached >= k. Journeys are counted per segment
-- and funnel_reached first (few groups), then summed over the stages at or past k.
create or replace table marts.funnel as
with journey_segments as (
    select s.segment_key, s.segment_value, j.funnel_reached
    from core.journeys as j
    join core.customer_segments as s using (customer_id)
),
by_reach as (
    select segment_key, segment_value, funnel_reached, count(*) as journeys
    from journey_segments
    group by all
),
totals as (
    select segment_key, segment_value, cast(sum(journeys) as bigint) as journeys
    from by_reach
    group by all
),
reached as (
    select b.segment_key, b.segment_value, f.stage_order, cast(sum(b.journeys) as bigint) as journeys
    from by_reach as b
    join meta.funnel_stages as f on b.funnel_reached >= f.stage_order
    group by all
),
grid as (
    select t.segment_key, t.segment_value, t.journeys as start_journeys, f.stage_order, f.stage
    from totals as t
    cross join meta.funnel_stages as f
),
counted as (
    select g.*, coalesce(r.journeys, 0) as journeys
    from grid as g
    left join reached as r using (segment_key, segment_value, stage_order)
)
select
    segment_key,
    segment_value,
    stage_order,
    stage,
    journeys,
    journeys / nullif(coalesce(lag(journeys) over w, start_journeys), 0) as conversion_from_previous,
    journeys / nullif(start_journeys, 0) as conversion_from_start
from counted
window w as (partition by segment_key, segment_value order by stage_order)
order by segment_key, segment_value, stage_order;
