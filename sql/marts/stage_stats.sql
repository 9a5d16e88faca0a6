-- marts.stage_stats: one row per level, segment and node (START and terminals excluded).
-- visits = entries into the node (consecutive repeats collapsed); repeats = the events
-- collapsed; exits = journeys whose last visit is the node; drop_offs = exits of dropped
-- journeys; drop_off_rate = drop_offs / journeys reaching the node.
-- Laws: transitions out to real nodes other than itself = visits - exits;
--       all transitions out (self-loop included) = visits + repeats - exits.
-- Grain: level, segment_key, segment_value, node. Contract: sql/marts/stage_stats.md
create or replace table marts.stage_stats as
with visits as (
    select * from core.visits
),
last_visits as (
    select journey_id, max(visit_index) as last_visit_index from visits group by journey_id
),
journeys as (
    select journey_id, status from core.journeys
),
segments as (
    select customer_id, segment_key, segment_value from core.customer_segments
),
settings as (
    select value as level from meta.settings where key = 'level'
),
flagged as (
    select
        v.*,
        v.visit_index = l.last_visit_index as is_exit,
        j.status,
        (epoch_us(v.left_at) - epoch_us(v.entered_at)) / 1e6 as dwell_seconds
    from visits as v
    join last_visits as l using (journey_id)
    join journeys as j using (journey_id)
)
select
    (select level from settings) as level,
    s.segment_key,
    s.segment_value,
    f.node,
    count(distinct f.journey_id) as journeys,
    count(*) as visits,
    count(*) filter (where f.is_exit) as exits,
    count(*) filter (where f.is_exit and f.status = 'dropped') as drop_offs,
    count(*) filter (where f.is_exit and f.status = 'dropped') / count(distinct f.journey_id) as drop_off_rate,
    quantile_cont(f.dwell_seconds, 0.5) as dwell_p50_seconds,
    quantile_cont(f.dwell_seconds, 0.9) as dwell_p90_seconds,
    cast(sum(f.repeats) as bigint) as repeats
from flagged as f
join segments as s using (customer_id)
group by all
order by s.segment_key, s.segment_value, f.node;
