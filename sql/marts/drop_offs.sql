-- marts.drop_offs: where journeys are lost, ranked per segment: nodes by drop_offs
-- (exits of dropped journeys), ties by drop_off_rate. Open journeys are never drop-offs.
-- Grain: level, segment_key, segment_value, rank.
create or replace table marts.drop_offs as
select level, segment_key, segment_value,
       cast(row_number() over (partition by level, segment_key, segment_value
                               order by drop_offs desc, drop_off_rate desc, node) as integer) as rank,
       node, journeys, drop_offs, drop_off_rate
from marts.stage_stats
order by level, segment_key, segment_value, rank;
