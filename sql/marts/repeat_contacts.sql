-- marts.repeat_contacts: one row per segment and channel pair (from_channel -> a contact
-- channel, repeat_contacts.channels in the config). A repeat contact is an event on a
-- contact channel within repeat_contacts.window after the journey's latest earlier event
-- on another channel (the touch that did not settle it). journeys_touched = journeys with
-- any event on from_channel; journeys = those with at least one repeat contact from it;
-- share = journeys / journeys_touched. Grain: segment_key, segment_value, from_channel, to_channel.
-- Memory: separate passes (the repeat contacts; the journeys touching each channel, from
-- core.journeys.channels, the distinct channels of each journey; the waits' medians by
-- exact_quantiles, sql/marts/quantiles.sql; the counts, per customer first), so each stays
-- within DuckDB's memory limit. No pass groups every step by journey: core.journeys.channels
-- already holds each journey's channels once.
create schema if not exists scratch;

create or replace table scratch.contacts as  -- in the file: a temp table stays in memory
with settings as (
    select cast(max(value) filter (where key = 'contact_window_seconds') as double) as window_seconds
    from meta.settings
),
contact_channels as (
    select unnest(cast(max(value) filter (where key = 'contact_channels') as varchar[])) as channel
    from meta.settings
),
with_contacts as (
    -- only journeys with an event on a contact channel can have a repeat contact: the
    -- window passes below run on those alone
    select journey_id
    from core.journeys
    where list_has_any(channels, (select list(channel) from contact_channels))
),
steps as (
    select journey_id, customer_id, step_index, ts, channel,
           lag(channel) over w as previous_channel,
           lag(ts) over w as previous_ts
    from core.steps
    where journey_id in (select journey_id from with_contacts)
    window w as (partition by journey_id order by step_index)
),
runs as (
    select *,
           sum(case when channel is distinct from previous_channel then 1 else 0 end)
               over (partition by journey_id order by step_index rows unbounded preceding) as run_no
    from steps
),
with_touch as (
    -- the latest earlier event on another channel = the event just before this channel run
    select *,
           max(case when channel is distinct from previous_channel then previous_ts end)
               over (partition by journey_id, run_no) as touch_at,
           max(case when channel is distinct from previous_channel then previous_channel end)
               over (partition by journey_id, run_no) as touch_channel
    from runs
),
contacts as (
    select journey_id, customer_id, touch_channel as from_channel, channel as to_channel,
           (epoch_us(ts) - epoch_us(touch_at)) / 1e6 as wait_seconds
    from with_touch
    where channel in (select channel from contact_channels)
      and touch_at is not null
      and (epoch_us(ts) - epoch_us(touch_at)) / 1e6 <= (select window_seconds from settings)
)
select * from contacts;

-- journeys touching each channel: one row per journey and channel it has an event on
create or replace temp table _touched as
select s.segment_key, s.segment_value, c.channel as from_channel, count(*) as journeys_touched
from (select customer_id, unnest(channels) as channel from core.journeys) as c
join core.customer_segments as s using (customer_id)
group by all;

-- the waits' medians, exact and within the memory limit (sql/marts/quantiles.sql)
create or replace temp view _contact_waits as
select {'segment_key': s.segment_key, 'segment_value': s.segment_value,
        'from_channel': c.from_channel, 'to_channel': c.to_channel} as grp,
       c.wait_seconds as x
from scratch.contacts as c
join core.customer_segments as s using (customer_id);

create or replace temp table _contact_wait_quantiles as
select grp.segment_key, grp.segment_value, grp.from_channel, grp.to_channel, p50
from exact_quantiles('_contact_waits');

drop view _contact_waits;

create or replace table marts.repeat_contacts as
with per_customer as (  -- journeys and contacts per customer first: no count(distinct) state
    select customer_id, from_channel, to_channel, count(*) as journeys, cast(sum(contacts) as bigint) as contacts
    from (select customer_id, journey_id, from_channel, to_channel, count(*) as contacts
          from scratch.contacts group by all)
    group by all
),
counted as (
    select s.segment_key, s.segment_value, c.from_channel, c.to_channel,
           cast(sum(c.journeys) as bigint) as journeys,
           cast(sum(c.contacts) as bigint) as contacts
    from per_customer as c
    join core.customer_segments as s using (customer_id)
    group by all
)
select
    c.segment_key, c.segment_value, c.from_channel, c.to_channel,
    t.journeys_touched, c.journeys, c.contacts,
    c.journeys / t.journeys_touched as share,
    q.p50 as wait_p50_seconds
from counted as c
join _touched as t using (segment_key, segment_value, from_channel)
left join _contact_wait_quantiles as q using (segment_key, segment_value, from_channel, to_channel)
order by c.segment_key, c.segment_value, c.from_channel, c.to_channel;

drop table scratch.contacts;
drop table _touched;
drop table _contact_wait_quantiles;
