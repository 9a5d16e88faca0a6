-- core.journeys: one row per journey. Grain: journey_id. Reads _build_journeys.
-- status: converted (reached the goal stage), dropped (no goal, last event more than
-- the journey timeout before the as-of time), open (still within the timeout).
-- visits, path, channels: made by the Polars build bucket by bucket, so views.journey_paths
-- needs no ordered aggregate (which DuckDB holds in memory) over core.visits.
-- funnel_reached: how many funnel stages (meta.funnel_stages) the journey reached by the
-- funnel's mode and window, found by the Polars build while the journey's steps are in
-- memory; marts.funnel counts journeys by it.
-- last_node, end_first_for_customer: the journey's terminal move (the view core.moves lists it).
create or replace table core.journeys as
select
    j.journey_id,
    j.customer_id,
    j.started_at,
    j.ended_at,
    j.status,
    j.sessions,
    j.events,
    j.converted_at,
    j.visits,
    j.path,
    j.channels,
    j.funnel_reached,
    j.last_node,
    j.end_first_for_customer
from _build_journeys as j;
