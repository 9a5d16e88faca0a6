-- core.visits: one row per journey and visit to a graph node: consecutive events
-- of a journey at the same node collapse into one visit; repeats = events - 1.
-- Grain: journey_id, visit_index.
create or replace table core.visits as
with steps as (
    select journey_id, customer_id, step_index, ts, node
    from core.steps
),
marked as (
    select
        *,
        case when node is distinct from lag(node) over w then 1 else 0 end as is_entry
    from steps
    window w as (partition by journey_id order by step_index)
),
numbered as (
    select
        *,
        sum(is_entry) over (partition by journey_id order by step_index rows unbounded preceding) as visit_index
    from marked
),
grouped as (
select
    journey_id,
    cast(visit_index as integer) as visit_index,
    any_value(customer_id) as customer_id,
    any_value(node) as node,
    min(ts) as entered_at,
    max(ts) as left_at,
    count(*) as events,
    count(*) - 1 as repeats,
    min(step_index) as first_step_index,
    max(step_index) as last_step_index
from numbered
group by journey_id, visit_index
)
-- is_first_in_journey: the journey's first visit of the node
select *, row_number() over (partition by journey_id, node order by visit_index) = 1 as is_first_in_journey
from grouped;
