-- core.steps: one row per event after labelling.
-- Grain: event_id. Reads _build_steps (the output of pipeline.journeys.build_journeys).
-- journey_id / session_id: deterministic hashes of customer id and first event id.
create or replace table core.steps as
select
    s.event_id,
    s.customer_id,
    'j_' || substr(md5(s.journey_key), 1, 16) as journey_id,
    's_' || substr(md5(s.session_key), 1, 16) as session_id,
    s.step_index,
    s.ts,
    s.channel,
    s.event_type,
    s.stage,
    s.rule_id,
    s.node
from _build_steps as s;
