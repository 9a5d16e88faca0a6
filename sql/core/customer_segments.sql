-- core.customer_segments: one row per customer with journeys and segment key, plus ('all', 'all').
-- A customer missing from the customers file (or with an empty value) is '(unknown)'.
-- Reads _segments_long (customer_id, segment_key, segment_value) made from the customers file.
create or replace table core.customer_segments as
with customers as (
    select distinct customer_id from core.journeys
),
keys as (
    select segment_key from meta.segment_keys
),
known as (
    select customer_id, segment_key, segment_value from _segments_long
)
select c.customer_id, 'all' as segment_key, 'all' as segment_value
from customers as c
union all
select c.customer_id, k.segment_key, coalesce(n.segment_value, '(unknown)') as segment_value
from customers as c
cross join keys as k
left join known as n
    on n.customer_id = c.customer_id and n.segment_key = k.segment_key;
