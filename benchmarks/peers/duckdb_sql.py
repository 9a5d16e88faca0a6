"""One DuckDB SQL query: sessionize at 30 minutes with window functions, then the
directly-follows graph with counts and mean waits, from the same Parquet files."""

from __future__ import annotations

import sys
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import TIMEOUT_SECONDS, arguments, write_edges  # noqa: E402

QUERY = """
with events as (
    select customer_id, ts, event_id, event_type,
           lag(ts) over (partition by customer_id order by ts, event_id) as prev_ts
    from read_parquet($glob)
),
sessions as (
    select *,
           sum(case when prev_ts is null or ts - prev_ts > to_seconds($timeout) then 1 else 0 end)
               over (partition by customer_id order by ts, event_id rows unbounded preceding) as session
    from events
),
steps as (
    select event_type, ts,
           coalesce(lag(event_type) over w, 'START') as from_node,
           lag(ts) over w as from_ts,
           lead(event_type) over w is null as is_last
    from sessions
    window w as (partition by customer_id, session order by ts, event_id)
),
moves as (
    select from_node, event_type as to_node,
           epoch_us(ts) - epoch_us(from_ts) as wait_us
    from steps
    union all
    select event_type, 'END', null from steps where is_last
)
select from_node, to_node, count(*) as transitions, avg(wait_us) / 1e6 as wait_mean_seconds
from moves
group by all
"""


def main() -> None:
    args = arguments(__doc__.splitlines()[0])
    con = duckdb.connect()
    rows = con.sql(QUERY, params={"glob": args.events, "timeout": TIMEOUT_SECONDS}).fetchall()
    write_edges(args.edges, rows)
    print(f"duckdb {duckdb.__version__}: {len(rows)} edges")


if __name__ == "__main__":
    main()
