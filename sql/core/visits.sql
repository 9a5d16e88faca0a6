-- core.visits: one row per journey and visit to a graph node: consecutive events
-- of a journey at the same node collapse into one visit; repeats = events - 1.
-- Grain: journey_id, visit_index. Reads _build_visits (pipeline.journeys.derive_visits).
create or replace table core.visits as
select
    v.journey_id,
    v.visit_index,
    v.customer_id,
    v.node,
    v.entered_at,
    v.left_at,
    v.events,
    v.repeats,
    v.first_step_index,
    v.last_step_index,
    v.is_first_in_journey
from _build_visits as v;
