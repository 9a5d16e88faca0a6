-- marts.funnel: one row per segment and funnel stage (funnel.stages of the config,
-- default stages.order). mode 'strict': a journey counts at stage k when it reached
-- stages 1..k in that order (each stage's first step after the previous stage's);
-- mode 'any': when it reached all of stages 1..k in any order. With a window, every
-- counted stage must be reached within funnel.window of the first counted stage.
-- conversion_from_previous = journeys / journeys at the previous stage (the first
-- stage: / all journeys); conversion_from_start = journeys / all journeys.
-- Grain: segment_key, segment_value, stage_order. Contract: sql/marts/funnel.md
-- Which funnel stages each journey reached comes from the table scratch.funnel_reach
-- (journey_id, stage_order), made just before by pipeline.marts.funnel_reach: in strict
-- mode one join per stage, each spilling to disk as needed, so memory stays bounded.
create or replace table marts.funnel as
with reach as (
    select journey_id, stage_order from scratch.funnel_reach
),
journey_segments as (
    select j.journey_id, s.segment_key, s.segment_value
    from core.journeys as j
    join core.customer_segments as s using (customer_id)
),
totals as (
    select segment_key, segment_value, count(*) as journeys
    from journey_segments
    group by all
),
reached as (
    select js.segment_key, js.segment_value, r.stage_order, count(*) as journeys
    from reach as r
    join journey_segments as js using (journey_id)
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
