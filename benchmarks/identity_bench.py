"""Time identity resolution on N generated events with links, against the build of the same events.

    .venv/bin/python benchmarks/identity_bench.py --events 10000000 [--build]

Events are generated in DuckDB (vectorised, no Python loop): N/10 customers, each with 1-2 cookies; 60% of
web hits logged in (customer + cookie), the rest anonymous (cookie only); 10% of events are calls with only
a phone and 5% store receipts with only a card, linked through an identity map of every customer; plus
N/200 anonymous visitors. Prints the seconds of pipeline.identity.resolve and, with --build, of
pipeline.run.build_step on the resolved events.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import types
from pathlib import Path

from pipeline import identity, warehouse


def generate(con, events: int) -> None:
    customers = max(events // 10, 1)
    visitors = max(events // 200, 1)
    con.execute(
        """
        insert into staging.events
        with e as (
            select i, hash(i) as h, (hash(i * 7 + 1) % $customers) + 1 as c, hash(i * 13 + 5) % 100 as kind
            from range($events) t(i)
        )
        select 'ev' || i as event_id,
               'x' as customer_id,
               case
                   when kind < 5 then map {'cookie': 'v' || (h % $visitors)}
                   when kind < 15 then map {'phone': 'ph' || c}
                   when kind < 20 then map {'card': 'lc' || c}
                   when kind < 65 then map {'customer': 'C' || c, 'cookie': 'ck' || c || '-' || (h % 2)}
                   else map {'cookie': 'ck' || c || '-' || (h % 2)}
               end as identifiers,
               timestamptz '2026-01-01 00:00:00+00' + to_seconds((h % 15552000)::bigint) as ts,
               case when kind < 15 and kind >= 5 then 'call_center' when kind < 20 and kind >= 15 then 'store' else 'web' end,
               'page_view', 'bench', 'bench', i, '{}', 'b', ''
        from e
        """,
        {"events": events, "customers": customers, "visitors": visitors},
    )
    con.execute("update staging.events set customer_id = list_first(map_values(identifiers))")
    con.execute(
        """
        insert into staging.identity_map
        select 'crm', 'crm.csv', c + 1, t.type, t.value
        from range(1, $customers + 1) r(c),
             unnest([{'type': 'customer', 'value': 'C' || c}, {'type': 'phone', 'value': 'ph' || c},
                     {'type': 'card', 'value': 'lc' || c}]) as u(t)
        """,
        {"customers": customers},
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--build", action="store_true", help="also time build_step (sessionize, marts) on them")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        con = warehouse.connect(Path(tmp) / "bench.duckdb")
        started = time.perf_counter()
        generate(con, args.events)
        print(f"generated {args.events:,} events in {time.perf_counter() - started:.1f}s")
        config = types.SimpleNamespace(customer_type="customer", exclusive_types=None)
        started = time.perf_counter()
        counts = identity.resolve(con, config)
        resolve_seconds = time.perf_counter() - started
        print(f"resolve: {resolve_seconds:.1f}s  {counts}")
        if args.build:
            from pipeline import schema
            from pipeline.run import build_step

            build_config = types.SimpleNamespace(
                level="stage", goal_stage="purchase", stage_order=schema.DEFAULT_STAGES, funnel_stages=(),
                funnel_mode="strict", funnel_window=None, customers=None, min_journeys=30, alpha=0.05,
                contact_channels=("call_center",), contact_window=7 * 86400, journey_timeout=30 * 86400,
                inactivity_timeout=1800, max_length=86400, channel_timeouts=(), rules=(), as_of=None,
                top_edges=None, min_transitions=0, engine="local", anonymous="keep")
            started = time.perf_counter()
            build_step(con, build_config, Path(tmp) / "graph")
            build_seconds = time.perf_counter() - started
            print(f"build: {build_seconds:.1f}s; resolution is {resolve_seconds / build_seconds:.1%} of the build")
        con.close()


if __name__ == "__main__":
    main()
