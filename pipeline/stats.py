"""Significance of segment differences: two-proportion z-tests with Benjamini-Hochberg.

Works on the aggregated cells of marts.segment_comparison (a few hundred rows),
never on events, so plain arrays are fine here.
"""

from __future__ import annotations

import math

import duckdb
import numpy as np
import polars as pl


def two_proportion_p_values(x1: np.ndarray, n1: np.ndarray, x2: np.ndarray, n2: np.ndarray) -> np.ndarray:
    """Two-sided p-values of the pooled two-proportion z-test (1.0 where both rates are 0 or 1)."""
    x1, n1, x2, n2 = (np.asarray(a, dtype=float) for a in (x1, n1, x2, n2))
    pooled = (x1 + x2) / (n1 + n2)
    se = np.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se > 0, (x1 / n1 - x2 / n2) / se, 0.0)
    # aggregated comparisons, not a data path: math.erfc has no numpy twin without scipy
    return np.array([math.erfc(abs(v) / math.sqrt(2)) for v in z.tolist()])


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (step-up, monotone, capped at 1)."""
    p = np.asarray(p, dtype=float)
    m = p.size
    if m == 0:
        return p
    order = np.argsort(p)
    scaled = p[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum.accumulate(scaled[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return out


def add_p_values(con: duckdb.DuckDBPyConnection) -> None:
    """Fill p_value, p_adjusted and is_significant of marts.segment_comparison (alpha from meta.settings)."""
    alpha = float(con.execute("select coalesce(max(value) filter (where key = 'alpha'), '0.05') from meta.settings").fetchall()[0][0])
    cells = con.sql(
        "select segment_key, segment_value, stage, metric, successes, journeys, rest_successes, rest_journeys "
        "from marts.segment_comparison where not is_suppressed"
    ).pl()
    p = two_proportion_p_values(cells["successes"], cells["journeys"], cells["rest_successes"], cells["rest_journeys"]) if cells.height else np.array([])
    q = benjamini_hochberg(p)
    result = cells.select("segment_key", "segment_value", "stage", "metric").with_columns(
        p_value=pl.Series(p, dtype=pl.Float64), p_adjusted=pl.Series(q, dtype=pl.Float64)
    )
    con.register("_p_values", result.to_arrow())
    try:
        con.execute(
            """
            update marts.segment_comparison as c
            set p_value = v.p_value, p_adjusted = v.p_adjusted, is_significant = v.p_adjusted < ?
            from _p_values as v
            where c.segment_key = v.segment_key and c.segment_value = v.segment_value
              and c.stage = v.stage and c.metric = v.metric
            """,
            [alpha],
        )
    finally:
        con.unregister("_p_values")
