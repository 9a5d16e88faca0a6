-- core.moves: one row per move of a journey through the graph: START -> first visit,
-- visit -> next visit, last visit -> CONVERTED / DROPPED / OPEN, and one self-loop
-- move per repeated event (node -> same node). At level event_type, the moves between
-- activities are exactly the directly-follows relation of process mining.
-- wait_seconds: from the last event of the visit left to the first event of the visit
-- entered (between the two events for a self-loop); null on START and terminal moves.
-- ts: the event moved into (START: the first event; terminal: the last event).
-- Grain: journey_id, move_index.
create or replace table core.moves as
with visits as (
    select * from core.visits
),
journeys as (
    select journey_id, status, started_at from core.journeys
),
steps as (
    select journey_id, customer_id, step_index, ts, node,
           lag(node) over w as previous_node,
           lag(ts) over w as previous_ts
    from core.steps
    window w as (partition by journey_id order by step_index)
),
between_visits as (
    select
        journey_id,
        customer_id,
        node as from_node,
        lead(node) over w as to_node,
        (epoch_us(lead(entered_at) over w) - epoch_us(left_at)) / 1e6 as wait_seconds,
        last_step_index as step_index,
        lead(entered_at) over w as ts
    from visits
    window w as (partition by journey_id order by visit_index)
),
starts as (
    select journey_id, customer_id, 'START' as from_node, node as to_node,
           cast(null as double) as wait_seconds, 0 as step_index, entered_at as ts
    from visits
    where visit_index = 1
),
ends as (
    select v.journey_id, v.customer_id, v.node as from_node, upper(j.status) as to_node,
           cast(null as double) as wait_seconds, v.last_step_index as step_index, v.left_at as ts
    from visits as v
    join journeys as j using (journey_id)
    where v.visit_index = (select max(visit_index) from visits as x where x.journey_id = v.journey_id)
),
repeats as (
    select journey_id, customer_id, node as from_node, node as to_node,
           (epoch_us(ts) - epoch_us(previous_ts)) / 1e6 as wait_seconds,
           step_index - 1 as step_index, ts
    from steps
    where node = previous_node
),
moves as (
    select * from starts
    union all
    select * from between_visits where to_node is not null
    union all
    select * from repeats
    union all
    select * from ends
),
indexed as (
select
    journey_id,
    cast(row_number() over (partition by journey_id order by step_index, to_node = 'START') as integer) as move_index,
    customer_id,
    from_node,
    to_node,
    wait_seconds,
    ts
from moves
)
-- the flags: the first move along an edge of the journey (by move_index), and of the customer
-- (journeys by start time, then move_index)
select i.*,
       row_number() over (partition by i.journey_id, i.from_node, i.to_node order by i.move_index) = 1
           as is_first_in_journey,
       row_number() over (partition by i.customer_id, i.from_node, i.to_node order by j.started_at, i.move_index) = 1
           as is_first_for_customer
from indexed as i
join journeys as j using (journey_id);
