-- staging.events: one row per touchpoint after validation and dedupe (canonical, UTC).
-- Grain: event_id (unique). Contract: sql/staging/events.md
create table if not exists staging.events (
    event_id     varchar not null primary key,
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
