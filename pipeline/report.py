"""What a run found, per segment: top bottlenecks and drop-offs with their numbers
and the journeys behind them (read from the marts of a warehouse)."""

from __future__ import annotations

import duckdb

EXAMPLES = 5  # journey ids shown per number; all of them are in marts.*_journeys


def summarize(con: duckdb.DuckDBPyConnection, top: int = 3) -> dict:
    """Quarantine by reason, then per segment the top `top` bottleneck edges (by time
    lost) and drop-off nodes (by drop-offs), each with the journeys behind it."""
    reasons = dict(con.execute("select reason, count(*) from staging.quarantine group by reason order by reason").fetchall())
    # the example journeys: per bottleneck, the journeys with the longest wait on the edge; per
    # drop-off, the first journey ids. Top-n per group (row_number), not a correlated list over
    # every row of marts.*_journeys, which ran out of memory at 100M events
    bottlenecks = con.execute(
        """
        with top as (
            select level, segment_key, segment_value, kind, rank from marts.bottlenecks where kind = 'edge' and rank <= $top
        ),
        per_journey as (
            select j.level, j.segment_key, j.segment_value, j.kind, j.rank, j.journey_id, max(j.seconds) as seconds
            from marts.bottleneck_journeys as j
            join top as t using (level, segment_key, segment_value, kind, rank)
            group by all
        ),
        examples as (
            select level, segment_key, segment_value, kind, rank,
                   list(journey_id order by seconds desc, journey_id) as journey_ids
            from (select * from per_journey
                  qualify row_number() over (partition by level, segment_key, segment_value, kind, rank
                                             order by seconds desc, journey_id) <= $examples)
            group by all
        )
        select b.segment_key, b.segment_value, b.rank, b.from_node, b.to_node, b.journeys, b.median_seconds,
               b.time_lost_seconds, e.journey_ids
        from marts.bottlenecks as b
        left join examples as e using (level, segment_key, segment_value, kind, rank)
        where b.kind = 'edge' and b.rank <= $top
        order by b.segment_key <> 'all', b.segment_key, b.segment_value, b.rank
        """,
        {"top": top, "examples": EXAMPLES},
    ).fetchall()
    drops = con.execute(
        """
        with examples as (
            select level, segment_key, segment_value, rank, list(journey_id order by journey_id) as journey_ids
            from (select level, segment_key, segment_value, rank, journey_id from marts.drop_off_journeys
                  where rank <= $top
                  qualify row_number() over (partition by level, segment_key, segment_value, rank
                                             order by journey_id) <= $examples)
            group by all
        )
        select d.segment_key, d.segment_value, d.rank, d.node, d.journeys, d.drop_offs, d.drop_off_rate, e.journey_ids
        from marts.drop_offs as d
        left join examples as e using (level, segment_key, segment_value, rank)
        where d.rank <= $top and d.drop_offs > 0
        order by d.segment_key <> 'all', d.segment_key, d.segment_value, d.rank
        """,
        {"top": top, "examples": EXAMPLES},
    ).fetchall()
    return {
        "quarantine_by_reason": reasons,
        "bottlenecks": [
            {"segment_key": k, "segment_value": v, "rank": r, "from_node": f, "to_node": t, "journeys": j,
             "median_wait_seconds": m, "time_lost_seconds": tl, "journey_ids": ids}
            for k, v, r, f, t, j, m, tl, ids in bottlenecks
        ],
        "drop_offs": [
            {"segment_key": k, "segment_value": v, "rank": r, "node": n, "journeys": j, "drop_offs": d,
             "drop_off_rate": rate, "journey_ids": ids}
            for k, v, r, n, j, d, rate, ids in drops
        ],
    }


def trim_findings(summary: dict, top: int) -> dict:
    """`summarize`'s result for a larger `top` cut down to `top`: the same as summarize(con, top)
    (ranks are per segment, and the example journeys of a rank do not depend on `top`)."""
    return {
        **summary,
        "bottlenecks": [b for b in summary["bottlenecks"] if b["rank"] <= top],
        "drop_offs": [d for d in summary["drop_offs"] if d["rank"] <= top],
    }


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def format_findings(summary: dict, show_journeys: bool = False) -> list[str]:
    """Human lines: per segment, the waits and the drop-offs."""
    lines = ["top bottlenecks (time lost = journeys x median wait) and drop-offs, per segment:"]
    segments: list[tuple[str, str]] = []
    for item in summary["bottlenecks"] + summary["drop_offs"]:
        key = (item["segment_key"], item["segment_value"])
        if key not in segments:
            segments.append(key)
    for key in segments:
        edges = [b for b in summary["bottlenecks"] if (b["segment_key"], b["segment_value"]) == key]
        drops = [d for d in summary["drop_offs"] if (d["segment_key"], d["segment_value"]) == key]
        lines.append(f"  {key[0]}={key[1]}")
        lines.append("    waits: " + ("; ".join(
            f"{b['from_node']} -> {b['to_node']} {b['journeys']} journeys x {duration(b['median_wait_seconds'])}" for b in edges) or "none"))
        lines.append("    drop-offs: " + ("; ".join(f"{d['node']} {d['drop_offs']} ({d['drop_off_rate']:.0%})" for d in drops) or "none"))
        if show_journeys:
            for b in edges:
                lines.append(f"      {b['from_node']} -> {b['to_node']}: e.g. {', '.join(b['journey_ids'] or [])}")
            for d in drops:
                lines.append(f"      dropped at {d['node']}: e.g. {', '.join(d['journey_ids'] or [])}")
    return lines
