"""exact_quantiles (sql/marts/quantiles.sql): the marts' medians and 90th percentiles without a
quantile_cont state, which cannot spill to disk.

Checked against numpy's linear percentile (the same definition: interpolation between the
values of ranks floor and ceil of (n - 1) q), on hand-made groups and hypothesis-made ones:
ties, negatives, zeros, nulls, one-value groups, values that fall in one bin, and under a
memory limit small enough that DuckDB must spill.
"""

from __future__ import annotations

import math

import duckdb
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline import warehouse


def _con() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    warehouse.run_sql_file(con, "marts/quantiles.sql")
    return con


def _quantiles(con: duckdb.DuckDBPyConnection, rows: list[tuple[int, float | None]]) -> dict[int, tuple[int, float, float]]:
    con.execute("create or replace table values_ (g integer, x double)")
    if rows:
        con.executemany("insert into values_ values (?, ?)", rows)
    con.execute("create or replace view source_ as select g as grp, x from values_")
    return {g: (n, p50, p90) for g, n, p50, p90 in con.execute("select grp, n, p50, p90 from exact_quantiles('source_')").fetchall()}


def _expected(rows: list[tuple[int, float | None]]) -> dict[int, tuple[int, float, float]]:
    groups: dict[int, list[float]] = {}
    for g, x in rows:
        if x is not None:
            groups.setdefault(g, []).append(x)
    return {g: (len(xs), float(np.percentile(xs, 50)), float(np.percentile(xs, 90))) for g, xs in groups.items()}


def _assert_close(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for g, (n, p50, p90) in want.items():
        assert got[g][0] == n
        assert got[g][1] == pytest.approx(p50, rel=1e-12, abs=1e-9), g
        assert got[g][2] == pytest.approx(p90, rel=1e-12, abs=1e-9), g


def test_hand_counted_groups():
    """Values 0..9: median 4.5 (between ranks 4 and 5), p90 8.1 (0.1 of the way from 8 to 9).
    One value: both quantiles are it. Only nulls: no row."""
    rows = [(1, float(v)) for v in range(9, -1, -1)] + [(2, 7.0), (3, None), (3, None)]
    got = _quantiles(_con(), rows)
    assert set(got) == {1, 2}
    assert got[1] == (10, 4.5, pytest.approx(8.1))
    assert got[2] == (1, 7.0, 7.0)


def test_ties_across_the_wanted_ranks():
    """Nine zeros and a one: p50 = 0 (ranks 4 and 5 are zeros), p90 = 0.1 (at 9 x 0.9 = 8.1:
    rank 8 is a zero, rank 9 the one, 0.1 of the way). A bin whose values are all equal gives its value
    without a second pass; here the zeros and the ones are such bins."""
    got = _quantiles(_con(), [(1, 0.0)] * 9 + [(1, 1.0)])
    assert got[1] == (10, 0.0, pytest.approx(0.1))


def test_values_in_one_bin_are_ranked():
    """Values closer together than a bin's width (about 0.3%) are told apart by the second pass."""
    xs = [1000.0 + i * 1e-6 for i in range(101)]
    got = _quantiles(_con(), [(5, x) for x in reversed(xs)])
    assert got[5] == (101, pytest.approx(xs[50], abs=0), pytest.approx(xs[90], abs=0))


def test_zero_has_a_bin_of_its_own():
    """Zeros and a value a microsecond above zero fall in different bins, so a node where most
    visits have no dwell is not ranked value by value."""
    con = _con()
    bins = con.execute("select quantile_bin(-1e-6), quantile_bin(0.0), quantile_bin(1e-6), quantile_bin(1e-3)").fetchall()[0]
    assert bins[0] < bins[1] < bins[2] <= bins[3] and bins[1] == 0
    got = _quantiles(con, [(1, 0.0)] * 95 + [(1, 1e-6 * (i + 1)) for i in range(5)])
    assert got[1] == (100, 0.0, 0.0)


values = st.one_of(
    st.none(),
    st.sampled_from([0.0, 1.0, -1.0, 30.0, 1800.0]),  # ties
    st.floats(min_value=-1e6, max_value=1e9, allow_nan=False, allow_infinity=False),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 4), values), max_size=300))
def test_equals_the_linear_percentile(rows):
    """For any groups of values, the result equals numpy's linear percentile."""
    _assert_close(_quantiles(_con(), rows), _expected(rows))


def test_equals_quantile_cont_when_it_must_spill(tmp_path):
    """A million values in 3 groups under a 20 MB limit: the result is DuckDB's own
    quantile_cont computed without a limit (the same values; the interpolation may round
    differently in the last bit)."""
    con = duckdb.connect(str(tmp_path / "q.duckdb"))
    warehouse.run_sql_file(con, "marts/quantiles.sql")
    con.execute("select setseed(0.25)")
    con.execute(
        "create table values_ as select i % 3 as grp, "
        "case when i % 10 = 0 then 0.0 else round(random() * 86400, 6) end as x from range(1000000) r(i)"
    )
    want = {g: (n, p50, p90) for g, n, p50, p90 in con.execute(
        "select grp, count(x), quantile_cont(x, 0.5), quantile_cont(x, 0.9) from values_ group by grp").fetchall()}
    con.close()
    con = duckdb.connect(str(tmp_path / "q.duckdb"),
                         config={"memory_limit": "20MB", "threads": 2, "temp_directory": str(tmp_path / "spill")})
    warehouse.run_sql_file(con, "marts/quantiles.sql")
    got = {g: (n, p50, p90) for g, n, p50, p90 in con.execute(
        "select grp, n, p50, p90 from exact_quantiles('values_')").fetchall()}
    assert got.keys() == want.keys()
    for g in want:
        assert got[g][0] == want[g][0]
        assert math.isclose(got[g][1], want[g][1], rel_tol=1e-12)
        assert math.isclose(got[g][2], want[g][2], rel_tol=1e-12)
