-- Law: transitions out of a node to other real nodes = visits - exits, and all
-- transitions out (self-loop included) = visits + repeats - exits. Returns breaking nodes.
with out_edges as (
    select level, segment_key, segment_value, from_node as node,
           sum(transitions) filter (where to_node <> from_node and to_node not in ('CONVERTED', 'DROPPED', 'OPEN')) as onward,
           sum(transitions) filter (where to_node not in ('CONVERTED', 'DROPPED', 'OPEN')) as all_out
    from marts.transitions
    group by all
)
select
    'visits_minus_exits' as law,
    coalesce(s.segment_key, o.segment_key) || '=' || coalesce(s.segment_value, o.segment_value) as segment,
    coalesce(s.node, o.node) as node,
    format('visits {} - exits {} = {}, repeats {}, but {} onward and {} out incl. self-loops',
           coalesce(s.visits, 0), coalesce(s.exits, 0), coalesce(s.visits, 0) - coalesce(s.exits, 0),
           coalesce(s.repeats, 0), coalesce(o.onward, 0), coalesce(o.all_out, 0)) as numbers
from marts.stage_stats as s
full join out_edges as o using (level, segment_key, segment_value, node)
where coalesce(s.node, o.node) <> 'START'
  and (coalesce(o.onward, 0) <> coalesce(s.visits, 0) - coalesce(s.exits, 0)
       or coalesce(o.all_out, 0) <> coalesce(s.visits, 0) + coalesce(s.repeats, 0) - coalesce(s.exits, 0));
