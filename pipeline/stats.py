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


GROUP = ["segment_key", "stage", "metric"]
CELL = [*GROUP, "segment_value"]


def compare_cells(cells: pl.DataFrame, alpha: float, min_journeys: int) -> pl.DataFrame:
    """Test each segment value against the typical rest of its key, step down.

    `cells` has segment_key, segment_value, stage, metric, journeys (n), successes
    (x) and is_suppressed. Round 1 tests every unsuppressed value against all other
    values of its key (per stage and metric). In each round, only the most
    significant value of each group is flagged, if its Benjamini-Hochberg adjusted
    p-value (over every cell of the run) is below `alpha`; it then leaves the rest,
    and the remaining values are tested again against the values not flagged. So a
    single outlier does not make its look-alikes "significant" against a rest it
    inflates. Rounds stop when no group flags a new value; the reported p-values
    are each cell's last test, adjusted together. Where the rest would have fewer
    than `min_journeys`, the whole rest is the baseline."""
    df = cells.with_columns(
        _x=pl.col("successes").fill_null(0).cast(pl.Float64),
        _n=pl.col("journeys").cast(pl.Float64),
        _testable=~pl.col("is_suppressed"),
        _round=pl.lit(None, dtype=pl.Int64),  # round in which the cell was flagged
        _p=pl.lit(None, dtype=pl.Float64),
        _rest_n=pl.lit(None, dtype=pl.Float64),
        _rest_x=pl.lit(None, dtype=pl.Float64),
    )
    rounds = int(df.group_by(GROUP).len()["len"].max() or 0) if df.height else 0
    for current in range(1, rounds + 2):
        open_ = pl.col("_round").is_null()
        base_n = (pl.col("_n") * open_).sum().over(GROUP) - pl.col("_n")
        base_x = (pl.col("_x") * open_).sum().over(GROUP) - pl.col("_x")
        use_all = base_n < min_journeys
        df = df.with_columns(
            _rest_n=pl.when(open_).then(pl.when(use_all).then(pl.col("_n").sum().over(GROUP) - pl.col("_n")).otherwise(base_n)).otherwise(pl.col("_rest_n")),
            _rest_x=pl.when(open_).then(pl.when(use_all).then(pl.col("_x").sum().over(GROUP) - pl.col("_x")).otherwise(base_x)).otherwise(pl.col("_rest_x")),
        )
        retest = df.filter(pl.col("_testable") & pl.col("_round").is_null())
        p = two_proportion_p_values(retest["_x"], retest["_n"], retest["_rest_x"], retest["_rest_n"]) if retest.height else np.array([])
        fresh = retest.select(CELL).with_columns(_p_new=pl.Series(p, dtype=pl.Float64))
        df = df.join(fresh, on=CELL, how="left").with_columns(_p=pl.coalesce("_p_new", "_p")).drop("_p_new")
        tested = df.filter(pl.col("_testable"))
        q = benjamini_hochberg(tested["_p"].to_numpy())
        df = df.drop("_q", strict=False).join(tested.select(CELL).with_columns(_q=pl.Series(q, dtype=pl.Float64)), on=CELL, how="left")
        candidate = pl.col("_testable") & pl.col("_round").is_null()
        best = pl.col("_p") == pl.col("_p").filter(candidate).min().over(GROUP)
        newly = candidate & best & (pl.col("_q") < alpha)
        newly = newly & (pl.int_range(pl.len()).over(GROUP, order_by=[newly.not_(), "segment_value"]) == 0)  # one per group
        if current > rounds or not df.select(newly.any()).item():
            break
        df = df.with_columns(_round=pl.when(newly).then(pl.lit(current)).otherwise(pl.col("_round")))
    flagged = df.filter(pl.col("_round").is_not_null()).select(*GROUP, _fv="segment_value", _fr="_round")
    excludes = (
        df.select(*CELL, "_round")
        .join(flagged, on=GROUP, how="inner")
        .filter(pl.col("_fr") < pl.col("_round").fill_null(rounds + 1))
        .group_by(CELL)
        .agg(rest_excludes=pl.col("_fv").sort())
    )
    all_rest = pl.col("_rest_n") == pl.col("_n").sum().over(GROUP) - pl.col("_n")
    df = df.join(excludes, on=CELL, how="left").with_columns(
        rest_excludes=pl.when(all_rest | pl.col("rest_excludes").is_null())
        .then(pl.lit([], dtype=pl.List(pl.String)))
        .otherwise(pl.col("rest_excludes"))
    )
    shown = pl.col("_testable")
    rate = pl.col("_x") / pl.col("_n")
    rest_rate = pl.col("_rest_x") / pl.col("_rest_n")
    return df.select(
        "segment_key", "segment_value", "stage", "metric",
        "journeys",
        pl.when(shown).then(pl.col("successes")).alias("successes"),
        pl.when(shown).then(rate).alias("rate"),
        pl.col("_rest_n").cast(pl.Int64).alias("rest_journeys"),
        pl.when(shown).then(pl.col("_rest_x").cast(pl.Int64)).alias("rest_successes"),
        pl.when(shown).then(rest_rate).alias("rest_rate"),
        pl.when(shown & (pl.col("_rest_x") > 0)).then(rate / rest_rate).alias("lift"),
        pl.when(shown).then(pl.col("_p")).alias("p_value"),
        pl.when(shown).then(pl.col("_q")).alias("p_adjusted"),
        pl.when(shown).then(pl.col("_q") < alpha).alias("is_significant"),
        "is_suppressed",
        "rest_excludes",
    ).sort("segment_key", "segment_value", "stage", "metric")


def add_p_values(con: duckdb.DuckDBPyConnection) -> None:
    """Replace marts.segment_comparison's cells with their tested form (see compare_cells)."""
    settings = dict(con.execute("select key, value from meta.settings where key in ('alpha', 'min_journeys')").fetchall())
    alpha = float(settings.get("alpha") or 0.05)
    min_journeys = int(settings.get("min_journeys") or 30)
    cells = con.sql("select segment_key, segment_value, stage, metric, journeys, successes, is_suppressed from marts.segment_comparison").pl()
    con.register("_compared", compare_cells(cells, alpha, min_journeys).to_arrow())
    try:
        con.execute("create or replace table marts.segment_comparison as select * from _compared")
    finally:
        con.unregister("_compared")
