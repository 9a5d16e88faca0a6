-- core.journeys.status at the run's as-of time, for every journey (also those an incremental
-- run did not rebuild, whose status can move from open to dropped as time passes):
-- converted (reached the goal), dropped (no goal and the last event is more than the journey
-- timeout before as-of; with no timeout, every journey without the goal), else open.
-- The same rule as pipeline.journeys.build_journeys, to the microsecond.
-- the statuses before, to find the journeys whose status (and so terminal move) changes
create schema if not exists scratch;
create or replace table scratch.status_was as  -- in the file: on a large log, millions of journeys
select journey_id, customer_id, status from core.journeys;

update core.journeys
set status = case
    when converted_at is not null then 'converted'
    when (select value from meta.settings where key = 'journey_timeout_seconds') is null then 'dropped'
    when epoch_us(cast((select value from meta.settings where key = 'as_of') as timestamptz)) - epoch_us(ended_at)
         > cast((select value from meta.settings where key = 'journey_timeout_seconds') as bigint) * 1000000 then 'dropped'
    else 'open'
end;

-- the terminal move (core.moves: last_node -> upper(status)) follows its journey's status; the
-- customers of the journeys whose status changed get end_first_for_customer again, in journey
-- order (a customer's first move into DROPPED may be a journey that was OPEN; a customer's
-- journeys do not overlap, so their end times are in journey order)
update core.journeys as j
set end_first_for_customer = f.is_first
from (
    select journey_id,
           row_number() over (partition by customer_id, last_node, status order by ended_at, journey_id) = 1 as is_first
    from core.journeys
    where customer_id in (
        select w.customer_id from scratch.status_was as w join core.journeys as n using (journey_id)
        where n.status <> w.status
    )
) as f
where j.journey_id = f.journey_id
  and j.end_first_for_customer is distinct from f.is_first;

drop table scratch.status_was;
