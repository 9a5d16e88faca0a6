"""pm4py on its Polars backend: sessionize at 30 minutes with Polars, then pm4py's DFG with
counts (discover_dfg) and mean waits (discover_performance_dfg) on the LazyFrame.

pm4py (>= 2.7.19) runs its DFG on Polars when it is given a `polars.LazyFrame`
(pm4py/discovery.py: `is_polars_lazyframe`, then
`pm4py.algo.discovery.dfg.adapters.polars.df_statistics.get_dfg_graph`).
Sessions are cut as a pm4py user would: order each customer's events by time
(ties by event_id, the file order), a gap over 30 minutes starts a new case.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import TIMEOUT_SECONDS, arguments, write_edges  # noqa: E402

warnings.filterwarnings("ignore")


def main() -> None:
    args = arguments(__doc__.splitlines()[0])
    import pm4py

    events = (
        pl.scan_parquet(args.events)
        .select("event_id", "customer_id", "ts", "event_type")
        .sort("customer_id", "ts", "event_id")
        .with_columns(
            new_session=(pl.col("ts").diff().over("customer_id") > pl.duration(seconds=TIMEOUT_SECONDS)).fill_null(True)
        )
        .with_columns(case=pl.col("new_session").cum_sum())
        .select(
            pl.col("case").cast(pl.String).alias("case:concept:name"),
            pl.col("event_type").alias("concept:name"),
            pl.col("ts").alias("time:timestamp"),
        )
        .collect()  # sessionized once, as a user would before handing the log to pm4py
        .lazy()
    )
    dfg, starts, ends = pm4py.discover_dfg(events)
    performance, _, _ = pm4py.discover_performance_dfg(events, perf_aggregation_key="mean")
    rows = [(a, b, n, performance[(a, b)]) for (a, b), n in dfg.items()]
    rows += [("START", a, n, None) for a, n in starts.items()]
    rows += [(a, "END", n, None) for a, n in ends.items()]
    write_edges(args.edges, rows)
    print(f"pm4py {pm4py.__version__}: {len(dfg)} edges, {sum(starts.values())} cases")


if __name__ == "__main__":
    main()
