# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Customer journeys: a walkthrough for analysts
#
# This notebook reads the warehouse that `journeys run` builds and answers the
# questions the pipeline exists for:
#
# 1. How many journeys converted, dropped off, or are still open?
# 2. How far does a segment get through the funnel?
# 3. Where does a segment lose the most time (its top bottleneck), and which
#    journeys are behind that number?
# 4. Do two segments drop off at different rates, and where?
# 5. What is the most likely route to converting, and to dropping off?
#
# It only reads: the warehouse is opened **read-only**, so it is safe to run
# while nobody else writes to it (a running `journeys run` builds a new file
# and swaps it in at the end). Every table and column used here is described
# in `docs/warehouse.md`, and every formula in `docs/metrics.md`.
#
# Open it with `jupytext --to notebook notebooks/walkthrough.py` (or the
# jupytext extension of Jupyter), after `make run` has built
# `build/journeys.duckdb`. To read another warehouse, set the environment
# variable `JOURNEYS_WAREHOUSE` to its path before starting Jupyter.

# %%
import os
from pathlib import Path

import duckdb
import matplotlib.pyplot as plt
import polars as pl

from pipeline.report import duration  # seconds as a short human duration: 90 -> "1.5m"


def repo_root(start: Path) -> Path:
    """The checkout's root (the folder with pyproject.toml and pipeline/), from here or a parent."""
    for folder in (start, *start.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "pipeline").is_dir():
            return folder
    return start


ROOT = repo_root(Path.cwd().resolve())
WAREHOUSE = Path(os.environ.get("JOURNEYS_WAREHOUSE") or ROOT / "build" / "journeys.duckdb")
if not WAREHOUSE.exists():
    raise FileNotFoundError(f"{WAREHOUSE}: no warehouse there. Run `make run` first, or set JOURNEYS_WAREHOUSE.")

con = duckdb.connect(str(WAREHOUSE), read_only=True)


def q(sql: str, params: list | None = None) -> pl.DataFrame:
    """Run one query on the warehouse and return a Polars DataFrame."""
    return con.sql(sql, params=params).pl()


def rows(sql: str, params: list | None = None) -> list[tuple]:
    """Run one query and return all its rows as tuples."""
    return con.execute(sql, params or []).fetchall()


pl.Config.set_tbl_rows(30)
pl.Config.set_fmt_str_lengths(120)
pl.Config.set_tbl_width_chars(200)
print(f"warehouse: {WAREHOUSE}")

# %% [markdown]
# ## Parameters
#
# Leave these as `None` to let the notebook choose from the data (the choice
# is explained where it is made), or set them to look at segments you care
# about. A segment is a pair (`segment_key`, `segment_value`): a column of the
# customers file and one of its values, e.g. `("region", "south")`.

# %%
FOCUS_SEGMENT = None  # e.g. ("region", "south"): whose funnel and bottleneck to study
COMPARE_SEGMENTS = None  # e.g. ("acquisition_channel", "social", "referral"): a key and two of its values
MIN_JOURNEYS = None  # segments with fewer journeys are too small to rank; None = comparison.min_journeys of the run

# %% [markdown]
# ## The run behind these numbers
#
# `meta.runs` records every run. The **as-of** time is the moment journeys are
# judged at: a journey that has not converted is *dropped* once its last event
# is more than the journey timeout before it, and *open* until then. By
# default it is the latest event time in the data. The **graph level** says
# what a node is: a stage (`awareness`, `purchase`, ...), an event type, or
# channel and stage.

# %%
settings = dict(rows("select key, value from meta.settings"))
if MIN_JOURNEYS is None:
    MIN_JOURNEYS = int(settings.get("min_journeys") or 30)
print(f"graph level: {settings['level']}, goal stage: {settings['goal_stage']}, as of: {settings['as_of']}")
q(
    """
    select run_id, command, status, started_at, finished_at, as_of
    from meta.runs
    order by started_at desc
    limit 3
    """
)

# %% [markdown]
# ## 1. Journeys by status
#
# A **journey** is a customer's run of events with no gap longer than the
# journey timeout (default 30 days). Its status:
#
# - `converted`: it reached the goal stage;
# - `dropped`: it did not, and the customer has been silent for longer than
#   the journey timeout (as of the as-of time);
# - `open`: it did not *yet*; it is still within the timeout. Open journeys
#   are never counted as drop-offs.
#
# `share` is the status's part of all journeys.

# %%
status = q(
    """
    select status,
           count(*) as journeys,
           round(count(*) / sum(count(*)) over (), 3) as share,
           round(avg(events), 1) as mean_events,
           round(median(epoch(ended_at) - epoch(started_at)) / 86400, 2) as median_days
    from core.journeys
    group by status
    order by journeys desc
    """
)
status

# %% [markdown]
# ## Choosing a segment to study
#
# Every mart has one set of rows for everyone (`all` = `all`) and one per
# segment. To find the segment where waiting hurts most, we take each
# segment's top **edge bottleneck** (rank 1 in `marts.bottlenecks`: the move
# between two steps with the most *time lost = journeys × median wait*) and
# divide its time lost by the segment's journeys: the time the worst wait
# costs an average journey of that segment. Segments with fewer than
# `MIN_JOURNEYS` journeys are left out, and so is `(unknown)`: the customers
# missing from the customers file (anonymous visitors, for instance).

# %%
candidates = q(
    """
    with sizes as (
        select s.segment_key, s.segment_value, count(*) as segment_journeys
        from core.journeys as j
        join core.customer_segments as s using (customer_id)
        group by all
    )
    select b.segment_key, b.segment_value, sizes.segment_journeys, b.from_node, b.to_node,
           b.journeys, b.median_seconds, b.time_lost_seconds,
           b.time_lost_seconds / sizes.segment_journeys as lost_per_journey_seconds
    from marts.bottlenecks as b
    join sizes using (segment_key, segment_value)
    where b.kind = 'edge' and b.rank = 1 and b.segment_key <> 'all'
      and b.segment_value <> '(unknown)' and sizes.segment_journeys >= ?
    order by lost_per_journey_seconds desc, b.segment_key, b.segment_value
    """,
    [MIN_JOURNEYS],
)
if FOCUS_SEGMENT is None:
    FOCUS_SEGMENT = (candidates["segment_key"][0], candidates["segment_value"][0]) if candidates.height else ("all", "all")
FOCUS_KEY, FOCUS_VALUE = FOCUS_SEGMENT
print(f"focus segment: {FOCUS_KEY}={FOCUS_VALUE}")
candidates.head(8)

# %% [markdown]
# ## 2. The funnel of the segment
#
# `marts.funnel` follows the stages in their configured order. A journey
# reaches a stage only if it reached every earlier stage first, in that order
# (each stage's first event after the previous one's).
#
# - `journeys`: journeys that got this far;
# - `conversion_from_previous`: the share of the previous stage's journeys
#   that reached this one (for the first stage: of all the segment's journeys);
# - `conversion_from_start`: the share of all the segment's journeys.
#
# The `all` column beside it is everyone, for comparison.

# %%
funnel = q(
    """
    select f.stage_order, f.stage, f.journeys,
           round(f.conversion_from_previous, 3) as conversion_from_previous,
           round(f.conversion_from_start, 3) as conversion_from_start,
           round(a.conversion_from_start, 3) as all_conversion_from_start
    from marts.funnel as f
    join marts.funnel as a
      on a.segment_key = 'all' and a.segment_value = 'all' and a.stage_order = f.stage_order
    where f.segment_key = ? and f.segment_value = ?
    order by f.stage_order
    """,
    [FOCUS_KEY, FOCUS_VALUE],
)
funnel

# %%
fig, ax = plt.subplots(figsize=(8, 3.5))
x = range(funnel.height)
ax.bar([i - 0.2 for i in x], funnel["all_conversion_from_start"].fill_null(0), width=0.4, label="all", color="#bbbbbb")
ax.bar([i + 0.2 for i in x], funnel["conversion_from_start"].fill_null(0), width=0.4, label=f"{FOCUS_KEY}={FOCUS_VALUE}", color="#1f77b4")
ax.set_xticks(list(x), funnel["stage"].to_list(), rotation=20)
ax.set_ylabel("share of journeys reaching the stage")
ax.set_ylim(0, 1)
ax.set_title("Funnel: conversion from the start")
ax.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 3. The segment's top bottleneck, and the journeys behind it
#
# A **wait** is the time from the last event at one step to the first event
# at the next step. A bottleneck's **time lost = journeys × median wait**: a
# wait that many journeys sit through outranks a longer one that few do.
# `kind = 'edge'` ranks moves between steps (a step to itself is a repeat,
# such as a second call about the same thing); `kind = 'stage'` ranks time
# spent inside a step (journeys × median dwell).

# %%
bottlenecks = q(
    """
    select kind, rank, from_node, to_node, journeys,
           round(median_seconds / 3600, 1) as median_hours,
           round(time_lost_seconds / 86400, 1) as time_lost_days
    from marts.bottlenecks
    where segment_key = ? and segment_value = ? and rank <= 5
    order by kind, rank
    """,
    [FOCUS_KEY, FOCUS_VALUE],
)
top = rows(
    """
    select from_node, to_node, journeys, median_seconds, time_lost_seconds
    from marts.bottlenecks
    where segment_key = ? and segment_value = ? and kind = 'edge' and rank = 1
    """,
    [FOCUS_KEY, FOCUS_VALUE],
)
if top:
    TOP_FROM, TOP_TO, top_journeys, top_median, top_lost = top[0]
    print(
        f"Top bottleneck in {FOCUS_KEY}={FOCUS_VALUE}: {TOP_FROM} -> {TOP_TO}: "
        f"{top_journeys} journeys x median wait {duration(top_median)} = {duration(top_lost)} lost"
    )
else:
    TOP_FROM = TOP_TO = None
    print(f"No edge with a wait in {FOCUS_KEY}={FOCUS_VALUE}: every journey there has a single step")
bottlenecks

# %% [markdown]
# Behind that number are journeys. `core.moves` has one row per move of every
# journey (from `START`, between steps, and into its end: `CONVERTED`,
# `DROPPED` or `OPEN`), with the wait of each move. Here are the journeys of
# the segment that waited longest on the top bottleneck, with their whole path
# (repeats of a step left out) and their status. (The pipeline also keeps the
# longest-waiting journeys behind each of the top 10 bottlenecks, and the
# journeys behind the top drop-offs, in `marts.bottleneck_journeys` and
# `marts.drop_off_journeys`;
# `journeys report --journeys` prints a few.)

# %%
behind = q(
    """
    with segment as (
        select customer_id from core.customer_segments
        where segment_key = ? and segment_value = ?
    ),
    on_edge as (
        select m.journey_id, max(m.wait_seconds) as wait_seconds
        from core.moves as m
        join segment using (customer_id)
        where m.from_node = ? and m.to_node = ?
        group by m.journey_id
    ),
    paths as (
        select m.journey_id,
               'START > ' || string_agg(m.to_node, ' > ' order by m.move_index) as path
        from core.moves as m
        where m.journey_id in (select journey_id from on_edge)
          and m.from_node <> m.to_node
        group by m.journey_id
    )
    select j.journey_id, j.customer_id, j.status, j.events,
           round(e.wait_seconds / 3600, 1) as wait_hours, p.path
    from on_edge as e
    join core.journeys as j using (journey_id)
    join paths as p using (journey_id)
    order by e.wait_seconds desc, j.journey_id
    limit 5
    """,
    [FOCUS_KEY, FOCUS_VALUE, TOP_FROM, TOP_TO],
)
behind

# %% [markdown]
# And the events of the first of them, from `core.steps`: one row per event,
# in journey order, with the stage rule that labelled it.

# %%
steps = (
    q(
        """
        select step_index, ts, channel, event_type, stage, rule_id, node, session_id
        from core.steps
        where journey_id = ?
        order by step_index
        """,
        [behind["journey_id"][0]],
    )
    if behind.height
    else pl.DataFrame()
)
steps.head(30)

# %% [markdown]
# ## 4. Two segments' drop-off rates
#
# A journey's **drop-off** happens at its last step, and only if it is
# `dropped` (open journeys are never drop-offs). `marts.segment_summary` has,
# per segment, the journeys by status and `drop_off_rate = dropped / journeys`.
#
# Unless `COMPARE_SEGMENTS` is set, we compare, within one segment key, the
# value with the highest drop-off rate against the biggest other value
# (values with at least `MIN_JOURNEYS` journeys, `(unknown)` left out).

# %%
by_value = q(
    """
    select segment_key, segment_value, journeys, converted, dropped, open,
           round(drop_off_rate, 3) as drop_off_rate, round(conversion_rate, 3) as conversion_rate
    from marts.segment_summary
    where segment_key <> 'all' and segment_value <> '(unknown)' and journeys >= ?
    order by drop_off_rate desc, journeys desc, segment_key, segment_value
    """,
    [MIN_JOURNEYS],
)
if COMPARE_SEGMENTS is None:
    if by_value.height:
        key, worst = by_value["segment_key"][0], by_value["segment_value"][0]
        others = by_value.filter((pl.col("segment_key") == key) & (pl.col("segment_value") != worst)).sort(
            ["journeys", "segment_value"], descending=[True, False]
        )
        COMPARE_SEGMENTS = (key, worst, others["segment_value"][0] if others.height else worst)
    else:
        COMPARE_SEGMENTS = ("all", "all", "all")
CMP_KEY, CMP_A, CMP_B = COMPARE_SEGMENTS

pair = q(
    """
    select segment_value, journeys, converted, dropped, open, drop_off_rate, conversion_rate,
           time_to_convert_p50_seconds / 86400 as days_to_convert_p50
    from marts.segment_summary
    where segment_key = ? and segment_value in (?, ?)
    order by segment_value <> ?, segment_value
    """,
    [CMP_KEY, CMP_A, CMP_B, CMP_A],
)
stats = {r["segment_value"]: r for r in pair.to_dicts()}
for value in dict.fromkeys((CMP_A, CMP_B)):
    r = stats[value]
    print(f"Drop-off rate {CMP_KEY}={value}: {r['drop_off_rate']:.1%} of {r['journeys']} journeys ({r['open']} still open)")
pair

# %% [markdown]
# **Is the difference real?** `marts.segment_comparison` compares each segment
# value with the rest of its key (all the other values together): `lift =
# rate / rest_rate`, a two-proportion z-test `p_value`, and `p_adjusted`,
# corrected (Benjamini-Hochberg) for the many comparisons a run makes.
# `is_significant` means `p_adjusted` is below `comparison.alpha` (0.05 by
# default). Cells with fewer than `comparison.min_journeys` journeys on either
# side are suppressed (`is_suppressed`, no rates). The stage `(journey)` is
# the whole journey; a stage row counts the journeys that reached that stage
# and drop-offs whose last step is there.

# %%
comparison = q(
    """
    select segment_value, stage, journeys, round(rate, 3) as rate, round(rest_rate, 3) as rest_rate,
           round(lift, 2) as lift, p_adjusted, is_significant, is_suppressed
    from marts.segment_comparison
    where segment_key = ? and segment_value in (?, ?) and metric = 'drop_off_rate'
    order by stage <> '(journey)', stage, segment_value <> ?
    """,
    [CMP_KEY, CMP_A, CMP_B, CMP_A],
)
for row in comparison.filter(pl.col("stage") == "(journey)").to_dicts():
    if row["is_suppressed"]:
        print(f"{CMP_KEY}={row['segment_value']}: too few journeys to compare")
    else:
        verdict = "significant" if row["is_significant"] else "not significant"
        print(
            f"{CMP_KEY}={row['segment_value']} vs the rest: drop-off rate {row['rate']:.1%} vs {row['rest_rate']:.1%}, "
            f"lift {row['lift']:.2f}x, adjusted p = {row['p_adjusted']:.2g} ({verdict})"
        )
comparison

# %% [markdown]
# **Where** do they drop off? `marts.stage_stats` has, per step, the journeys
# that reached it and the `drop_offs` there (dropped journeys whose last step
# it is); `drop_off_rate = drop_offs / journeys reaching the step`.

# %%
by_node = q(
    """
    select node, segment_value, journeys, drop_offs, round(drop_off_rate, 3) as drop_off_rate
    from marts.stage_stats
    where segment_key = ? and segment_value in (?, ?)
    order by node, segment_value
    """,
    [CMP_KEY, CMP_A, CMP_B],
)
wide = by_node.pivot(on="segment_value", index="node", values="drop_off_rate").fill_null(0)
for value in (CMP_A, CMP_B):
    if value not in wide.columns:
        wide = wide.with_columns(pl.lit(0.0).alias(value))
wide = wide.sort(CMP_A, descending=True).head(12)

fig, ax = plt.subplots(figsize=(9, 4))
x = range(wide.height)
ax.bar([i - 0.2 for i in x], wide[CMP_A], width=0.4, label=f"{CMP_KEY}={CMP_A}", color="#d62728")
ax.bar([i + 0.2 for i in x], wide[CMP_B], width=0.4, label=f"{CMP_KEY}={CMP_B}", color="#7f7f7f")
ax.set_xticks(list(x), wide["node"].to_list(), rotation=30, ha="right")
ax.set_ylabel("drop-off rate (drop-offs / journeys reaching)")
ax.set_title("Where journeys drop off, by step")
ax.legend()
fig.tight_layout()
plt.show()
by_node.filter(pl.col("drop_offs") > 0)

# %% [markdown]
# ## 5. Likely paths
#
# `marts.likely_paths` reads the transition graph as a chain of
# probabilities: for each end (`CONVERTED`, `DROPPED`, `OPEN`), the single
# most probable route from `START`, ignoring repeats of a step.
# `probability` is the product of the step-to-step probabilities along it
# (each = moves along the edge / all moves out of its step), so it is the
# typical route, not the share of journeys that took exactly that path.
# `steps` counts the steps between `START` and the end.

# %%
q(
    """
    select segment_key, segment_value, outcome, steps, round(probability, 4) as probability, path
    from marts.likely_paths
    where (segment_key = 'all') or (segment_key = ? and segment_value = ?)
    order by segment_key <> 'all', outcome
    """,
    [FOCUS_KEY, FOCUS_VALUE],
)

# %% [markdown]
# ## Where to go next
#
# - The whole transition graph of a segment is in `build/graph/<segment_key>=<segment_value>.graphml`
#   (open it in Gephi or yEd, or with `networkx.read_graphml`).
# - Dashboards read the same tables as Parquet from `build/export/`.
# - Every table and column: `docs/warehouse.md`; every formula: `docs/metrics.md`.

# %%
con.close()
