"""Sessionize, cut journeys and label stages: one pure function of customer histories.

`build_journeys` takes the canonical events of a set of customers (complete
histories: every event of each customer it sees) and returns the three core
tables. It reads nothing and writes nothing, never changes its input, and uses
vectorised Polars expressions only, so it can run on one bucket of customers
at a time, locally or inside a distributed engine.

Identifiers are returned as keys (customer id and the first event id of the
session or journey); sql/core/steps.sql, sessions.sql and journeys.sql turn
them into short md5-based ids, so ids are deterministic across reruns and
engines.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import datetime, timezone
from typing import Iterable

import polars as pl

from pipeline import schema
from pipeline.config import Config, StageRule

KEY_SEP = "\x1f"  # separates customer id and first event id inside a key
PATH_SEP = " > "  # between the nodes of a journey's path (core.journeys.path)
_PROPERTY_KEY = re.compile(r"^[A-Za-z0-9_]+$")


class BuildError(ValueError):
    """Options of the build step that cannot work; says what to fix."""


@dataclasses.dataclass(frozen=True)
class BuildSettings:
    """Everything the pure build step needs, as plain values (seconds; None = never)."""

    inactivity_timeout: int | None = 1800
    max_length: int | None = 86400
    channel_timeouts: dict[str, int | None] = dataclasses.field(default_factory=dict)
    journey_timeout: int | None = 30 * 86400
    goal_stage: str = "purchase"
    rules: tuple[StageRule, ...] = ()
    level: str = "stage"
    # the funnel (core.journeys.funnel_reached, counted by marts.funnel): its stages in order,
    # "strict" (in that order) or "any" (in any order), and the window from its first stage
    funnel_stages: tuple[str, ...] = schema.DEFAULT_STAGES
    funnel_mode: str = "strict"
    funnel_window: int | None = None

    @classmethod
    def from_config(cls, config: Config) -> "BuildSettings":
        return cls(
            inactivity_timeout=config.inactivity_timeout,
            max_length=config.max_length,
            channel_timeouts=dict(config.channel_timeouts),
            journey_timeout=config.journey_timeout,
            goal_stage=config.goal_stage,
            rules=config.rules,
            level=config.level,
            funnel_stages=tuple(config.funnel_stages or config.stage_order),
            funnel_mode=config.funnel_mode,
            funnel_window=config.funnel_window,
        )

    @property
    def reads_properties(self) -> bool:
        """Whether a stage rule matches on properties: if none does, the build reads no
        properties (real sources carry hundreds of bytes of them an event, which a bucket
        would otherwise hold, sort and copy: pipeline.buckets.PROPERTY_COPIES)."""
        return any(rule.properties for rule in self.rules)

    def check(self) -> None:
        if self.level not in schema.LEVELS:
            raise BuildError(f"level '{self.level}' is unknown; use one of {', '.join(schema.LEVELS)}")
        for name, v in [
            ("inactivity_timeout", self.inactivity_timeout),
            ("max_length", self.max_length),
            ("journey_timeout", self.journey_timeout),
            *((f"channel_timeouts.{ch}", t) for ch, t in self.channel_timeouts.items()),
        ]:
            if v is not None and v <= 0:
                raise BuildError(f"{name} must be positive seconds or None, got {v}")
        if self.funnel_mode not in ("strict", "any"):
            raise BuildError(f"funnel_mode '{self.funnel_mode}' is unknown; use strict or any")
        if self.funnel_window is not None and self.funnel_window < 0:
            raise BuildError(f"funnel_window must be seconds >= 0 or None, got {self.funnel_window}")
        for rule in self.rules:
            for key, _ in rule.properties:
                if not _PROPERTY_KEY.match(key):
                    raise BuildError(f"rule '{rule.id}': property name '{key}' must be letters, digits or _")


@dataclasses.dataclass(frozen=True)
class CoreTables:
    """The build output. The moves are not a table of their own: each step carries the move into
    it (from_node, wait_seconds and the move's flags) and each journey its terminal move
    (last_node, end_first_for_customer); sql/core/moves.sql is the view that lists them."""

    steps: pl.DataFrame
    sessions: pl.DataFrame
    journeys: pl.DataFrame
    visits: pl.DataFrame


def _micros(value: int | None) -> float:
    """A limit in seconds as microseconds (exact below 2**53), or infinity for None."""
    return float("inf") if value is None else float(value) * 1_000_000


# a customer's events in time order, ties by input position (source, file, row)
EVENT_ORDER = ("customer_id", "ts", "source", "source_file", "source_row")


def order_events(events: pl.DataFrame) -> pl.DataFrame:
    """Order each customer's events by time, ties by input position (source, file, row).

    Sorted by customer and time first; then only the rows that tie on both are ordered by the
    whole key, and put back into the places the ties hold (those places hold the same customer
    and time whatever the order among them). The source and file names are long strings: as
    keys of every row they took half of a bucket's sort, and they decide the order of few rows
    (1.2% of the benchmark's events). With ties in most rows, one sort on the whole key."""
    ordered = events.sort(["customer_id", "ts"], nulls_last=True)
    same = (pl.col("customer_id").eq_missing(pl.col("customer_id").shift(1))
            & pl.col("ts").eq_missing(pl.col("ts").shift(1))).fill_null(False)
    tied = ordered.select(pl.int_range(0, pl.len(), dtype=pl.UInt32).filter(same | same.shift(-1).fill_null(False)))
    rows = tied.to_series()
    if rows.is_empty():
        return ordered
    if rows.len() * 2 > ordered.height:
        return events.sort(list(EVENT_ORDER), nulls_last=True)
    by_key = ordered[rows].with_columns(_row=rows).sort(list(EVENT_ORDER), nulls_last=True)["_row"]
    return ordered[pl.int_range(0, ordered.height, dtype=pl.UInt32, eager=True).scatter(rows, by_key)]


def split_sessions(events: pl.DataFrame, settings: BuildSettings) -> pl.DataFrame:
    """Number sessions and journeys on ordered events.

    A session starts at a customer's first event, after a gap over the
    inactivity timeout of the event's channel, at a new journey, or where the
    session would pass its maximum length (greedy from the session's first
    event). A journey starts at a customer's first event or after a gap over
    the journey timeout.
    """
    new_customer = pl.col("customer_id") != pl.col("customer_id").shift(1)
    # whole microseconds, so a gap exactly at a timeout never rounds over it
    gap = (pl.col("ts") - pl.col("ts").shift(1)).dt.total_microseconds().cast(pl.Float64)
    timeouts = {ch: _micros(t) for ch, t in settings.channel_timeouts.items()}
    timeout = pl.col("channel").replace_strict(timeouts, default=_micros(settings.inactivity_timeout), return_dtype=pl.Float64)
    df = events.with_columns(
        _first=new_customer.fill_null(True),
        _gap=gap,
    ).with_columns(
        _new_journey=pl.col("_first") | (pl.col("_gap") > _micros(settings.journey_timeout)),
    ).with_columns(
        _new_session=pl.col("_new_journey") | (pl.col("_gap") > timeout),
    )
    if settings.max_length is not None:
        df = _cut_long_sessions(df, _micros(settings.max_length))
    return df.with_columns(
        _journey_no=pl.col("_new_journey").cum_sum(),
        _session_no=pl.col("_new_session").cum_sum(),
    ).drop("_first", "_gap", "_new_journey", "_new_session")


def _cut_long_sessions(df: pl.DataFrame, max_length_us: float) -> pl.DataFrame:
    """Greedy maximum-length cut: each pass starts a new session at the first event
    that is more than the maximum length (microseconds) after its session's start.
    Passes repeat until no session is too long; each pass is vectorised (the loop is
    over passes, and there are as many as the most cuts any one session needs)."""
    while True:
        numbered = df.with_columns(_s=pl.col("_new_session").cum_sum())
        too_long = (pl.col("ts") - pl.col("ts").min().over("_s")).dt.total_microseconds() > max_length_us
        first_too_long = too_long & ~too_long.shift(1).over("_s").fill_null(False)
        cut = numbered.select(first_too_long.alias("cut")).to_series()
        if not cut.any():
            return df
        df = df.with_columns(_new_session=pl.col("_new_session") | cut)


def glob_to_regex(pattern: str) -> str:
    """A glob with * (any run) and ? (one character), anchored, as a regular expression."""
    parts = [".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern]
    return "^" + "".join(parts) + "$"


def _rule_condition(rule: StageRule, property_columns: dict[str, str]) -> pl.Expr:
    """Whether an event matches `rule`; each property's value read from its column
    (`property_columns`: property name -> column, as label_stages extracts them)."""
    cond = pl.lit(True)
    if rule.channel:
        cond = cond & pl.col("channel").is_in(list(rule.channel))
    if rule.event_type:
        exact = [e for e in rule.event_type if not any(ch in e for ch in "*?")]
        globs = [e for e in rule.event_type if e not in exact]
        match = pl.col("event_type").is_in(exact) if exact else pl.lit(False)
        for g in globs:
            match = match | pl.col("event_type").str.contains(glob_to_regex(g))
        cond = cond & match
    for key, values in rule.properties:
        cond = cond & pl.col(property_columns[key]).is_in(list(values)).fill_null(False)
    return cond


def label_stages(events: pl.DataFrame, rules: Iterable[StageRule]) -> pl.DataFrame:
    """Give each event the stage of the first rule it matches (and that rule's id);
    events no rule matches get stage 'unlabelled' and no rule id.

    Each property a rule names is read from the JSON once per event, whatever the number of
    rules naming it (it was read once per rule and output column: three rules on three
    properties took 1.4-2.3 s of a 1M-event bucket, now 1.1-1.4 s). Without property rules, the
    rules are judged once per distinct channel and event type (a vocabulary: a few hundred pairs
    against a million events) and joined back: a glob is a regular expression, which over every
    row took about 0.08 s per million events (20 globs: 1.6 s a bucket, now 0.09 s). With
    property rules they are judged row by row: a property can have a value per event (an order
    id, a URL), and then finding the distinct values and joining them back cost more than it
    saves (one rule on a unique property: 0.76-1.04 s that way, 0.37-0.47 s row by row)."""
    rules = list(rules)
    if not rules:
        return events.with_columns(stage=pl.lit(schema.UNLABELLED), rule_id=pl.lit(None, dtype=pl.String))
    keys = dict.fromkeys(key for rule in rules for key, _ in rule.properties)
    columns = {key: f"_property_{i}" for i, key in enumerate(keys)}
    stage = pl.when(_rule_condition(rules[0], columns)).then(pl.lit(rules[0].stage))
    rule_id = pl.when(_rule_condition(rules[0], columns)).then(pl.lit(rules[0].id))
    for rule in rules[1:]:
        cond = _rule_condition(rule, columns)
        stage = stage.when(cond).then(pl.lit(rule.stage))
        rule_id = rule_id.when(cond).then(pl.lit(rule.id))
    labels = {"stage": stage.otherwise(pl.lit(schema.UNLABELLED)),
              "rule_id": rule_id.otherwise(pl.lit(None, dtype=pl.String))}
    if not columns:
        pairs = events.select("channel", "event_type").unique().with_columns(**labels)
        return events.join(pairs, on=["channel", "event_type"], how="left", maintain_order="left", nulls_equal=True)
    # property names are letters, digits and _ (BuildSettings.check), so the path is literal
    read = events.with_columns(
        **{column: pl.col("properties").str.json_path_match(f"$.{key}") for key, column in columns.items()})
    return read.with_columns(**labels).drop(list(columns.values()))


def node_expr(level: str) -> pl.Expr:
    """The graph node of an event at a graph level."""
    if level == "stage":
        return pl.col("stage")
    if level == "event_type":
        return pl.col("event_type")
    return pl.concat_str([pl.col("channel"), pl.lit(":"), pl.col("stage")])


def build_journeys(events: pl.DataFrame | pl.LazyFrame, settings: BuildSettings, as_of: datetime) -> CoreTables:
    """Canonical events of complete customer histories -> core steps, sessions, journeys
    and visits, the steps and journeys carrying the moves (`with_moves`).

    `as_of` is the data's as-of time: a journey without the goal whose last
    event is more than the journey timeout before it is `dropped`, otherwise
    `open`. With no journey timeout, histories are taken as complete and a
    journey without the goal is `dropped`.

    Every table carries `journey_no` (and steps and sessions `session_no`): dense
    0-based numbers of the journeys and sessions in this call, in time order per
    customer, so ids can be attached by position (`with_ids`).
    """
    settings.check()
    as_of = as_of.astimezone(timezone.utc) if as_of.tzinfo else as_of.replace(tzinfo=timezone.utc)
    lazy = events.lazy() if isinstance(events, pl.DataFrame) else events
    ordered = order_events(lazy.select(list(schema.EVENTS_SCHEMA)).collect())
    df = split_sessions(ordered, settings)
    df = label_stages(df, settings.rules)
    steps = _number_steps(df, settings.level)
    # sessions and journeys are runs of contiguous rows: their first and last rows hold what a
    # group-by would find (time never decreases within a customer), read by two filters
    row = pl.int_range(0, pl.len(), dtype=pl.Int64)
    sessions = _runs(
        steps.with_columns(_row=row), "session_no",
        first={"session_no": "session_no", "session_key": "session_key", "customer_id": "customer_id",
               "journey_key": "journey_key", "journey_no": "journey_no", "started_at": "ts", "_first_row": "_row"},
        last={"ended_at": "ts", "_last_row": "_row"},
    ).select(pl.exclude("_first_row", "_last_row"),
             events=(pl.col("_last_row") - pl.col("_first_row") + 1).cast(pl.Int64),
             channels=_distinct_sorted(steps, "session_no", "channel"))
    journeys = _runs(
        steps, "journey_no",
        first={"journey_no": "journey_no", "journey_key": "journey_key", "customer_id": "customer_id",
               "started_at": "ts", "_first_session": "session_no"},
        last={"ended_at": "ts", "_last_session": "session_no", "events": "step_index", "last_node": "node"},
    ).select(
        "journey_no", "journey_key", "customer_id", "started_at", "ended_at",
        sessions=(pl.col("_last_session") - pl.col("_first_session") + 1).cast(pl.Int64),
        events=pl.col("events").cast(pl.Int64),
        converted_at=_first_at(steps, pl.col("stage") == settings.goal_stage),
        last_node="last_node",
    ).with_columns(funnel_reached(steps, settings.funnel_stages, settings.funnel_mode, settings.funnel_window))
    visits = derive_visits(steps)
    paths = _journey_paths(steps, visits)
    if not paths["journey_no"].equals(journeys["journey_no"]):  # cannot happen: both in journey_no order
        raise AssertionError("journey paths out of step with the journeys")
    journeys = pl.concat([journeys, paths.drop("journey_no")], how="horizontal")
    if settings.journey_timeout is None:
        lapsed = pl.lit(True)
    else:
        lapsed = (pl.lit(as_of) - pl.col("ended_at")).dt.total_microseconds() > settings.journey_timeout * 1_000_000
    journeys = journeys.with_columns(
        status=pl.when(pl.col("converted_at").is_not_null())
        .then(pl.lit("converted"))
        .when(lapsed)
        .then(pl.lit("dropped"))
        .otherwise(pl.lit("open"))
    )
    steps, journeys = with_moves(steps, journeys)
    steps = steps.select(
        "event_id", "customer_id", "journey_key", "session_key", "journey_no", "session_no", "step_index", "ts",
        "channel", "event_type", "stage", "rule_id", "node", *MOVE_COLUMNS,
    )
    return CoreTables(steps=steps, sessions=sessions, journeys=journeys, visits=visits)


def funnel_reached(steps: pl.DataFrame, stages: tuple[str, ...], mode: str, window: int | None) -> pl.Series:
    """How many funnel stages each journey reached (core.journeys.funnel_reached), a value per
    journey in journey_no order. `steps` in journey and step order (as `_number_steps` leaves
    them), so time never decreases within a journey.

    strict: stage 1 at the journey's first step of it; stage k at the first step of stage k
    after the step that reached stage k - 1 (and, with a window, at most `window` seconds
    after the step that reached stage 1). any: stages 1..k all reached, at any steps (with a
    window, their first steps within `window` seconds of each other). Either way the stages
    reached are 1..n, and n is returned.

    Vectorised: for each funnel stage, the row of its next step at or after every row (one
    backward fill over the rows); then a journey's stages are followed by gathers over one
    row per journey. The loop is over the funnel's stages, never over rows."""
    row = pl.int_range(0, pl.len(), dtype=pl.Int64)
    start = (pl.col("journey_no") != pl.col("journey_no").shift(1)).fill_null(True)
    bounds = steps.select(begin=row.filter(start))
    bounds = bounds.with_columns(end=pl.col("begin").shift(-1).fill_null(steps.height))
    n_journeys = bounds.height
    if not stages or not steps.height:
        return pl.repeat(0, n_journeys, dtype=pl.Int32, eager=True).alias("funnel_reached")
    begin, end = bounds["begin"], bounds["end"]
    ts = steps["ts"]
    last = steps.height - 1
    nexts = {stage: steps.select(pl.when(pl.col("stage") == stage).then(row).backward_fill()).to_series()
             for stage in dict.fromkeys(stages)}

    def next_step(stage: str, at: pl.Series) -> pl.Series:
        """The row of the journey's next step of `stage` at or after row `at` (null: none in the journey)."""
        found = nexts[stage].gather(at.clip(0, last))
        return pl.select(pl.when((at < end) & (found < end)).then(found)).to_series()

    reached = pl.repeat(0, n_journeys, dtype=pl.Int32, eager=True)
    ok = pl.repeat(True, n_journeys, dtype=pl.Boolean, eager=True)
    first_t = last_t = None
    at = None
    for k, stage in enumerate(stages):
        if mode == "strict":
            at = next_step(stage, begin if at is None else at + 1)
            t = ts.gather(at)
            first_t = t if first_t is None else first_t
            within = pl.repeat(True, n_journeys, eager=True) if window is None else (
                (t - first_t).dt.total_microseconds() <= window * 1_000_000)
        else:
            t = ts.gather(next_step(stage, begin))
            first_t = t if first_t is None else pl.select(pl.min_horizontal(first_t, t)).to_series()
            last_t = t if last_t is None else pl.select(pl.max_horizontal(last_t, t)).to_series()
            within = pl.repeat(True, n_journeys, eager=True) if window is None else (
                (last_t - first_t).dt.total_microseconds() <= window * 1_000_000)
        ok = ok & t.is_not_null() & within.fill_null(False)
        reached = reached + ok.cast(pl.Int32)
        if not ok.any():
            break
    return reached.alias("funnel_reached")


def _number_steps(df: pl.DataFrame, level: str) -> pl.DataFrame:
    """Journey and session keys and 0-based numbers, step_index and graph node of ordered,
    split, labelled events. Events of a journey are contiguous, so the first event id of a
    journey or session is carried forward from its first row (no group-by)."""
    row = pl.int_range(0, pl.len(), dtype=pl.Int64)
    journey_start = pl.col("_journey_no") != pl.col("_journey_no").shift(1)
    session_start = pl.col("_session_no") != pl.col("_session_no").shift(1)
    return df.with_columns(
        _jstart=journey_start.fill_null(True),
        _sstart=session_start.fill_null(True),
        _row=row,
    ).with_columns(
        journey_key=pl.concat_str([
            pl.col("customer_id"), pl.lit(KEY_SEP),
            pl.when(pl.col("_jstart")).then(pl.col("event_id")).forward_fill(),
        ]),
        session_key=pl.concat_str([
            pl.col("customer_id"), pl.lit(KEY_SEP),
            pl.when(pl.col("_sstart")).then(pl.col("event_id")).forward_fill(),
        ]),
        journey_no=(pl.col("_journey_no") - 1).cast(pl.Int64),
        session_no=(pl.col("_session_no") - 1).cast(pl.Int64),
        step_index=pl.col("_row") - pl.when(pl.col("_jstart")).then(pl.col("_row")).forward_fill() + 1,
        node=node_expr(level),
    ).drop("_jstart", "_sstart", "_row", "_journey_no", "_session_no")


def _runs(frame: pl.DataFrame, key: str, first: dict[str, str], last: dict[str, str]) -> pl.DataFrame:
    """One row per run of equal `key` (each key's rows contiguous), in order: columns named by
    `first`'s keys from the run's first row, then `last`'s from its last row (name -> column).
    Two filters, where a group-by would hash every row."""
    start = (pl.col(key) != pl.col(key).shift(1)).fill_null(True)
    end = (pl.col(key) != pl.col(key).shift(-1)).fill_null(True)
    firsts = frame.filter(start).select(**first)
    lasts = frame.filter(end).select(**last)
    return pl.concat([firsts, lasts], how="horizontal")


def _first_at(steps: pl.DataFrame, condition: pl.Expr) -> pl.Series:
    """A value per journey (journey_no order): the time of its first step where `condition`
    holds, null when none does. `steps` in journey and step order."""
    hits = steps.filter(condition).select("journey_no", "ts")
    hits = hits.filter((pl.col("journey_no") != pl.col("journey_no").shift(1)).fill_null(True))
    journeys = steps["journey_no"][-1] + 1 if steps.height else 0
    return pl.Series(dtype=steps.schema["ts"]).extend_constant(None, journeys).scatter(hits["journey_no"], hits["ts"])


def _distinct_sorted(frame: pl.DataFrame, key: str, column: str) -> pl.Series:
    """A list per run of `key` (in order; every run has a row): the run's distinct values of
    `column`, sorted. Deduplicated on the frame sorted by key and value: faster than a unique
    and a sort per group."""
    by_value = frame.select(key, column).sort(key, column)
    first = (pl.col(key) != pl.col(key).shift(1)).fill_null(True) | (pl.col(column) != pl.col(column).shift(1)).fill_null(True)
    return by_value.filter(first).group_by(key, maintain_order=True).agg(pl.col(column))[column]


def _journey_paths(steps: pl.DataFrame, visits: pl.DataFrame) -> pl.DataFrame:
    """visits, path (the node of each visit, joined by PATH_SEP) and channels (sorted, distinct)
    of every journey, a row per journey in journey_no order. `steps` in journey and step order,
    `visits` as derive_visits returns them. (Lists collected and joined after, and channels
    deduplicated on a sorted frame: faster than a string join, a unique or a sort per group.)"""
    paths = visits.group_by("journey_no", maintain_order=True).agg(
        visits=pl.len().cast(pl.Int64), path=pl.col("node"),
    ).with_columns(pl.col("path").list.join(PATH_SEP))
    channels = _distinct_sorted(steps, "journey_no", "channel").alias("channels")
    # both have one row per journey (every journey has a step), in journey_no order
    return paths.with_columns(channels)


def derive_visits(steps: pl.DataFrame) -> pl.DataFrame:
    """core.visits: consecutive steps of a journey at the same node collapse into one visit.
    `steps` must be in journey and step order (as `_number_steps` leaves them)."""
    new_journey = (pl.col("journey_no") != pl.col("journey_no").shift(1)).fill_null(True)
    entry = new_journey | (pl.col("node") != pl.col("node").shift(1)).fill_null(True)
    numbered = steps.select("journey_no", "journey_key", "customer_id", "node", "ts", "step_index",
                            _visit_no=entry.cum_sum(), _new_journey=new_journey)
    visits = _runs(
        numbered, "_visit_no",
        first={"journey_no": "journey_no", "journey_key": "journey_key", "_new_journey": "_new_journey",
               "customer_id": "customer_id", "node": "node", "entered_at": "ts", "first_step_index": "step_index"},
        last={"left_at": "ts", "last_step_index": "step_index"},
    )
    row = pl.int_range(0, pl.len(), dtype=pl.Int32)
    return visits.select(
        "journey_no", "journey_key",
        visit_index=row - pl.when(pl.col("_new_journey")).then(row).forward_fill() + 1,
        customer_id="customer_id", node="node", entered_at="entered_at", left_at="left_at",
        events=(pl.col("last_step_index") - pl.col("first_step_index") + 1).cast(pl.Int64),
        first_step_index="first_step_index", last_step_index="last_step_index",
    ).with_columns(
        repeats=pl.col("events") - 1,
        # the journey's first visit of the node: marts count distinct journeys per node with a
        # filter on it, not a group-by of every visit by journey (docs/metrics.md)
        is_first_in_journey=pl.struct("journey_no", "node").is_first_distinct(),
    )


# the move into each step, carried by core.steps (sql/core/moves.sql lists the moves from them)
MOVE_COLUMNS = ("from_node", "wait_seconds", "move_first_in_journey", "move_first_for_customer")


def with_moves(steps: pl.DataFrame, journeys: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The moves of every journey, as columns of its steps and of the journey (the view
    core.moves lists them). A move into every step: START -> the first step, else the previous
    step's node -> this step's node, a self-loop when they are equal (`from_node`;
    `wait_seconds`, the gap between the two events; null from START). One terminal move per
    journey, from its last node (`last_node`) to CONVERTED / DROPPED / OPEN, after its last
    step. `steps` in journey and step order, `journeys` in journey order.

    Exactly one move of each journey and edge, and of each customer and edge, is flagged: the
    first in journey and move order (`move_first_in_journey`, `move_first_for_customer` on the
    steps; `end_first_for_customer` on the journeys: a terminal move is its journey's only move
    along its edge, and its edge ends in a status, so never equals a step's). Distinct journeys
    and customers per edge are then counts of flags, not group-bys of every move
    (docs/metrics.md)."""
    first = pl.col("step_index") == 1
    steps = steps.with_columns(
        from_node=pl.when(first).then(pl.lit("START")).otherwise(pl.col("node").shift(1)),
        wait_seconds=pl.when(first).then(None).otherwise(
            (pl.col("ts") - pl.col("ts").shift(1)).dt.total_microseconds() / 1e6
        ),
    ).with_columns(
        move_first_in_journey=pl.struct("journey_no", "from_node", "node").is_first_distinct(),
        move_first_for_customer=pl.struct("customer_id", "from_node", "node").is_first_distinct(),
    )
    journeys = journeys.with_columns(
        end_first_for_customer=pl.struct("customer_id", "last_node", "status").is_first_distinct(),
    )
    return steps, journeys
