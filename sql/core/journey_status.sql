-- core.journeys.status at the run's as-of time, for every journey (also those an incremental
-- run did not rebuild, whose status can move from open to dropped as time passes):
-- converted (reached the goal), dropped (no goal and the last event is more than the journey
-- timeout before as-of; with no timeout, every journey without the goal), else open.
-- The same rule as pipeline.journeys.build_journeys, to the microsecond.
update core.journeys
set status = case
    when converted_at is not null then 'converted'
    when (select value from meta.settings where key = 'journey_timeout_seconds') is null then 'dropped'
    when epoch_us(cast((select value from meta.settings where key = 'as_of') as timestamptz)) - epoch_us(ended_at)
         > cast((select value from meta.settings where key = 'journey_timeout_seconds') as bigint) * 1000000 then 'dropped'
    else 'open'
end;

-- the terminal moves (move_index = events + 1) whose status changed, found once: they follow
-- their journey's status, and their customers' terminal moves get is_first_for_customer again
-- below (a customer's first move into DROPPED may be a journey that was OPEN)
create schema if not exists scratch;
create or replace table scratch.status_changed as  -- in the file: on a large log, millions of moves
select m.journey_id, m.move_index, m.customer_id, upper(j.status) as to_node
from core.moves as m
join core.journeys as j on m.journey_id = j.journey_id and m.move_index = j.events + 1
where m.to_node <> upper(j.status);

update core.moves as m
set to_node = c.to_node
from scratch.status_changed as c
where m.journey_id = c.journey_id
  and m.move_index = c.move_index;

-- the first terminal move of each such customer and edge, in journey order (a customer's
-- journeys do not overlap, so their terminal moves' times are in journey order)
update core.moves as m
set is_first_for_customer = f.is_first
from (
    select journey_id, move_index,
           row_number() over (partition by customer_id, from_node, to_node order by ts, journey_id) = 1 as is_first
    from core.moves
    where to_node in ('CONVERTED', 'DROPPED', 'OPEN')
      and customer_id in (select customer_id from scratch.status_changed)
) as f
where m.journey_id = f.journey_id
  and m.move_index = f.move_index
  and m.is_first_for_customer is distinct from f.is_first;

drop table scratch.status_changed;
