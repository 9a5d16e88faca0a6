-- core.steps: one row per event after labelling.
-- Grain: event_id. Reads _build_steps (pipeline.journeys.build_journeys, one bucket of
-- customers at a time, with ids attached by pipeline.marts.with_ids).
-- journey_id / session_id: 'j_' / 's_' + 16 hex digits of md5(customer id, U+001F, first event id).
-- from_node .. move_first_for_customer: the move into the step (the view core.moves lists them).
create or replace table core.steps as
select
    s.event_id,
    s.customer_id,
    s.journey_id,
    s.session_id,
    s.step_index,
    s.ts,
    s.channel,
    s.event_type,
    s.stage,
    s.rule_id,
    s.node,
    s.from_node,
    s.wait_seconds,
    s.move_first_in_journey,
    s.move_first_for_customer
from _build_steps as s;
