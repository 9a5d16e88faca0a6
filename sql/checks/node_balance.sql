-- Law: at every real node of every segment graph, transitions in = transitions out
-- (self-loops count both ways). Returns the nodes that break it.
with edges as (
    select level, segment_key, segment_value, from_node, to_node, transitions from marts.transitions
),
inflow as (
    select level, segment_key, segment_value, to_node as node, sum(transitions) as n from edges group by all
),
outflow as (
    select level, segment_key, segment_value, from_node as node, sum(transitions) as n from edges group by all
)
select
    'node_balance' as law,
    coalesce(i.segment_key, o.segment_key) || '=' || coalesce(i.segment_value, o.segment_value) as segment,
    coalesce(i.node, o.node) as node,
    format('{} transitions in, {} out', coalesce(i.n, 0), coalesce(o.n, 0)) as numbers
from inflow as i
full join outflow as o using (level, segment_key, segment_value, node)
where coalesce(i.node, o.node) not in ('START', 'CONVERTED', 'DROPPED', 'OPEN')
  and coalesce(i.n, 0) <> coalesce(o.n, 0);
