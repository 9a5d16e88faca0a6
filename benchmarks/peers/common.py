"""What every peer script shares: its arguments and the edge file it writes.

An edge file is a CSV with a header `from_node,to_node,transitions,wait_mean_seconds`:
one row per directly-follows edge of the 30-minute sessions, plus `START -> x`
(sessions starting at x) and `x -> END` (sessions ending at x), whose wait is empty.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

TIMEOUT_SECONDS = 30 * 60
EDGE_COLUMNS = ("from_node", "to_node", "transitions", "wait_mean_seconds")


def arguments(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--events", required=True, help="the Parquet glob of the generated events")
    parser.add_argument("--edges", help="the edge CSV to write")
    return parser.parse_args()


def write_edges(path: str | None, rows) -> None:
    """rows: (from_node, to_node, transitions, wait_mean_seconds or None)."""
    if not path:
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(EDGE_COLUMNS)
        for a, b, n, wait in sorted(rows, key=lambda r: (r[0], r[1])):
            out.writerow([a, b, int(n), "" if wait is None else repr(float(wait))])
