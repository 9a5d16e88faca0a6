"""A large synthetic touchpoint log for engine comparisons: vectorised numpy, a few seconds for 1M events.

Kept beside `journeys sample --events N` (pipeline/synth.py) on purpose: that one
makes the benchmark's plain shape (journeys = 30-minute sessions, no segments, no
properties), while the engine comparison needs a customers file with segments,
a property-based stage rule, per-channel timeouts and a maximum session length.

Events come in visits (a few minutes apart, whole minutes, so equal times are
common and the tie-break on input position matters), visits are spread over
four months (so journeys split on the 30-day timeout, and some stay open), and
channels and event types are drawn so that every stage, the goal and
unlabelled events all occur.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

CHANNELS = ("web", "social", "call_center", "store", "email", "app")
EVENT_TYPES = {  # per channel: event types and how often each occurs
    "web": (("page_view", "product_view", "add_to_cart", "purchase", "loyalty_redeem", "search"), (0.40, 0.25, 0.12, 0.08, 0.05, 0.10)),
    "social": (("ad_click", "like", "comment", "share"), (0.4, 0.3, 0.2, 0.1)),
    "call_center": (("presale_question", "complaint", "order"), (0.5, 0.3, 0.2)),
    "store": (("sale", "return"), (0.8, 0.2)),
    "email": (("open", "click"), (0.7, 0.3)),
    "app": (("open", "purchase", "review"), (0.6, 0.2, 0.2)),
}
CHANNEL_WEIGHTS = (0.45, 0.15, 0.08, 0.08, 0.14, 0.10)

CONFIG = """\
# A synthetic log of {events} events (tests/synthetic_log.py)
[project]
name = "synthetic"
channels = ["web", "social", "call_center", "store", "email", "app"]

[output]
warehouse = "build/journeys.duckdb"
export_dir = "build/export"
graph_dir = "build/graph"
report = "build/report.html"

[[sources]]
name = "log"
path = "events/*.parquet"
format = "parquet"
channel = {{ column = "channel" }}
event_id = "id"
customer_id = "customer"
event_type = {{ column = "event" }}
timestamp = {{ column = "ts", format = "epoch" }}
properties = ["amount"]

[customers]
path = "customers.csv"
customer_id = "customer_id"
segments = ["region", "tier"]

[sessions]
inactivity_timeout = "30m"
max_length = "4h"
channel_timeouts = {{ store = "2h" }}

[journeys]
timeout = "30d"
goal_stage = "purchase"

[stages]
order = ["awareness", "consideration", "purchase", "retention", "loyalty", "advocacy"]

[[stages.rules]]
id = "big_purchase"
stage = "purchase"
event_type = ["purchase", "sale", "order"]
properties = {{ amount = ["high"] }}

[[stages.rules]]
id = "purchase"
stage = "purchase"
event_type = ["purchase", "sale", "order"]

[[stages.rules]]
id = "reach"
stage = "awareness"
event_type = ["page_view", "ad_click", "like", "open"]

[[stages.rules]]
id = "shop"
stage = "consideration"
event_type = ["product_view", "add_to_cart", "comment", "presale_question", "click"]

[[stages.rules]]
id = "after"
stage = "retention"
event_type = ["return", "complaint"]

[[stages.rules]]
id = "loyal"
stage = "loyalty"
event_type = ["loyalty_redeem"]

[[stages.rules]]
id = "voice"
stage = "advocacy"
event_type = ["share", "review"]
"""


def write_log(out_dir: Path, events: int = 1_000_000, seed: int = 11, files: int = 2) -> Path:
    """Write out_dir/events/part-*.parquet, out_dir/customers.csv and out_dir/journeys.toml
    (outputs under out_dir/build); return the config's path."""
    rng = np.random.default_rng(seed)
    customers = max(events // 20, 1)
    visits_per_customer = 6
    # each event belongs to one visit of one customer; heavier customers get more events
    customer = rng.integers(0, customers, events)
    heavy = rng.random(events) < 0.02
    customer[heavy] = rng.integers(0, max(customers // 100, 1), heavy.sum())
    visit = customer * visits_per_customer + rng.integers(0, visits_per_customer, events)
    start = 1_767_225_600  # 2026-01-01T00:00:00Z
    visit_start = start + rng.integers(0, 120 * 86_400, customers * visits_per_customer)
    offset = np.minimum(rng.exponential(8 * 60, events), 6 * 3600).astype(np.int64)
    ts = (visit_start[visit] + offset) // 60 * 60  # whole minutes: equal times are common
    channel_idx = rng.choice(len(CHANNELS), size=events, p=CHANNEL_WEIGHTS)
    event = np.empty(events, dtype=object)
    for i, ch in enumerate(CHANNELS):
        names, weights = EVENT_TYPES[ch]
        mask = channel_idx == i
        event[mask] = np.asarray(names, dtype=object)[rng.choice(len(names), size=mask.sum(), p=weights)]
    amount = np.where(rng.random(events) < 0.3, "high", "low")
    frame = pl.DataFrame({
        "id": np.arange(1, events + 1, dtype=np.int64),
        "customer": pl.Series(np.char.add("c", customer.astype(str))),
        "channel": np.asarray(CHANNELS, dtype=object)[channel_idx].tolist(),
        "event": event.tolist(),
        "ts": ts,
        "amount": amount.tolist(),
    })
    (out_dir / "events").mkdir(parents=True, exist_ok=True)
    for i, part in enumerate(np.array_split(np.arange(events), files)):
        frame[int(part[0]) : int(part[-1]) + 1].write_parquet(out_dir / "events" / f"part-{i}.parquet")
    known = rng.random(customers) < 0.9  # some customers are missing from the customers file: segment (unknown)
    ids = np.arange(customers)[known]
    pl.DataFrame({
        "customer_id": np.char.add("c", ids.astype(str)),
        "region": np.asarray(["north", "south", "east", "west"])[rng.integers(0, 4, ids.size)],
        "tier": np.asarray(["gold", "silver", "bronze"])[rng.integers(0, 3, ids.size)],
    }).write_csv(out_dir / "customers.csv")
    config = out_dir / "journeys.toml"
    config.write_text(CONFIG.format(events=events))
    return config
