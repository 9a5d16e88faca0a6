-- Law: the funnel reconciles with the journeys: its first stage counts every journey
-- that reached that stage at all, no stage counts more journeys than the one before,
-- and none more than the journeys that reached the stage at all. Returns breaking rows.
-- The journeys that reached a stage at all are counted from a row per journey and stage (a
-- plain group-by, which DuckDB spills to disk), not with count(distinct), whose state is held
-- in memory: on 100M events that ran out of memory with DuckDB at 1 GiB. A journey belongs to
-- one customer, so its rows join its customer's segments once each.
with journey_stages as (
    select customer_id, journey_id, stage from core.steps group by all
),
reached_at_all as (
    select s.segment_key, s.segment_value, js.stage, count(*) as n
    from journey_stages as js
    join core.customer_segments as s using (customer_id)
    group by all
),
funnel as (
    select *, lag(journeys) over (partition by segment_key, segment_value order by stage_order) as previous
    from marts.funnel
)
select
    'funnel_reconciles' as law,
    f.segment_key || '=' || f.segment_value as segment,
    f.stage as node,
    format('funnel {} (previous stage {}), reached at all {}',
           f.journeys, coalesce(cast(f.previous as varchar), '-'), coalesce(r.n, 0)) as numbers
from funnel as f
left join reached_at_all as r using (segment_key, segment_value, stage)
where f.journeys > coalesce(r.n, 0)
   or f.journeys > coalesce(f.previous, f.journeys)
   or (f.stage_order = 1 and (select value from meta.settings where key = 'funnel_mode') is distinct from 'any'
       and (select value from meta.settings where key = 'funnel_window_seconds') is null
       and f.journeys <> coalesce(r.n, 0));
