-- marts.funnel: one row per segment and funnel stage (funnel.stages of the config,
-- default stages.order). mode 'strict': a journey counts at stage k when it reached
-- stages 1..k in that order (each stage's first step after the previous stage's);
-- mode 'any': when it reached all of stages 1..k in any order. With a window, every
-- counted stage must be reached within funnel.window of the first counted stage.
-- conversion_from_previous = journeys / journeys at the previous stage (the first
-- stage: / all journeys); conversion_from_start = journeys / all journeys.
-- Grain: segment_key, segment_value, stage_order. Contract: sql/marts/funnel.md
create or replace table marts.funnel as
with recursive
settings as (
    select
        coalesce(max(value) filter (where key = 'funnel_mode'), 'strict') as mode,
        cast(max(value) filter (where key = 'funnel_window_seconds') as double) as window_seconds
    from meta.settings
),
steps as (
    select journey_id, step_index, ts, stage from core.steps
),
strict_reach (journey_id, stage_order, step_index, reached_at, started_at) as (
    select s.journey_id, 1, min(s.step_index), arg_min(s.ts, s.step_index), arg_min(s.ts, s.step_index)
    from steps as s
    join meta.funnel_stages as f on f.stage_order = 1 and s.stage = f.stage
    where (select mode from settings) = 'strict'
    group by s.journey_id
    union all
    select r.journey_id, r.stage_order + 1, min(s.step_index), arg_min(s.ts, s.step_index), any_value(r.started_at)
    from strict_reach as r
    join meta.funnel_stages as f on f.stage_order = r.stage_order + 1
    join steps as s
        on s.journey_id = r.journey_id
       and s.stage = f.stage
       and s.step_index > r.step_index
       and ((select window_seconds from settings) is null
            or (epoch_us(s.ts) - epoch_us(r.started_at)) / 1e6 <= (select window_seconds from settings))
    group by r.journey_id, r.stage_order
),
first_reach as (
    select s.journey_id, f.stage_order, min(s.ts) as reached_at
    from steps as s
    join meta.funnel_stages as f on s.stage = f.stage
    group by all
),
any_reach as (
    select fr.journey_id, k.stage_order
    from first_reach as fr
    join meta.funnel_stages as k on fr.stage_order <= k.stage_order
    where (select mode from settings) = 'any'
    group by fr.journey_id, k.stage_order
    having count(*) = k.stage_order
       and ((select window_seconds from settings) is null
            or (epoch_us(max(fr.reached_at)) - epoch_us(min(fr.reached_at))) / 1e6 <= (select window_seconds from settings))
),
reach as (
    select journey_id, stage_order from strict_reach
    union all
    select journey_id, stage_order from any_reach
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
