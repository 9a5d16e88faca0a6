-- The HTML report's journey map (pipeline/html_report.py): one row per segment, stage and
-- channel, plus one per segment and stage with channel null (every channel):
--   journeys          journeys with an event at the stage on the channel;
--   entries           entries into the stage on the channel: events at the stage whose
--                     previous event in the journey is at another stage;
--   wait_p50_seconds  median wait before entering: from that previous event to the entering
--                     event (a journey's first event is no entry, so it has no wait);
--   drop_offs         dropped journeys whose last event is at the stage on the channel.
-- Leaves its rows in the temp table _journey_map.
--
-- Memory: no count(distinct) or quantile_cont, whose states DuckDB holds in memory and
-- cannot spill (at 100M events the one-query version ran out of the report's budget).
-- Journeys are counted per customer first (hash aggregates spill), the medians come from
-- exact_quantiles (sql/marts/quantiles.sql), and the entries are found in one window pass
-- over core.steps and kept in `report_scratch`: a database file the report attaches beside
-- its output (a temp table stays in memory), so this also runs on a read-only warehouse.

create or replace table report_scratch.entries as
with steps as (
    select customer_id, stage, channel, ts,
           lag(stage) over w as previous_stage,
           lag(ts) over w as previous_ts
    from core.steps
    window w as (partition by journey_id order by step_index)
)
select customer_id, stage, channel, (epoch_us(ts) - epoch_us(previous_ts)) / 1e6 as wait_seconds
from steps
where previous_stage is not null and stage <> previous_stage;

-- journeys reaching each stage on each channel (and on any), counted per customer first:
-- the journeys' distinct cells are kept in the scratch file, then counted in two passes,
-- one hash aggregate at a time (grouping sets over core.steps held two of them at once, and
-- a 100M-event run ran out of memory there)
create or replace table report_scratch.journey_cells as
select customer_id, journey_id, stage, channel
from core.steps
group by all;

create or replace table report_scratch.reach_customers as
select customer_id, stage, channel, false as any_channel, count(*) as journeys
from report_scratch.journey_cells
group by all;

insert into report_scratch.reach_customers
select customer_id, stage, null, true, count(*)
from (select customer_id, journey_id, stage from report_scratch.journey_cells group by all)
group by all;

drop table report_scratch.journey_cells;

create or replace temp table _map_reach as
select s.segment_key, s.segment_value, c.stage, c.channel, c.any_channel, cast(sum(c.journeys) as bigint) as journeys
from report_scratch.reach_customers as c
join core.customer_segments as s using (customer_id)
group by all;

drop table report_scratch.reach_customers;

-- drop-offs: the last event (step_index = events) of each dropped journey
create or replace temp table _map_drops as
select s.segment_key, s.segment_value, p.stage, p.channel, grouping(p.channel) = 1 as any_channel,
       count(*) as drop_offs
from core.journeys as j
join core.steps as p on p.journey_id = j.journey_id and p.step_index = j.events
join core.customer_segments as s on s.customer_id = j.customer_id
where j.status = 'dropped'
group by grouping sets ((s.segment_key, s.segment_value, p.stage, p.channel), (s.segment_key, s.segment_value, p.stage));

-- the waits' medians (and the entries: their count), exact and within the memory limit
create or replace temp view _map_waits as
select {'segment_key': s.segment_key, 'segment_value': s.segment_value, 'stage': e.stage,
        'channel': e.channel, 'any_channel': false} as grp,
       e.wait_seconds as x
from report_scratch.entries as e
join core.customer_segments as s using (customer_id)
union all
select {'segment_key': s.segment_key, 'segment_value': s.segment_value, 'stage': e.stage,
        'channel': null, 'any_channel': true} as grp,
       e.wait_seconds as x
from report_scratch.entries as e
join core.customer_segments as s using (customer_id);

create or replace temp table _map_waits_q as
select grp.segment_key, grp.segment_value, grp.stage, grp.channel, grp.any_channel, n, p50
from exact_quantiles('_map_waits');

drop view _map_waits;

create or replace temp table _journey_map as
select r.segment_key, r.segment_value, r.stage, r.channel, r.journeys,
       coalesce(q.n, 0) as entries,
       q.p50 as wait_p50_seconds,
       coalesce(d.drop_offs, 0) as drop_offs
from _map_reach as r
left join _map_waits_q as q
    on q.segment_key = r.segment_key and q.segment_value = r.segment_value and q.stage = r.stage
   and q.any_channel = r.any_channel and q.channel is not distinct from r.channel
left join _map_drops as d
    on d.segment_key = r.segment_key and d.segment_value = r.segment_value and d.stage = r.stage
   and d.any_channel = r.any_channel and d.channel is not distinct from r.channel;

drop table _map_reach;
drop table _map_drops;
drop table _map_waits_q;
drop table report_scratch.entries;
