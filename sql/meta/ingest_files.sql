-- meta.ingest_files: one row per run and input file, with its checksum and row accounting.
-- Law: rows_read = loaded + duplicates + quarantined.
create table if not exists meta.ingest_files (
    run_id       varchar not null,
    source       varchar not null,
    source_file  varchar not null,
    bytes        bigint not null,
    sha256       varchar not null,
    rows_read    bigint not null,
    loaded       bigint not null,
    duplicates   bigint not null,
    quarantined  bigint not null
);
