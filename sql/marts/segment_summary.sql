-- marts.segment_summary: one row per segment: journeys by status, conversion and
-- drop-off rates, and time to convert (converted_at - started_at of converted journeys).
-- conversion_rate = converted / journeys; drop_off_rate = dropped / journeys; open
-- journeys are in neither numerator. Grain: segment_key, segment_value.
create or replace table marts.segment_summary as
with journeys as (
    select j.*, s.segment_key, s.segment_value,
           (epoch_us(j.converted_at) - epoch_us(j.started_at)) / 1e6 as convert_seconds
    from core.journeys as j
    join core.customer_segments as s using (customer_id)
)
select
    segment_key,
    segment_value,
    count(*) as journeys,
    count(distinct customer_id) as customers,
    count(*) filter (where status = 'converted') as converted,
    count(*) filter (where status = 'dropped') as dropped,
    count(*) filter (where status = 'open') as open,
    count(*) filter (where status = 'converted') / count(*) as conversion_rate,
    count(*) filter (where status = 'dropped') / count(*) as drop_off_rate,
    quantile_cont(convert_seconds, 0.5) as time_to_convert_p50_seconds,
    quantile_cont(convert_seconds, 0.9) as time_to_convert_p90_seconds,
    avg(cast(round(convert_seconds * 1e6) as bigint)) / 1e6 as time_to_convert_mean_seconds,  -- exact sum: reruns agree
    avg(events) as events_per_journey,
    avg(sessions) as sessions_per_journey
from journeys
group by all
order by segment_key, segment_value;
