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

-- the terminal move of a journey (move_index = events + 1) follows its status
update core.moves as m
set to_node = upper(j.status)
from core.journeys as j
where m.journey_id = j.journey_id
  and m.move_index = j.events + 1
  and m.to_node <> upper(j.status);
