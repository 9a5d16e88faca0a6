-- core.moves (a view): one row per move of a journey through the graph: START -> first node,
-- the previous event's node -> this event's node for every later event (a self-loop when the
-- node repeats), and last node -> CONVERTED / DROPPED / OPEN. At level event_type, the
-- moves between activities are exactly the directly-follows relation of process mining.
-- move_index: the step_index of the event moved into; events + 1 for the terminal move.
-- wait_seconds: between the two events; null on START and terminal moves.
-- ts: the time of the event that makes the move (the event moved into; for the terminal move,
-- the journey's last event): the export dates moves by it without joining core.steps.
-- Grain: journey_id, move_index.
-- A view, not a table: each step carries the move into it and each journey its terminal move
-- (pipeline.journeys.with_moves), so the rows are not stored twice. Reading it is a scan of
-- core.steps and one of core.journeys, no window: the marts read it as fast as a stored table
-- (docs/adr/0004), and the build appends a quarter fewer bytes.
create or replace view core.moves as
select
    s.journey_id,
    cast(s.step_index as integer) as move_index,
    s.customer_id,
    s.from_node,
    s.node as to_node,
    s.wait_seconds,
    s.ts,
    s.move_first_in_journey as is_first_in_journey,
    s.move_first_for_customer as is_first_for_customer
from core.steps as s
union all
select
    j.journey_id,
    cast(j.events + 1 as integer) as move_index,
    j.customer_id,
    j.last_node as from_node,
    upper(j.status) as to_node,
    cast(null as double) as wait_seconds,
    j.ended_at as ts,
    true as is_first_in_journey,
    j.end_first_for_customer as is_first_for_customer
from core.journeys as j;
