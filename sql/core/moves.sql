-- core.moves: one row per move of a journey through the graph: START -> first node, the
-- previous event's node -> this event's node for every later event (a self-loop when the
-- node repeats), and last node -> CONVERTED / DROPPED / OPEN. At level event_type, the
-- moves between activities are exactly the directly-follows relation of process mining.
-- move_index: the step_index of the event moved into; events + 1 for the terminal move.
-- wait_seconds: between the two events; null on START and terminal moves.
-- ts: the time of the event that makes the move (the event moved into; for the terminal move,
-- the journey's last event): the export dates moves by it without joining core.steps.
-- Grain: journey_id, move_index. Reads _build_moves (pipeline.journeys.derive_moves).
create or replace table core.moves as
select
    m.journey_id,
    m.move_index,
    m.customer_id,
    m.from_node,
    m.to_node,
    m.wait_seconds,
    m.ts,
    m.is_first_in_journey,
    m.is_first_for_customer
from _build_moves as m;
