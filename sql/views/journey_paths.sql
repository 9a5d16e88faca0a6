-- views.journey_paths: one row per journey, with its path through the transition graph as
-- text: the nodes of its visits (core.visits: consecutive repeats collapsed) in order, joined
-- by ' > ', e.g. 'awareness > consideration > purchase'. 'START > ' || path || ' > ' ||
-- upper(status) has the form of marts.likely_paths.path, so the two join.
-- channels: the distinct channels of the journey's events, sorted (as core.sessions.channels).
-- The path, visits and channels are columns of core.journeys, made by the Polars build one
-- bucket at a time: an ordered string_agg per journey here would be held in DuckDB's memory,
-- and exporting the view ran out of it on large logs.
-- Grain: journey_id. Contract: sql/views/journey_paths.md
create schema if not exists views;
create or replace view views.journey_paths as
select
    journey_id,
    customer_id,
    status,
    started_at,
    ended_at,
    sessions,
    events,
    visits,
    path,
    channels
from core.journeys;
