-- marts.segment_comparison: each segment value against the rest of its segment key
-- (every other value), per stage and for the whole journey (stage '(journey)'):
--   metric 'drop_off_rate':   journeys dropped with their last step at the stage / journeys reaching it
--                             ('(journey)': dropped / all journeys)
--   metric 'conversion_rate': converted journeys / journeys reaching the stage
--                             ('(journey)': converted / all journeys)
-- This file counts the cells (journeys, successes) and marks cells where either side has
-- fewer journeys than comparison.min_journeys as suppressed; pipeline/stats.py then tests
-- each unsuppressed cell against the typical rest of its key (the other values not shown
-- to differ, iterated to a fixed point), adds rest_journeys, rest_successes, rates, lift =
-- rate / rest_rate, p_value (two-sided pooled two-proportion z-test), p_adjusted
-- (Benjamini-Hochberg over every unsuppressed cell of the run), is_significant
-- (p_adjusted < comparison.alpha) and rest_excludes (values left out of the rest), and
-- nulls the rates of suppressed cells rather than showing 0% or 100%.
-- Grain: segment_key, segment_value, stage, metric.
create or replace table marts.segment_comparison as
with settings as (
    select cast(max(value) filter (where key = 'min_journeys') as integer) as min_journeys
    from meta.settings
),
last_steps as (
    select journey_id, arg_max(stage, step_index) as last_stage from core.steps group by journey_id
),
journeys as (
    select j.journey_id, j.customer_id, j.status, l.last_stage
    from core.journeys as j
    join last_steps as l using (journey_id)
),
reached as (
    select distinct journey_id, stage from core.steps
    union all
    select journey_id, '(journey)' from core.journeys
),
segments as (
    select customer_id, segment_key, segment_value from core.customer_segments where segment_key <> 'all'
),
cells as (
    -- per segment value, stage and metric: journeys (n) and successes (x)
    select s.segment_key, s.segment_value, r.stage, m.metric,
           count(*) as n,
           count(*) filter (where case m.metric
                                      when 'drop_off_rate' then j.status = 'dropped' and (r.stage = '(journey)' or j.last_stage = r.stage)
                                      else j.status = 'converted' end) as x
    from reached as r
    join journeys as j using (journey_id)
    join segments as s using (customer_id)
    cross join (values ('drop_off_rate'), ('conversion_rate')) as m(metric)
    group by all
),
with_rest as (
    select *,
           sum(n) over k - n as rest_n,
           sum(x) over k - x as rest_x
    from cells
    window k as (partition by segment_key, stage, metric)
),
flagged as (
    select *, n < (select min_journeys from settings) or rest_n < (select min_journeys from settings) as is_suppressed
    from with_rest
)
select
    segment_key, segment_value, stage, metric,
    n as journeys,
    x as successes,
    is_suppressed
from flagged
order by segment_key, segment_value, stage, metric;
