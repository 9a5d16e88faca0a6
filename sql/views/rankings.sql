-- views.rankings: every ranked bottleneck (marts.bottlenecks: edges and stages by time lost)
-- and drop-off node (marts.drop_offs) of every segment, in one table, each with the rule
-- that ranks it (docs/metrics.md, Bottlenecks and Drop-offs) and a label for charts.
-- A row carries the numbers of its own ranking: time for edges and stages, drop-offs for
-- drop-off nodes; the other ranking's columns are null.
-- Grain: level, segment_key, segment_value, kind, rank. Contract: sql/views/rankings.md
create schema if not exists views;
create or replace view views.rankings as
with rules (kind, rule) as (
    values
        ('edge', 'time lost = journeys along the edge x median wait (wait_p50_seconds); '
                 || 'rank 1 = most time lost; ties: more journeys, then from_node, to_node'),
        ('stage', 'time lost = journeys reaching the node x median dwell (dwell_p50_seconds); '
                  || 'rank 1 = most time lost; ties: more journeys, then the node'),
        ('drop_off', 'drop-offs = dropped journeys whose last visit is the node (open journeys never count); '
                     || 'rank 1 = most drop-offs; ties: higher drop_off_rate, then the node')
),
bottlenecks as (
    select level, segment_key, segment_value, kind, rank, from_node, to_node, journeys,
           median_seconds, time_lost_seconds,
           cast(null as bigint) as drop_offs, cast(null as double) as drop_off_rate
    from marts.bottlenecks
),
drop_offs as (
    select level, segment_key, segment_value, 'drop_off' as kind, rank, node as from_node, node as to_node, journeys,
           cast(null as double) as median_seconds, cast(null as double) as time_lost_seconds,
           drop_offs, drop_off_rate
    from marts.drop_offs
),
ranked as (
    select * from bottlenecks
    union all
    select * from drop_offs
)
select
    r.level,
    r.segment_key,
    r.segment_value,
    r.kind,
    r.rank,
    case when r.kind = 'edge' then r.from_node || ' -> ' || r.to_node else r.from_node end as label,
    r.from_node,
    r.to_node,
    r.journeys,
    r.median_seconds,
    r.time_lost_seconds,
    r.drop_offs,
    r.drop_off_rate,
    u.rule
from ranked as r
join rules as u using (kind)
order by r.level, r.segment_key, r.segment_value, r.kind, r.rank;
