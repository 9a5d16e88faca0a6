-- staging.identity_conflicts: identifiers that would have joined two or more known customers and
-- therefore link nothing (pipeline/identity.py). Grain: identifier. Contract: sql/staging/identity_conflicts.md
create table if not exists staging.identity_conflicts (
    identifier_type varchar not null,
    identifier      varchar not null,
    reason          varchar not null,   -- shared_identifier | ambiguous_link
    customer_ids    varchar[] not null,
    rows            bigint not null,
    sources         varchar[],
    evidence        varchar[]
);
