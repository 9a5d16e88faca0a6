-- core.sessions: one row per session. Grain: session_id. Reads _build_sessions.
create or replace table core.sessions as
select
    s.session_id,
    s.customer_id,
    s.journey_id,
    s.started_at,
    s.ended_at,
    s.events,
    s.channels
from _build_sessions as s;
