-- staging.quarantine: one row per input row that could not become an event.
-- Grain: source_file, source_row. Contract: sql/staging/quarantine.md
create table if not exists staging.quarantine (
    source       varchar not null,
    source_file  varchar not null,
    source_row   bigint not null,
    raw_line     varchar,
    reason       varchar not null,
    detail       varchar,
    batch_id     varchar,
    event_id     varchar    -- set for duplicate_event_id rows
);
