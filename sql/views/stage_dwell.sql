-- views.stage_dwell: how long journeys stay at each node, per segment: the dwell of every
-- visit (core.visits: left_at - entered_at, 0 for a visit whose events share one time),
-- summarised and counted in disjoint bands (none, under an hour, an hour to a day, a day
-- to a week, a week or more), so a dashboard can show the distribution behind the median.
-- Grain: level, segment_key, segment_value, node. Contract: sql/views/stage_dwell.md
create schema if not exists views;
create or replace view views.stage_dwell as
with settings as (
    select value as level from meta.settings where key = 'level'
),
visits as (
    select customer_id, journey_id, node,
           (epoch_us(left_at) - epoch_us(entered_at)) / 1e6 as dwell_seconds
    from core.visits
),
segments as (
    select customer_id, segment_key, segment_value from core.customer_segments
)
select
    (select level from settings) as level,
    s.segment_key,
    s.segment_value,
    v.node,
    count(*) as visits,
    any_value(st.journeys) as journeys,  -- distinct journeys at the node: marts.stage_stats counts them per customer first
    avg(cast(round(v.dwell_seconds * 1e6) as bigint)) / 1e6 as dwell_mean_seconds,  -- exact sum: reruns agree
    -- the quantiles of marts.stage_stats (exact, computed within the memory limit at build
    -- time): a quantile_cont here would hold every dwell of a node in memory when queried
    any_value(st.dwell_p50_seconds) as dwell_p50_seconds,
    any_value(st.dwell_p90_seconds) as dwell_p90_seconds,
    max(v.dwell_seconds) as dwell_max_seconds,
    count(*) filter (where v.dwell_seconds = 0) as visits_no_dwell,
    count(*) filter (where v.dwell_seconds > 0 and v.dwell_seconds < 3600) as visits_under_hour,
    count(*) filter (where v.dwell_seconds >= 3600 and v.dwell_seconds < 86400) as visits_hour_to_day,
    count(*) filter (where v.dwell_seconds >= 86400 and v.dwell_seconds < 604800) as visits_day_to_week,
    count(*) filter (where v.dwell_seconds >= 604800) as visits_over_week
from visits as v
join segments as s using (customer_id)
join marts.stage_stats as st
  on st.level = (select level from settings) and st.segment_key = s.segment_key
 and st.segment_value = s.segment_value and st.node = v.node
group by all
order by s.segment_key, s.segment_value, v.node;
