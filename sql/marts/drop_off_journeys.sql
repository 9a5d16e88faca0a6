-- marts.drop_off_journeys: the dropped journeys behind each of the top 10 drop-off nodes
-- of every segment (marts.drop_offs): journeys whose last visit is the node.
-- Grain: level, segment_key, segment_value, rank, journey_id.
create or replace table marts.drop_off_journeys as
with top as (
    select * from marts.drop_offs where rank <= 10 and drop_offs > 0
),
dropped as (  -- a dropped journey's terminal move leaves from the node of its last visit, at
               -- the time of its last event (core.moves.ts): no join to core.journeys
    select journey_id, customer_id, from_node as node, ts as ended_at
    from core.moves
    where to_node = 'DROPPED'
)
select t.level, t.segment_key, t.segment_value, t.rank, t.node, d.journey_id, d.customer_id, d.ended_at
from top as t
join core.customer_segments as s on s.segment_key = t.segment_key and s.segment_value = t.segment_value
join dropped as d on d.customer_id = s.customer_id and d.node = t.node;
-- no order by: a row per dropped journey of the top nodes (most dropped journeys on a large
-- log); sorting them ran out of memory at 100M events. Readers order what they select.
