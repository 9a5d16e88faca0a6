-- Law: staging.events holds one row per event id (ingest settles every id to its earliest
-- row; the table has no primary key). Returns the ids found more than once.
select
    'event_ids_unique' as law,
    any_value(source) as segment,
    event_id as node,
    format('{} rows in staging.events', count(*)) as numbers
from staging.events
group by event_id
having count(*) > 1;
