-- staging.identity_map: the identifiers of every row of the [[identity.maps]] files (e.g. a CRM export),
-- long form; the identifiers of one row are linked. Grain: map row and identifier type.
-- Contract: sql/staging/identity_map.md
create table if not exists staging.identity_map (
    map_name        varchar not null,
    source_file     varchar not null,
    source_row      bigint not null,
    identifier_type varchar not null,
    identifier      varchar not null
);
