-- views.journey_paths: one row per journey, with its path through the transition graph as
-- text: the nodes of its visits (core.visits: consecutive repeats collapsed) in order, joined
-- by ' > ', e.g. 'awareness > consideration > purchase'. 'START > ' || path || ' > ' ||
-- upper(status) has the form of marts.likely_paths.path, so the two join.
-- channels: the distinct channels of the journey's events, sorted (as core.sessions.channels).
-- Grain: journey_id. Contract: sql/views/journey_paths.md
create schema if not exists views;
create or replace view views.journey_paths as
with journeys as (
    select journey_id, customer_id, status, started_at, ended_at, sessions, events
    from core.journeys
),
paths as (
    select journey_id,
           count(*) as visits,
           string_agg(node, ' > ' order by visit_index) as path
    from core.visits
    group by journey_id
),
channels as (  -- from the sessions' channel lists: a row per session, not per event
    select journey_id, list_sort(list_distinct(flatten(list(channels)))) as channels
    from core.sessions
    group by journey_id
)
select
    j.journey_id,
    j.customer_id,
    j.status,
    j.started_at,
    j.ended_at,
    j.sessions,
    j.events,
    p.visits,
    p.path,
    c.channels
from journeys as j
left join paths as p using (journey_id)
left join channels as c using (journey_id);
