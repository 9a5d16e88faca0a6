-- meta.source_files: one row per input file whose rows are in staging now, with the checksum
-- it had when it was read. An incremental run reads only files that are new or whose checksum
-- changed, and withdraws the rows of files that changed or disappeared.
create table if not exists meta.source_files (
    source       varchar not null,
    source_file  varchar not null primary key,
    bytes        bigint not null,
    sha256       varchar not null,
    run_id       varchar not null   -- the run that read it
);
