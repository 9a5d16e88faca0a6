-- meta.settings: the config values the SQL models read (graph level, goal stage, as-of, ...).
create table if not exists meta.settings (
    key    varchar not null primary key,
    value  varchar
);
