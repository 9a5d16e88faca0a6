-- core.identities: every identifier seen, with the customer it resolves to (pipeline/identity.py,
-- run after ingest). Grain: identifier type and value. Contract: sql/core/identities.md
create table if not exists core.identities (
    identifier_type varchar not null,
    identifier      varchar not null,
    customer_id     varchar not null,
    status          varchar not null,   -- customer | linked | anonymous | shared | ambiguous
    events          bigint not null,
    first_seen_at   timestamptz,
    last_seen_at    timestamptz,
    in_identity_map boolean not null
);
