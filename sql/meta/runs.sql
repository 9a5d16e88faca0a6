-- meta.runs: one row per run of `journeys run` (or of a single step).
create table if not exists meta.runs (
    run_id          varchar not null primary key,
    command         varchar not null,
    started_at      timestamptz not null,
    finished_at     timestamptz,
    status          varchar not null,      -- running | succeeded | failed
    mode            varchar,               -- full | incremental (journeys run), null for a single step
    config_path     varchar,
    config_hash     varchar,
    package_version varchar,
    as_of           timestamptz,
    counts          json,                  -- rows at each step
    error           varchar
);
