-- meta.segment_keys: the customer columns that define segments (from [customers] segments).
create table if not exists meta.segment_keys (
    segment_key  varchar not null primary key
);
