-- Law: START sends out every journey of the segment, and each terminal receives
-- exactly the journeys with its status. Returns the segments that break it.
with journeys as (
    select s.segment_key, s.segment_value, j.status, count(*) as n
    from core.journeys as j
    join core.customer_segments as s using (customer_id)
    group by all
),
expected as (
    select segment_key, segment_value, 'START' as node, sum(n) as n from journeys group by all
    union all
    select segment_key, segment_value, upper(status), n from journeys
),
actual as (
    select segment_key, segment_value, 'START' as node, sum(transitions) as n
    from marts.transitions where from_node = 'START' group by all
    union all
    select segment_key, segment_value, to_node, sum(transitions)
    from marts.transitions where to_node in ('CONVERTED', 'DROPPED', 'OPEN') group by all
)
select
    'start_and_terminals' as law,
    coalesce(e.segment_key, a.segment_key) || '=' || coalesce(e.segment_value, a.segment_value) as segment,
    coalesce(e.node, a.node) as node,
    format('{} journeys expected, {} in the graph', coalesce(e.n, 0), coalesce(a.n, 0)) as numbers
from expected as e
full join actual as a using (segment_key, segment_value, node)
where coalesce(e.n, 0) <> coalesce(a.n, 0);
