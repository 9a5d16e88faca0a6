"""Bulk synthetic touchpoints for benchmarks (`journeys sample --events N`).

:func:`write_events` writes ``events`` omnichannel touchpoints as Parquet
files ``events/part-00000.parquet``, ... (one per chunk of at most
``chunk_events``) and a ``journeys.toml`` that reads them, in bounded memory
and without a Python loop per customer or per event: each chunk is drawn with
numpy arrays, and the only Python loops are over chunks and over the position
of an event within its session.

The shape, per customer (customers never span two chunks, and their ids are
unique across chunks):

* **activity** is heavy-tailed: a log-normal intensity draws the number of
  sessions (1 + Poisson), about 3.6 on average, a few customers with dozens;
* **sessions** follow one another after minutes (some under, some over the
  30-minute inactivity timeout, so a planned session sometimes merges with the
  one before), hours or days; now and then a gap over 30 days starts a new
  journey;
* **events in a session** walk a Markov chain over event types
  (:data:`CHAIN`) that starts where the session's place in its journey says
  (first sessions from ads, email and browsing, later ones closer to the
  cart, or after-sales) and leaves at every step with a drop-off probability:
  browse -> product view -> cart -> checkout -> purchase, with abandoned carts
  and checkouts; social, email, call-center and store touches around it;
* **times** within a session are seconds to minutes apart (log-normal), with
  about 2% exact ties with the previous event; in 2024 and 2025 (a very long
  history starts earlier), µs, UTC;
* **channels** follow the event type (web or app for the site, chosen per
  session; social, email, call_center, store for the others).

Rows of a chunk are in time order (as a log is written), and ``event_id`` is
the global row number, so the file order is also the order of ties: the
pipeline orders equal times by file and row (docs/metrics.md, "Order of
events"), and a peer that sorts by (customer_id, ts, event_id) meets the same
order.

The config makes journeys equal sessions (journey timeout = inactivity
timeout = 30 minutes, no maximum session length) at graph level
``event_type``, so the moves of ``marts.transitions`` between event types are
the directly-follows graph of the sessions, as a process-mining tool computes
it after sessionizing at 30 minutes.

The same seed writes the same rows (the files are byte-identical for the same
library versions).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import polars as pl

CHUNK_EVENTS = 5_000_000
US = 1
SECOND = 1_000_000 * US
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
PERIOD_END = int(datetime(2026, 1, 1, tzinfo=timezone.utc).timestamp()) * SECOND
PERIOD_DAYS = 730  # customers' histories lie in 2024 and 2025
MAX_SESSION_EVENTS = 200  # the walk is cut here (a bot-like session); the chain rarely gets near

# event types, their channel ("site" = web or app, chosen per session) and stage
EVENT_TYPES = (
    ("page_view", "site", "awareness"),
    ("search", "site", "awareness"),
    ("product_view", "site", "consideration"),
    ("add_to_cart", "site", "consideration"),
    ("checkout", "site", "consideration"),
    ("purchase", "site", "purchase"),
    ("ad_click", "social", "awareness"),
    ("like", "social", "awareness"),
    ("share", "social", "advocacy"),
    ("review", "social", "advocacy"),
    ("email_open", "email", "awareness"),
    ("email_click", "email", "consideration"),
    ("support_call", "call_center", "retention"),
    ("store_visit", "store", "consideration"),
    ("store_purchase", "store", "purchase"),
    ("store_return", "store", "retention"),
)
NAMES = tuple(e[0] for e in EVENT_TYPES)
CHANNELS = ("web", "social", "call_center", "store", "email", "app")
STAGES = ("awareness", "consideration", "purchase", "retention", "loyalty", "advocacy")
APP_SHARE = 0.3  # of site sessions that happen in the app

# The next event type after each one; what is left of 1 is the chance the session ends there.
CHAIN: dict[str, dict[str, float]] = {
    "page_view": {"page_view": 0.25, "search": 0.10, "product_view": 0.30},
    "search": {"product_view": 0.50, "search": 0.15, "page_view": 0.10},
    "product_view": {"product_view": 0.25, "add_to_cart": 0.22, "page_view": 0.10, "search": 0.10},
    "add_to_cart": {"checkout": 0.45, "product_view": 0.20, "add_to_cart": 0.05},
    "checkout": {"purchase": 0.62, "checkout": 0.05, "support_call": 0.03},
    "purchase": {"page_view": 0.05, "review": 0.02},
    "ad_click": {"page_view": 0.55, "product_view": 0.20, "like": 0.05},
    "like": {"like": 0.20, "share": 0.10, "ad_click": 0.20},
    "share": {"like": 0.10},
    "review": {"share": 0.10},
    "email_open": {"email_click": 0.50},
    "email_click": {"page_view": 0.30, "product_view": 0.50},
    "support_call": {"support_call": 0.15, "page_view": 0.05},
    "store_visit": {"store_purchase": 0.50, "store_visit": 0.05},
    "store_purchase": {"store_return": 0.03, "support_call": 0.02},
    "store_return": {},
}
# Where a session's walk starts, by its place in the journey.
STARTS: dict[str, dict[str, float]] = {
    "first": {"ad_click": 0.25, "email_open": 0.20, "page_view": 0.40, "search": 0.10, "store_visit": 0.05},
    "middle": {"page_view": 0.25, "product_view": 0.25, "search": 0.10, "email_click": 0.10, "like": 0.05,
               "support_call": 0.10, "store_visit": 0.05, "review": 0.05, "email_open": 0.05},
    "last": {"product_view": 0.30, "add_to_cart": 0.20, "page_view": 0.20, "store_visit": 0.10,
             "support_call": 0.10, "review": 0.05, "share": 0.05},
}
SESSIONS_PER_ACTIVITY = 2.6  # sessions = 1 + Poisson(this x log-normal(0, 1) activity)
NEW_JOURNEY_SHARE = 0.12  # of the gaps between a customer's sessions: over 30 days
NEAR_TIMEOUT_SHARE = 0.15  # of the other gaps: 5-55 minutes, around the inactivity timeout
HOURS_SHARE = 0.50  # hours apart; the rest days apart
TIE_SHARE = 0.02  # events at the same time as the one before


@dataclass(frozen=True)
class Written:
    """What write_events wrote."""

    config: Path
    files: list[Path]
    events: int
    customers: int


DRAW_BUCKETS = 1000  # probabilities are multiples of 1/DRAW_BUCKETS: a draw is one lookup


def _table(rows: dict[str, dict[str, float]]) -> np.ndarray:
    """A lookup table per key of `rows`: DRAW_BUCKETS cells holding the index of the next
    event type (in NAMES) or END, each as often as its probability says."""
    table = np.empty((len(rows), DRAW_BUCKETS), dtype=np.int8)
    for i, (key, nexts) in enumerate(rows.items()):
        counts = [round(p * DRAW_BUCKETS) for p in nexts.values()]
        assert all(abs(c - p * DRAW_BUCKETS) < 1e-6 for c, p in zip(counts, nexts.values())), key
        assert sum(counts) <= DRAW_BUCKETS, f"probabilities after {key} add up to more than 1"
        targets = [NAMES.index(name) for name in nexts] + [END]
        table[i] = np.repeat(targets, counts + [DRAW_BUCKETS - sum(counts)])
    return table


END = len(NAMES)
TRANSITIONS = _table({name: CHAIN[name] for name in NAMES})
START_TABLE = _table(STARTS)


def _draw(rng: np.random.Generator, table: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """One draw from each of `rows` of a lookup table."""
    return table[rows, rng.integers(0, DRAW_BUCKETS, len(rows), dtype=np.int16)]


def _plan(rng: np.random.Generator, customers: int) -> dict[str, np.ndarray]:
    """Planned sessions of `customers` customers, in customer order: their customer index, the gap
    after the customer's previous session (µs; 0 for the first), and the place in the journey
    (a row of STARTS: 0 first, 1 between, 2 last of several)."""
    activity = rng.lognormal(0.0, 1.0, customers)
    per_customer = 1 + rng.poisson(SESSIONS_PER_ACTIVITY * activity / np.exp(0.5))
    customer = np.repeat(np.arange(customers), per_customer)
    n = len(customer)
    first = np.r_[True, customer[1:] != customer[:-1]]
    kind = rng.random(n)
    near = NEW_JOURNEY_SHARE + (1 - NEW_JOURNEY_SHARE) * NEAR_TIMEOUT_SHARE
    hours = near + (1 - NEW_JOURNEY_SHARE) * HOURS_SHARE
    gap = np.select(
        [kind < NEW_JOURNEY_SHARE, kind < near, kind < hours],
        [rng.uniform(31, 120, n) * DAY, rng.uniform(5, 55, n) * MINUTE, rng.lognormal(np.log(6.0), 0.9, n) * HOUR],
        rng.uniform(1, 20, n) * DAY,
    ).astype(np.int64)
    gap[first] = 0
    new_journey = first | (kind < NEW_JOURNEY_SHARE)
    journey_end = np.r_[new_journey[1:], True]
    place = np.where(new_journey, 0, np.where(journey_end, 2, 1))
    return {"customer": customer, "gap": gap, "place": place, "first": first, "spread": rng.random(customers)}


def _walk(rng: np.random.Generator, place: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Walk the chain in every session at once: (session index, position, event type) per event, session-major."""
    state = _draw(rng, START_TABLE, place)
    active = np.arange(len(place))
    steps = []
    for _ in range(MAX_SESSION_EVENTS):
        steps.append((active, state))
        nxt = _draw(rng, TRANSITIONS, state)
        keep = nxt != END
        active, state = active[keep], nxt[keep]
        if not len(active):
            break
    # lay the steps out session by session: an event's row is its session's first row + its position
    lengths = np.zeros(len(place), dtype=np.int64)
    for active, _ in steps:
        lengths[active] += 1
    head = np.r_[0, np.cumsum(lengths)[:-1]]
    n = int(lengths.sum())
    session = np.repeat(np.arange(len(place)), lengths)
    position = np.arange(n) - np.repeat(head, lengths)
    etype = np.empty(n, dtype=np.int8)
    for k, (active, state) in enumerate(steps):
        etype[head[active] + k] = state
    return session, position, etype


def _within_group(values: np.ndarray, group_first: np.ndarray) -> np.ndarray:
    """Running sums of `values` restarting at every True of `group_first` (the first row of each group)."""
    total = np.cumsum(values)
    heads = np.flatnonzero(group_first)
    sizes = np.diff(np.r_[heads, len(values)])
    return total - np.repeat(total[heads] - values[heads], sizes)


def _chunk(rng: np.random.Generator, events: int, first_customer: int, first_event: int) -> tuple[pl.DataFrame, int]:
    """`events` events of new customers numbered from `first_customer`: (frame in time order, customers used)."""
    customers = max(16, int(events / 9))  # ~10 events a customer: a little more than needed
    while True:
        plan = _plan(rng, customers)
        session, position, etype = _walk(rng, plan["place"])
        if len(session) >= events:
            break
        customers *= 2
    session, position, etype = session[:events], position[:events], etype[:events]
    n = len(session)
    sessions = int(session[-1]) + 1
    customer = plan["customer"][:sessions]
    # in-session times: seconds to minutes apart, a few ties
    step = np.minimum(rng.lognormal(np.log(40.0), 1.1, n) * SECOND, 25 * MINUTE).astype(np.int64)
    step[rng.random(n) < TIE_SHARE] = 0
    session_first = position == 0
    step[session_first] = 0
    offset = _within_group(step, session_first)
    last = np.r_[np.flatnonzero(session_first)[1:] - 1, n - 1]
    duration = offset[last]
    # a session starts its gap after the end of the customer's previous one
    first = plan["first"][:sessions]
    lead = plan["gap"][:sessions] + np.r_[0, duration[:-1]]
    lead[first] = 0
    since_first = _within_group(lead, first)
    # each customer's history lies inside the period, ending at its end at the latest
    # (a history longer than the period starts before it)
    span = np.maximum.reduceat(since_first + duration, np.flatnonzero(first))
    room = np.maximum(PERIOD_DAYS * DAY - span, 0)
    begins = PERIOD_END - span - (plan["spread"][: len(span)] * room).astype(np.int64)
    starts = begins[customer] + since_first
    ts = starts[session] + offset
    # the site's events are on the web or in the app, one device per session
    site = np.array([c == "site" for _, c, _ in EVENT_TYPES])
    fixed = np.array([CHANNELS.index(c) if c != "site" else 0 for _, c, _ in EVENT_TYPES])
    in_app = rng.random(sessions) < APP_SHARE
    channel = np.where(site[etype], np.where(in_app[session], CHANNELS.index("app"), CHANNELS.index("web")),
                       fixed[etype])
    # text ids made once per customer, then gathered per event
    ids = pl.DataFrame({"n": np.arange(first_customer, first_customer + int(customer[-1]) + 1)}).select(
        pl.format("c{}", pl.col("n").cast(pl.String).str.zfill(10))
    ).to_series()
    order = np.argsort(ts, kind="stable")  # a log in time order; ties keep the walk's order
    frame = pl.DataFrame({
        "event_id": np.arange(first_event, first_event + n, dtype=np.int64),
        "customer_id": ids.gather(customer[session][order]),
        "ts": pl.Series(ts[order]).cast(pl.Datetime("us", "UTC")),
        "channel": pl.Series(CHANNELS).gather(channel[order]),
        "event_type": pl.Series(NAMES).gather(etype[order]),
    })
    return frame, int(customer[-1]) + 1


def write_events(out_dir: Path | str, events: int, seed: int = 7, chunk_events: int = CHUNK_EVENTS) -> Written:
    """Write `events` synthetic events as Parquet chunks under out_dir/events/ and out_dir/journeys.toml.

    Memory is bounded by the chunk size, not by `events`. Old part files in
    out_dir/events/ are removed first, so the glob reads exactly this data.
    """
    if events < 1:
        raise ValueError(f"events must be at least 1, not {events}")
    if chunk_events < 1:
        raise ValueError(f"chunk_events must be at least 1, not {chunk_events}")
    out = Path(out_dir)
    folder = out / "events"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("part-*.parquet"):
        old.unlink()
    files: list[Path] = []
    customer = written = 0
    for index, start in enumerate(range(0, events, chunk_events)):
        rng = np.random.default_rng([seed, index])
        frame, used = _chunk(rng, min(chunk_events, events - start), customer, start)
        path = folder / f"part-{index:05d}.parquet"
        frame.write_parquet(path, compression="zstd", compression_level=1, statistics=True)
        files.append(path)
        customer += used
        written += frame.height
    config = out / "journeys.toml"
    config.write_text(config_text(), encoding="utf-8")
    return Written(config=config, files=files, events=written, customers=customer)


def config_text() -> str:
    """The journeys.toml for the written events: sessions = journeys at 30 minutes, graph at event type."""
    by_stage: dict[str, list[str]] = {}
    for name, _, stage in EVENT_TYPES:
        by_stage.setdefault(stage, []).append(name)
    rules = "\n".join(
        f'[[stages.rules]]\nid = "{stage}"\nstage = "{stage}"\nevent_type = [{", ".join(chr(34) + n + chr(34) for n in names)}]\n'
        for stage, names in by_stage.items()
    )
    channels = ", ".join(f'"{c}"' for c in CHANNELS)
    stages = ", ".join(f'"{s}"' for s in STAGES)
    return f"""# Written by `journeys sample --events` (pipeline/synth.py). Paths are relative to this file.
# Journeys equal sessions (journey timeout = inactivity timeout = 30 minutes, no maximum
# session length) and the graph is at event-type level, so marts.transitions between event
# types is the directly-follows graph of the sessions (docs/metrics.md).

[project]
name = "synth"
channels = [{channels}]

[output]
warehouse = "warehouse/journeys.duckdb"
export_dir = "warehouse/export"
graph_dir = "warehouse/graph"
report = "warehouse/report.html"

[ingest]
min_timestamp = "2000-01-01T00:00:00Z"

[[sources]]
name = "events"
path = "events/part-*.parquet"
format = "parquet"
channel = {{ column = "channel" }}
event_id = "event_id"
customer_id = "customer_id"
event_type = {{ column = "event_type" }}
timestamp = {{ column = "ts", format = "iso" }}

[sessions]
inactivity_timeout = "30m"
max_length = "none"

[journeys]
timeout = "30m"
goal_stage = "purchase"

[stages]
order = [{stages}]

{rules}
[graph]
level = "event_type"
"""
