"""The floor: Polars reading the four columns the graph needs (customer_id, ts, event_type,
event_id for the order of ties) from the Parquet files and sorting them by customer and time.
No graph: no tool can do less and still see each customer's events in order."""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import arguments  # noqa: E402


def main() -> None:
    args = arguments(__doc__.splitlines()[0])
    events = (
        pl.scan_parquet(args.events)
        .select("customer_id", "ts", "event_type", "event_id")
        .sort("customer_id", "ts", "event_id")
        .collect()
    )
    print(f"polars {pl.__version__}: {events.height} events sorted, last {events['customer_id'][-1]}")


if __name__ == "__main__":
    main()
