-- Macros for exact quantiles that stay within DuckDB's memory limit (made before the marts,
-- for the build's connection only).
--
-- exact_quantiles(source): for each group of `source` (the name of a table or view with
-- columns grp: the group, any type, and x: DOUBLE, null values left out), its
-- non-null values n, median p50 and 90th percentile p90: the continuous quantiles of
-- quantile_cont(x, [0.5, 0.9]), by linear interpolation between the values of 0-based ranks
-- floor((n - 1) q) and ceil((n - 1) q) (docs/metrics.md). They are exact: the same two
-- values are found; only the last bit of the interpolation's rounding may differ.
--
-- Why not quantile_cont: its state holds every value of a group in memory and cannot
-- spill to disk; at 100M events a group by over core.moves joined to the segments ran out
-- of DuckDB's memory. Here every step is a hash aggregate, hash join or window over few
-- rows, which spill:
--   1. count each group's values in narrow bins (about 0.3% of a value wide, on a log scale),
--      with each bin's least and greatest value;
--   2. a running count over the bins finds the bin of each wanted rank; a bin whose values
--      are all equal gives its value there;
--   3. a second pass over `source` keeps only the values in the other wanted bins and ranks
--      them within their bin.
-- Groups with no non-null value are not returned.
-- monotone in x, so bins are ordered ranges; 0 has a bin of its own (zero dwells are
-- common, and a bin of equal values needs no second pass)
create or replace temp macro quantile_bin(x) as
    cast(sign(x) * (1 + floor(log2(abs(x) + 1) * 256)) as integer);

create or replace temp macro exact_quantiles(source) as table
with binned as (
    select grp, quantile_bin(x) as bin, count(*) as n, min(x) as least_x, max(x) as greatest_x
    from query_table(source)
    where x is not null
    group by all
),
counted as (
    select *, sum(n) over (partition by grp order by bin rows between unbounded preceding and current row) as through
    from binned
),
sized as (
    select grp, cast(sum(n) as bigint) as n,
           cast(sum(n) - 1 as double) * 0.5 as at50,
           cast(sum(n) - 1 as double) * 0.9 as at90
    from binned
    group by grp
),
wanted as (  -- the 0-based ranks whose values are interpolated
    select distinct grp, unnest([floor(at50), ceil(at50), floor(at90), ceil(at90)]) as rank_
    from sized
),
targets as (  -- each wanted rank's bin and its rank within the bin
    select w.grp, w.rank_, c.bin, cast(w.rank_ - (c.through - c.n) as bigint) as rank_in_bin,
           c.least_x, c.greatest_x
    from wanted as w
    join counted as c on w.grp = c.grp and w.rank_ >= c.through - c.n and w.rank_ < c.through
),
mixed as (  -- bins whose values are not all equal: ranked in the second pass
    select distinct grp, bin from targets where least_x < greatest_x
),
ranked as (
    select v.grp, quantile_bin(v.x) as bin, v.x,
           row_number() over (partition by v.grp, quantile_bin(v.x) order by v.x) - 1 as rank_in_bin
    from query_table(source) as v
    semi join mixed as m on v.grp = m.grp and quantile_bin(v.x) = m.bin
    where v.x is not null
),
valued as (
    select t.grp, t.rank_, coalesce(r.x, t.least_x) as x
    from targets as t
    left join ranked as r
        on t.least_x < t.greatest_x and r.grp = t.grp and r.bin = t.bin and r.rank_in_bin = t.rank_in_bin
),
picked as (
    select s.grp, s.n, s.at50, s.at90,
           max(v.x) filter (where v.rank_ = floor(s.at50)) as lo50,
           max(v.x) filter (where v.rank_ = ceil(s.at50)) as hi50,
           max(v.x) filter (where v.rank_ = floor(s.at90)) as lo90,
           max(v.x) filter (where v.rank_ = ceil(s.at90)) as hi90
    from sized as s
    join valued as v using (grp)
    group by all
)
select grp, n,
       lo50 + (hi50 - lo50) * (at50 - floor(at50)) as p50,
       lo90 + (hi90 - lo90) * (at90 - floor(at90)) as p90
from picked;
