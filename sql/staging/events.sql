-- staging.events: one row per touchpoint after validation and dedupe (canonical, UTC).
-- Grain: event_id (unique). Contract: sql/staging/events.md
-- No primary key: its index costs more time and memory than the load itself at scale.
-- Ingest settles every event id to one row (pipeline/ingest.py), and the law
-- sql/checks/event_ids_unique.sql checks it on every build.
create table if not exists staging.events (
    event_id     varchar not null,
    customer_id  varchar not null,
    identifiers  map(varchar, varchar),
    ts           timestamptz not null,
    channel      varchar not null,
    event_type   varchar not null,
    source       varchar not null,
    source_file  varchar,
    source_row   bigint,
    properties   json,
    batch_id     varchar,
    content_hash varchar    -- md5 of the raw line: same id + same hash = a duplicate
);
