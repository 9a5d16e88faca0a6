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
    s.segment_key || '=' || s.segment_value as segment,
    s.node,
    format('visits {} - exits {} = {}, repeats {}, but {} onward and {} out incl. self-loops',
           s.visits, s.exits, s.visits - s.exits, s.repeats, coalesce(o.onward, 0), coalesce(o.all_out, 0)) as numbers
from marts.stage_stats as s
left join out_edges as o using (level, segment_key, segment_value, node)
where coalesce(o.onward, 0) <> s.visits - s.exits
   or coalesce(o.all_out, 0) <> s.visits + s.repeats - s.exits;
