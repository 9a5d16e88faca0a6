-- core.sessions: one row per session. Grain: session_id. Reads _build_sessions.
create or replace table core.sessions as
select
    's_' || substr(md5(s.session_key), 1, 16) as session_id,
    s.customer_id,
    'j_' || substr(md5(s.journey_key), 1, 16) as journey_id,
    s.started_at,
    s.ended_at,
    s.events,
    s.channels
from _build_sessions as s;
