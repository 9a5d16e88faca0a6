-- marts.funnel: one row per segment and funnel stage (stages.order of the config).
-- journeys = journeys that reached every earlier funnel stage and then this one, in order
-- (each stage's first event after the previous stage's). conversion_from_previous =
-- journeys / journeys at the previous stage (the first stage: / all journeys);
-- conversion_from_start = journeys / all journeys of the segment.
-- Grain: segment_key, segment_value, stage_order. Contract: sql/marts/funnel.md
create or replace table marts.funnel as
with recursive
reach (journey_id, stage_order, reached_step_index) as (
    select s.journey_id, 1, min(s.step_index)
    from core.steps as s
    join meta.funnel_stages as f on f.stage_order = 1 and s.stage = f.stage
    group by s.journey_id
    union all
    select r.journey_id, r.stage_order + 1, min(s.step_index)
    from reach as r
    join meta.funnel_stages as f on f.stage_order = r.stage_order + 1
    join core.steps as s on s.journey_id = r.journey_id and s.stage = f.stage and s.step_index > r.reached_step_index
    group by r.journey_id, r.stage_order
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
