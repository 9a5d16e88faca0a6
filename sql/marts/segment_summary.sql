-- marts.segment_summary: one row per segment: journeys by status, conversion and
-- drop-off rates, and time to convert (converted_at - started_at of converted journeys).
-- conversion_rate = converted / journeys; drop_off_rate = dropped / journeys; open
-- journeys are in neither numerator. Grain: segment_key, segment_value.
--
-- Memory: the counts are summed per customer before the join to the segments (every
-- customer is counted once per segment, so customers = the customers joined), and the
-- time-to-convert quantiles come from exact_quantiles (sql/marts/quantiles.sql): every
-- step spills to disk, where a count(distinct) or quantile_cont state would not.
create schema if not exists scratch;

create or replace table scratch.customer_journeys as  -- in the file: a temp table stays in memory
select customer_id,
       count(*) as journeys,
       count(*) filter (where status = 'converted') as converted,
       count(*) filter (where status = 'dropped') as dropped,
       count(*) filter (where status = 'open') as open,
       -- whole microseconds: exact integer sums, so reruns agree to the last bit
       sum(epoch_us(converted_at) - epoch_us(started_at)) filter (where status = 'converted') as convert_us,
       count(converted_at) filter (where status = 'converted') as convert_timed,
       sum(events) as events,
       sum(sessions) as sessions
from core.journeys
group by customer_id;

create or replace temp view _convert_times as
select {'segment_key': s.segment_key, 'segment_value': s.segment_value} as grp,
       (epoch_us(j.converted_at) - epoch_us(j.started_at)) / 1e6 as x
from core.journeys as j
join core.customer_segments as s using (customer_id)
where j.status = 'converted';

create or replace temp table _convert_quantiles as
select grp.segment_key, grp.segment_value, p50, p90
from exact_quantiles('_convert_times');

drop view _convert_times;

create or replace table marts.segment_summary as
with counted as (
    select s.segment_key, s.segment_value,
           cast(sum(c.journeys) as bigint) as journeys,
           count(*) as customers,
           cast(sum(c.converted) as bigint) as converted,
           cast(sum(c.dropped) as bigint) as dropped,
           cast(sum(c.open) as bigint) as open,
           sum(c.convert_us) as convert_us,
           sum(c.convert_timed) as convert_timed,
           sum(c.events) as events,
           sum(c.sessions) as sessions
    from scratch.customer_journeys as c
    join core.customer_segments as s using (customer_id)
    group by all
)
select
    c.segment_key,
    c.segment_value,
    c.journeys,
    c.customers,
    c.converted,
    c.dropped,
    c.open,
    c.converted / c.journeys as conversion_rate,
    c.dropped / c.journeys as drop_off_rate,
    q.p50 as time_to_convert_p50_seconds,
    q.p90 as time_to_convert_p90_seconds,
    c.convert_us / c.convert_timed / 1e6 as time_to_convert_mean_seconds,
    c.events / c.journeys as events_per_journey,
    c.sessions / c.journeys as sessions_per_journey
from counted as c
left join _convert_quantiles as q using (segment_key, segment_value)
order by c.segment_key, c.segment_value;

drop table scratch.customer_journeys;
drop table _convert_quantiles;
