-- meta.funnel_stages: the ordered stages of the funnel (from stages.order in the config).
create table if not exists meta.funnel_stages (
    stage_order  integer not null primary key,
    stage        varchar not null
);
