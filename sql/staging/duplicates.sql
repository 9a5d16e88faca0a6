-- staging.duplicates: one row per valid input row that lost to another row with the same
-- event id (the winner, earliest by file and line, is in staging.events). Kept so that a
-- later run that withdraws or adds files can settle every event id again exactly.
-- Grain: source_file, source_row. Contract: sql/staging/duplicates.md
create table if not exists staging.duplicates (
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
    content_hash varchar,
    raw_line     varchar,
    is_conflict  boolean not null   -- true: different content from the winner (also in staging.quarantine)
);
