"""Significance of segment differences (pipeline/stats.py, sql/marts/segment_comparison.sql).

The two-proportion z-test and Benjamini-Hochberg are checked against statsmodels on
random inputs; then a planted difference is built end to end through the real SQL
(conftest.marts_db) and must be found, with no spurious findings at the same stage,
p-values equal to statsmodels' on the same counts, and small cells suppressed.
"""

from __future__ import annotations

import warnings

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportions_ztest

from conftest import marts_db, ts
from pipeline import schema
from pipeline.config import StageRule
from pipeline.journeys import BuildSettings
from pipeline.stats import benjamini_hochberg, two_proportion_p_values

RULES = (
    StageRule("r_view", "awareness", event_type=("view",)),
    StageRule("r_compare", "consideration", event_type=("compare",)),
    StageRule("r_buy", "purchase", event_type=("buy",)),
)
FUNNEL = ("awareness", "consideration", "purchase")
T0 = ts("2026-01-01 10:00")
AS_OF = ts("2026-06-01")  # months after every event: journeys without a purchase are dropped
ALPHA = 0.05  # MartSettings' default


def statsmodels_p(x1, n1, x2, n2) -> float:
    """statsmodels' pooled two-sided z-test p-value; it is nan (0/0) when both rates are 0 or both 1."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(proportions_ztest(np.array([x1, x2], dtype=float), np.array([n1, n2], dtype=float))[1])


# --------------------------------------------------------------------------- the functions against statsmodels


@st.composite
def proportion_pairs(draw):
    """1..20 comparisons (x1 of n1 against x2 of n2), with x = 0 and x = n drawn often."""
    k = draw(st.integers(1, 20))
    rows = []
    for _ in range(k):
        n1, n2 = draw(st.integers(1, 3000)), draw(st.integers(1, 3000))
        x1 = draw(st.one_of(st.just(0), st.just(n1), st.integers(0, n1)))
        x2 = draw(st.one_of(st.just(0), st.just(n2), st.integers(0, n2)))
        rows.append((x1, n1, x2, n2))
    return np.array(rows, dtype=float)


@settings(max_examples=300, deadline=None)
@given(rows=proportion_pairs())
def test_two_proportion_p_values_equal_statsmodels(rows):
    """two_proportion_p_values is statsmodels' proportions_ztest (pooled, two-sided) element by element;
    where statsmodels has no answer (0/0: both rates 0 or both 1) the p-value is 1.0."""
    got = two_proportion_p_values(rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3])
    assert got.shape == (len(rows),)
    for (x1, n1, x2, n2), p in zip(rows, got):
        expected = statsmodels_p(x1, n1, x2, n2)
        if np.isnan(expected):
            assert x1 / n1 == x2 / n2 and x1 + x2 in (0, n1 + n2)
            assert p == 1.0
        else:
            assert p == pytest.approx(expected, rel=1e-9, abs=1e-300)


def test_two_proportion_edge_cases_by_hand():
    """Hand cases: equal rates give p = 1; 0 of 5 against 7 of 7 (pooled 7/12) has
    z = -1 / sqrt(7/12 * 5/12 * (1/5 + 1/7)) = -3.4641..., p = erfc(3.4641/sqrt 2) = 5.32e-4."""
    got = two_proportion_p_values([0, 5, 3, 0], [5, 5, 6, 5], [0, 7, 6, 7], [7, 7, 12, 7])
    assert got[0] == 1.0 and got[1] == 1.0 and got[2] == 1.0
    assert got[3] == pytest.approx(5.320055e-4, rel=1e-6)


@settings(max_examples=300, deadline=None)
@given(p=st.lists(st.one_of(st.floats(0, 1), st.sampled_from([0.0, 1.0, 0.01, 0.05])), min_size=1, max_size=60))
def test_benjamini_hochberg_equals_statsmodels(p):
    """benjamini_hochberg is multipletests(method='fdr_bh')'s adjusted p-values, ties and 0/1 included."""
    expected = multipletests(np.array(p), method="fdr_bh")[1]
    np.testing.assert_allclose(benjamini_hochberg(np.array(p)), expected, rtol=1e-12, atol=1e-300)  # subnormals round differently


def test_benjamini_hochberg_by_hand():
    """p = (0.01, 0.04, 0.03, 0.5): sorted 0.01, 0.03, 0.04, 0.5 scaled by 4/rank = 0.04, 0.06, 0.0533, 0.5;
    step-up minimum from the top gives 0.04, 0.0533, 0.0533, 0.5, back in input order."""
    got = benjamini_hochberg(np.array([0.01, 0.04, 0.03, 0.5]))
    np.testing.assert_allclose(got, [0.04, 0.16 / 3, 0.16 / 3, 0.5])
    assert benjamini_hochberg(np.array([])).size == 0


# --------------------------------------------------------------------------- a planted difference, end to end


def draw_population(seed: int, base_drop: float, planted_drop: float, per_value: int = 400, values: int = 6,
                    awareness_drop: float = 0.2):
    """One journey per customer: view; with prob. 1 - awareness_drop a compare 1 h later; then, unless it
    drops at consideration (prob. base_drop, or planted_drop for the last region value), a buy 1 h later.
    Returns (per-customer truth as a DataFrame, events)."""
    rng = np.random.default_rng(seed)
    n = per_value * values
    value = np.repeat(np.arange(values), per_value)
    reach = rng.random(n) >= awareness_drop
    converted = reach & (rng.random(n) >= np.where(value == values - 1, planted_drop, base_drop))
    truth = pl.DataFrame({
        "customer_id": [f"c{i:05d}" for i in range(n)],
        "region": [f"r{v}" for v in value],
        "reached_consideration": reach,
        "converted": converted,
    })
    return truth, events_for(truth)


def exact_population(base_drop: float, planted_drop: float, per_value: int = 400, values: int = 6):
    """Like draw_population, with no sampling noise: everyone reaches consideration and exactly
    round(per_value x rate) customers of each value drop there."""
    rows = []
    for v in range(values):
        drops = round(per_value * (planted_drop if v == values - 1 else base_drop))
        rows += [(f"c{v * per_value + i:05d}", f"r{v}", True, i >= drops) for i in range(per_value)]
    truth = pl.DataFrame(rows, schema=["customer_id", "region", "reached_consideration", "converted"], orient="row")
    return truth, events_for(truth)


def events_for(truth: pl.DataFrame) -> pl.DataFrame:
    """Canonical events (schema.EVENTS_SCHEMA) of the journeys in `truth`, built column-wise."""
    base = truth.with_row_index("i")
    parts = [
        base.select("i", "customer_id", event_type=pl.lit("view"), offset=pl.lit(0)),
        base.filter("reached_consideration").select("i", "customer_id", event_type=pl.lit("compare"), offset=pl.lit(3600)),
        base.filter("converted").select("i", "customer_id", event_type=pl.lit("buy"), offset=pl.lit(7200)),
    ]
    rows = pl.concat(parts).with_row_index("row", offset=1)
    return rows.select(
        event_id=pl.format("e{}", "row"),
        customer_id="customer_id",
        ts=pl.lit(T0) + pl.duration(seconds=pl.col("i").cast(pl.Int64) * 60 + pl.col("offset")),
        channel=pl.lit("web"),
        event_type="event_type",
        source=pl.lit("test"),
        source_file=pl.lit("inline"),
        source_row=pl.col("row").cast(pl.Int64),
        properties=pl.lit("{}"),
    ).cast(schema.EVENTS_SCHEMA)


def region_segments(truth: pl.DataFrame, vip: list[str] = ()) -> pl.DataFrame:
    """Long segments: every customer's region, and tier vip (the given customers) or basic."""
    region = truth.select("customer_id", segment_key=pl.lit("region"), segment_value="region")
    tier = truth.select("customer_id", segment_key=pl.lit("tier"),
                        segment_value=pl.when(pl.col("customer_id").is_in(list(vip))).then(pl.lit("vip")).otherwise(pl.lit("basic")))
    return pl.concat([region, tier])


def comparison(con) -> pl.DataFrame:
    return con.sql("select * from marts.segment_comparison").pl()


PLANTED = "r5"
SEED = 0


@pytest.fixture(scope="module")
def planted():
    """6 regions x 400 customers; region r5 drops at consideration with prob. 0.45, the others with 0.3.
    20 converted customers of r0 are tier vip, the rest basic (for suppression)."""
    truth, events = draw_population(SEED, base_drop=0.3, planted_drop=0.45)
    vip = truth.filter(pl.col("converted"))["customer_id"].head(20).to_list()
    con = marts_db(events, BuildSettings(rules=RULES), AS_OF, stage_order=FUNNEL, segments_long=region_segments(truth, vip))
    yield truth, vip, con
    con.close()


def test_counts_of_the_comparison_are_the_drawn_counts(planted):
    """successes / journeys at consideration are the drawn numbers: reaching it, dropping there, converting;
    the rest is every other region except those listed in rest_excludes (the ones shown to differ)."""
    truth, _, con = planted
    rows = comparison(con).filter(segment_key="region", stage="consideration")
    got = {(r["segment_value"], r["metric"]): (r["successes"], r["journeys"], r["rest_successes"], r["rest_journeys"])
           for r in rows.iter_rows(named=True)}
    excluded = {(r["segment_value"], r["metric"]): set(r["rest_excludes"]) for r in rows.iter_rows(named=True)}
    per = truth.group_by("region").agg(
        n=pl.col("reached_consideration").sum(),
        dropped=(pl.col("reached_consideration") & ~pl.col("converted")).sum(),
        converted=pl.col("converted").sum(),
    )
    assert len(got) == 12
    by_region = {r["region"]: r for r in per.iter_rows(named=True)}
    for v, r in by_region.items():
        for metric, col in (("drop_off_rate", "dropped"), ("conversion_rate", "converted")):
            rest = [by_region[o] for o in by_region if o != v and o not in excluded[(v, metric)]]
            assert got[(v, metric)] == (r[col], r["n"], sum(o[col] for o in rest), sum(o["n"] for o in rest))
    # the planted region leaves the rest of the others' drop-off tests, and nothing else does
    assert all(excluded[(v, "drop_off_rate")] <= {"r5"} for v in by_region)


def test_planted_drop_off_is_significant_and_nothing_else_at_that_stage(planted):
    """The region with the truly higher drop-off at consideration (0.45 against 0.3) is significant there,
    for drop_off_rate (higher) and its complement conversion_rate (lower); no other region's
    drop_off_rate / conversion_rate cell at consideration is significant at the default alpha.

    Why only a moderate effect: each region is compared with the rest of its key, and the rest of an
    unchanged region contains the planted one, so its true difference is not 0 but 0.15 / 5 = 0.03
    (expected |z| about 1.1 against about 5.2 for the planted cell). Over 2000 simulated seeds of this
    design the planted cell is found 98 % of the time and some other region is flagged at consideration
    20 % of the time (see test_identical_values_are_not_flagged_against_a_rest_with_an_outlier).
    The count of such discoveries is bounded like BH's promise: at most floor(alpha x discoveries);
    with this seed there are 5 discoveries in the region key, so the bound is 0."""
    _, _, con = planted
    cells = comparison(con).filter(segment_key="region", stage="consideration")
    planted_cells = {r["metric"]: r for r in cells.filter(segment_value=PLANTED).iter_rows(named=True)}
    assert planted_cells["drop_off_rate"]["is_significant"] is True
    assert planted_cells["drop_off_rate"]["rate"] > planted_cells["drop_off_rate"]["rest_rate"]
    assert planted_cells["drop_off_rate"]["p_adjusted"] < ALPHA
    assert planted_cells["conversion_rate"]["is_significant"] is True
    assert planted_cells["conversion_rate"]["lift"] < 1
    others = cells.filter(pl.col("segment_value") != PLANTED)
    assert others.height == 10 and others["is_significant"].null_count() == 0
    discoveries = comparison(con).filter(segment_key="region", is_significant=True).height
    false_positives = others.filter("is_significant").height
    assert false_positives <= int(ALPHA * discoveries)
    assert false_positives == 0, others.filter("is_significant")


def test_p_values_equal_statsmodels_on_the_same_counts(planted):
    """Every unsuppressed cell's p_value is statsmodels' z-test on (successes, journeys) against
    (rest_successes, rest_journeys) (1.0 where that is 0/0), and p_adjusted is statsmodels' fdr_bh
    over every unsuppressed cell of the run; is_significant = p_adjusted < alpha."""
    _, _, con = planted
    cells = comparison(con).filter(~pl.col("is_suppressed")).sort("segment_key", "segment_value", "stage", "metric")
    assert cells.height == 48  # 6 regions x 4 stages ((journey) included) x 2 metrics; every tier cell is suppressed
    p = []
    for r in cells.iter_rows(named=True):
        expected = statsmodels_p(float(r["successes"]), r["journeys"], float(r["rest_successes"]), float(r["rest_journeys"]))
        p.append(1.0 if np.isnan(expected) else expected)
    np.testing.assert_allclose(cells["p_value"].to_numpy(), p, rtol=1e-9)
    q = multipletests(np.array(p), method="fdr_bh")[1]
    np.testing.assert_allclose(cells["p_adjusted"].to_numpy(), q, rtol=1e-9)
    assert cells["is_significant"].to_list() == (q < ALPHA).tolist()


def test_cells_below_min_journeys_are_suppressed(planted):
    """A segment value with fewer than min_journeys (30) journeys at a stage, or whose rest has fewer, is
    suppressed: rates, lift and p-values null and is_suppressed true, never shown as 0 % or 100 %.
    tier=vip has 20 converted journeys (its conversion would read 100 %, its drop-off 0 %);
    tier=basic has 2380 but its rest (vip) only 20."""
    _, vip, con = planted
    tier = comparison(con).filter(segment_key="tier")
    assert set(tier["segment_value"]) == {"vip", "basic"}
    vip_journey = tier.filter(segment_value="vip", stage="(journey)")
    assert vip_journey["journeys"].to_list() == [20, 20]
    assert tier["is_suppressed"].all()
    for column in ("successes", "rate", "rest_successes", "rest_rate", "lift", "p_value", "p_adjusted", "is_significant"):
        assert tier[column].null_count() == tier.height, column
    region = comparison(con).filter(segment_key="region")
    assert not region["is_suppressed"].any() and region["p_value"].null_count() == 0


def test_min_journeys_threshold_is_inclusive():
    """A cell with exactly min_journeys journeys is shown, one fewer is suppressed (n < min_journeys).
    Two regions of 40 journeys, all reaching consideration (12 of each drop there): the cells of
    (journey), awareness and consideration have 40 journeys on each side."""
    truth, events = exact_population(0.3, 0.3, per_value=40, values=2)
    segs = region_segments(truth)
    stages = pl.col("stage").is_in(["(journey)", "awareness", "consideration"])
    shown = comparison(marts_db(events, BuildSettings(rules=RULES), AS_OF, stage_order=FUNNEL, segments_long=segs,
                                min_journeys=40)).filter(stages, segment_key="region")
    hidden = comparison(marts_db(events, BuildSettings(rules=RULES), AS_OF, stage_order=FUNNEL, segments_long=segs,
                                 min_journeys=41)).filter(stages, segment_key="region")
    assert shown.height == hidden.height == 12
    assert (shown["journeys"] == 40).all() and (shown["rest_journeys"] == 40).all()
    assert not shown["is_suppressed"].any() and shown["rate"].null_count() == 0
    assert hidden["is_suppressed"].all() and hidden["rate"].null_count() == hidden.height


def test_identical_values_are_not_flagged_against_a_rest_with_an_outlier():
    """Five regions with exactly the same drop-off at consideration (120 of 400 = 30 %) and one with a much
    higher one (240 of 400 = 60 %), no sampling noise at all: only the outlier may be significant.

    Today each identical region is compared with a rest that includes the outlier (rest rate
    (4 x 120 + 240) / 2000 = 36 % against 30 %: z = 2.3, p = 0.02), and with the ~25 such cells
    BH keeps them all below 0.05: the five identical regions are reported as significantly better."""
    truth, events = exact_population(0.3, 0.6)
    con = marts_db(events, BuildSettings(rules=RULES), AS_OF, stage_order=FUNNEL, segments_long=region_segments(truth))
    cells = comparison(con).filter(segment_key="region", stage="consideration", metric="drop_off_rate")
    rates = dict(zip(cells["segment_value"], cells["rate"]))
    assert rates == {"r0": 0.3, "r1": 0.3, "r2": 0.3, "r3": 0.3, "r4": 0.3, "r5": 0.6}
    flagged = set(cells.filter("is_significant")["segment_value"])
    assert PLANTED in flagged
    assert flagged == {PLANTED}
