"""The paired gate's statistics, checked against independent references rather than against themselves.

- Wilson, exact McNemar and Holm: statsmodels (a dev dependency for this purpose only).
- Newcombe's method 10, which statsmodels 0.15 does not have: the paper's own worked examples
  (Newcombe 1998, Statistics in Medicine 17:2635-2650, Table III, method 10), one example from
  Fagerland, Lydersen & Laake, "Statistical Analysis of Contingency Tables" (2017), chapter 8, as
  printed by their R package contingencytables, and the interval's exact coverage at n = 36.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Iterator

import numpy as np
import pytest
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

from promoter.promotion.paired import (
    PairedTable,
    holm_adjusted,
    mcnemar_worse_pvalue,
    newcombe_paired_interval,
    paired_table,
    paired_tables,
    rows_needed,
    wilson_interval,
    z_one_sided,
)

Z95 = z_one_sided(0.95)  # the gate's one-sided 95% bound
Z95_TWO_SIDED = z_one_sided(0.975)  # a two-sided 95% interval, as the published tables use


def test_table_counts_each_kind_of_row() -> None:
    truth = np.array([0, 0, 1, 1, 2, 2, 2], dtype=np.int64)
    candidate = np.array([0, 0, 1, 0, 2, 0, 1], dtype=np.int64)
    champion = np.array([0, 1, 0, 1, 2, 0, 0], dtype=np.int64)
    # rows: both right, candidate only, candidate only, champion only, both right, both wrong, both wrong
    table = paired_table(truth, candidate, champion)
    assert table == PairedTable(a=2, b=1, c=2, d=2)
    assert (table.n, table.delta, table.discordance) == (7, 1 / 7, 3 / 7)


def test_per_class_tables_hold_the_rows_of_their_true_label_and_add_up_to_the_whole() -> None:
    rng = np.random.default_rng(15)
    truth = rng.integers(0, 4, size=500, dtype=np.int64)
    candidate = np.where(rng.random(500) < 0.9, truth, rng.integers(0, 4, size=500, dtype=np.int64))
    champion = np.where(rng.random(500) < 0.85, truth, rng.integers(0, 4, size=500, dtype=np.int64))
    # a fifth class that never occurs is reported with an empty table, not left out
    tables = paired_tables(truth, candidate, champion, n_classes=5)
    assert len(tables) == 5
    for k, table in enumerate(tables[:4]):
        rows = truth == k
        assert table == paired_table(truth[rows], candidate[rows], champion[rows])
        assert table.n == int(rows.sum())
        # recall difference, computed directly from the predictions
        recall = (candidate[rows] == k).mean() - (champion[rows] == k).mean()
        assert table.delta == pytest.approx(recall, abs=1e-12)
    assert tables[4] == PairedTable(0, 0, 0, 0)
    whole = paired_table(truth, candidate, champion)
    assert sum(t.a for t in tables) == whole.a and sum(t.b for t in tables) == whole.b
    assert sum(t.c for t in tables) == whole.c and sum(t.d for t in tables) == whole.d


def test_tables_refuse_misaligned_predictions_and_labels_out_of_range() -> None:
    truth = np.array([0, 1, 2], dtype=np.int64)
    with pytest.raises(ValueError, match="shape"):
        paired_table(truth, np.array([0, 1], dtype=np.int64), truth)
    with pytest.raises(ValueError, match="outside"):
        paired_tables(truth, truth, truth, n_classes=2)
    with pytest.raises(ValueError, match="negative"):
        PairedTable(1, -1, 0, 0)


def test_an_empty_table_has_no_difference_and_no_discordance() -> None:
    empty = PairedTable(0, 0, 0, 0)
    assert (empty.n, empty.delta, empty.discordance) == (0, 0.0, 0.0)


def test_one_sided_quantile() -> None:
    assert z_one_sided(0.95) == pytest.approx(1.6448536, abs=1e-7)
    assert z_one_sided(0.975) == pytest.approx(1.9599640, abs=1e-7)
    for impossible in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError):
            z_one_sided(impossible)


@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
@pytest.mark.parametrize("n", [1, 2, 7, 36, 44, 360])
def test_wilson_matches_statsmodels(n: int, confidence: float) -> None:
    z = z_one_sided(confidence)
    alpha = 2 * (1 - confidence)  # statsmodels' alpha is two-sided: z = ppf(1 - alpha / 2)
    for successes in sorted({0, 1, n // 3, n // 2, n - 1, n}):
        expected = proportion_confint(successes, n, alpha=alpha, method="wilson")
        assert wilson_interval(successes, n, z) == pytest.approx(expected, abs=1e-12)


def test_wilson_without_rows_is_the_whole_unit_interval() -> None:
    assert wilson_interval(0, 0, Z95) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(3, 2, Z95)


# Newcombe (1998), Table III, method 10 (95%, two-sided), for θ = p1 - p2 from the paper's paired
# table (e, f, g, h): e = both positive, f = first only, g = second only, h = neither. Here the
# first is the candidate, so PairedTable(a=e, b=g, c=f, d=h) and Δ = (c - b)/n = θ. Rows 2, 3, 5, 6
# and 11 have ad > bc: there the paper's limits need φ's continuity correction, max(ad - bc - n/2, 0);
# the plain φ gives 0.0618 for row 2's lower limit. The rows were taken from a public transcription of
# the table (a self-test in another project), not from the paper itself; Fagerland et al.'s example
# below is a second, independent source for the corrected φ.
NEWCOMBE_TABLE_III = [
    ((36, 12, 2, 0), (0.0569, 0.3404)),
    ((20, 12, 2, 16), (0.0562, 0.3292)),
    ((18, 12, 2, 18), (0.0562, 0.3290)),
    ((36, 14, 0, 0), (0.1528, 0.4167)),
    ((35, 14, 0, 1), (0.1461, 0.4175)),
    ((18, 14, 0, 18), (0.1441, 0.3963)),
    ((2, 97, 1, 0), (0.8721, 0.9854)),
    ((1, 97, 1, 1), (0.8736, 0.9850)),
    ((0, 29, 1, 0), (0.6666, 0.9882)),
    ((2, 98, 0, 0), (0.9178, 0.9945)),
    ((1, 98, 0, 1), (0.9171, 0.9916)),
    ((0, 30, 0, 0), (0.8395, 1.0)),
    ((54, 0, 0, 0), (-0.0664, 0.0664)),
]


@pytest.mark.parametrize(("efgh", "published"), NEWCOMBE_TABLE_III, ids=lambda v: str(v))
def test_newcombe_method_10_reproduces_the_papers_table(
    efgh: tuple[int, int, int, int], published: tuple[float, float]
) -> None:
    e, f, g, h = efgh
    candidate_better = PairedTable(a=e, b=g, c=f, d=h)
    # 1e-4: the paper prints four decimals (row 8's lower limit is 0.87367, printed 0.8736)
    assert newcombe_paired_interval(candidate_better, Z95_TWO_SIDED) == pytest.approx(published, abs=1e-4)
    # the same rows with the roles swapped: the interval of -θ is the mirror image
    champion_better = PairedTable(a=e, b=f, c=g, d=h)
    low, high = published
    assert newcombe_paired_interval(champion_better, Z95_TWO_SIDED) == pytest.approx((-high, -low), abs=1e-4)


def test_newcombe_sign_convention_on_the_papers_first_example() -> None:
    """12 rows only the champion gets right, 2 only the candidate: the candidate is worse by 0.2."""
    table = PairedTable(a=36, b=12, c=2, d=0)
    assert table.delta == pytest.approx(-0.2)
    low, high = newcombe_paired_interval(table, Z95_TWO_SIDED)
    assert (round(low, 4), round(high, 4)) == (-0.3404, -0.0569)


def test_newcombe_matches_fagerland_lydersen_laake() -> None:
    """Cavo et al. (2012), complete response before (first) and after consolidation (second):
    [[59, 6], [16, 80]], estimate -0.0621, 95% CI -0.1186 to -0.0046 (Fagerland, Lydersen & Laake
    2017, ch. 8; contingencytables' Newcombe_square_and_add_CI_paired_2x2)."""
    table = PairedTable(a=59, b=16, c=6, d=80)
    assert round(table.delta, 4) == -0.0621
    low, high = newcombe_paired_interval(table, Z95_TWO_SIDED)
    assert (round(low, 4), round(high, 4)) == (-0.1186, -0.0046)


def _exact_lower_bound_coverage(n: int, cells: tuple[float, float, float, float]) -> float:
    """P(L <= true Δ) summed over every table of n rows, multinomial in (a, b, c, d)."""
    log_p = [math.log(p) if p > 0 else -math.inf for p in cells]
    true_delta = cells[2] - cells[1]
    log_factorial = [math.lgamma(i + 1) for i in range(n + 1)]
    covered = 0.0
    for a in range(n + 1):
        for b in range(n + 1 - a):
            for c in range(n + 1 - a - b):
                d = n - a - b - c
                counts = (a, b, c, d)
                if any(k and p == -math.inf for k, p in zip(counts, log_p, strict=True)):
                    continue
                log_pmf = log_factorial[n] - sum(log_factorial[k] for k in counts)
                log_pmf += sum(k * p for k, p in zip(counts, log_p, strict=True) if k)
                if newcombe_paired_interval(PairedTable(*counts), Z95)[0] <= true_delta + 1e-12:
                    covered += math.exp(log_pmf)
    return covered


@pytest.mark.parametrize(
    "cells",
    [
        (0.93, 0.03, 0.02, 0.02),  # the research's simulated rows at n = 36 (0.987 and 0.982 there)
        (0.90, 0.05, 0.05, 0.00),
        (0.96, 0.02, 0.02, 0.00),  # a digits-like class: both models ~97% right
        (0.80, 0.10, 0.10, 0.00),  # many disagreements: the hardest of these for the interval
    ],
)
def test_newcombe_lower_bound_keeps_its_one_sided_coverage_at_a_digits_class_size(
    cells: tuple[float, float, float, float],
) -> None:
    """Exact, not simulated: every one of the 9139 tables of 36 rows, weighted by its probability."""
    assert _exact_lower_bound_coverage(36, cells) >= 0.95


def test_newcombe_edge_cases() -> None:
    assert newcombe_paired_interval(PairedTable(0, 0, 0, 0), Z95) == (-1.0, 1.0)
    # all concordant: no evidence either way, yet not a zero-width interval (Wald's would be)
    low, high = newcombe_paired_interval(PairedTable(40, 0, 0, 0), Z95)
    assert low == pytest.approx(-(Z95**2) / (40 + Z95**2)) and high == pytest.approx(-low)
    low, high = newcombe_paired_interval(PairedTable(30, 0, 0, 6), Z95)
    assert low < 0.0 < high
    # perfect disagreement: the champion right on every row, the candidate on none
    low, high = newcombe_paired_interval(PairedTable(0, 30, 0, 0), Z95_TWO_SIDED)
    assert low == -1.0 and high == pytest.approx(-0.8395, abs=1e-4)
    # each right where the other is wrong, half and half: symmetric about 0, inside [-1, 1]
    low, high = newcombe_paired_interval(PairedTable(0, 15, 15, 0), Z95)
    assert -1.0 <= low < 0.0 < high <= 1.0 and low == pytest.approx(-high)


@pytest.mark.parametrize(
    ("b", "c"), [(1, 0), (5, 0), (5, 1), (7, 3), (12, 2), (10, 10), (30, 25), (3, 3), (40, 12), (1, 1)]
)
def test_exact_mcnemar_is_half_the_two_sided_statsmodels_value(b: int, c: int) -> None:
    table = PairedTable(a=50, b=b, c=c, d=4)
    two_sided = mcnemar([[table.a, table.b], [table.c, table.d]], exact=True).pvalue
    assert min(1.0, 2 * mcnemar_worse_pvalue(table)) == pytest.approx(two_sided, rel=1e-12)


def test_exact_mcnemar_one_sided_values_and_edges() -> None:
    assert mcnemar_worse_pvalue(PairedTable(10, 5, 0, 0)) == pytest.approx(1 / 32)
    assert mcnemar_worse_pvalue(PairedTable(0, 30, 0, 0)) == pytest.approx(0.5**30)
    # no discordant row, no evidence: never "significantly worse"
    assert mcnemar_worse_pvalue(PairedTable(50, 0, 0, 3)) == 1.0
    assert mcnemar_worse_pvalue(PairedTable(0, 0, 0, 0)) == 1.0
    # a candidate better than the champion is never significantly worse
    assert mcnemar_worse_pvalue(PairedTable(20, 2, 12, 0)) > 0.99


def test_holm_worked_example() -> None:
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> running max 0.06
    assert holm_adjusted([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm_adjusted([0.5, 0.9]) == [1.0, 1.0]
    assert holm_adjusted([0.2]) == [0.2]
    assert holm_adjusted([]) == []


@pytest.fixture
def frozen_heap() -> Iterator[None]:
    """statsmodels' Holm branch calls gc.collect() on every call: in a process that has imported
    MLflow and torch that is a quarter of a second each. Freezing the objects that exist already
    leaves only the test's own garbage to collect."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@pytest.mark.usefixtures("frozen_heap")
def test_holm_matches_statsmodels_on_random_p_vectors() -> None:
    rng = np.random.default_rng(1979)
    for _ in range(2000):
        m = int(rng.integers(1, 13))
        p = rng.random(m) ** rng.uniform(0.2, 4)  # from mostly tiny to mostly large p-values
        if rng.random() < 0.3:  # ties, as tables with the same b and c give
            p[rng.integers(0, m, size=m)] = p[0]
        expected = multipletests(p, method="holm")[1]
        assert holm_adjusted(p.tolist()) == pytest.approx(expected.tolist(), abs=1e-15)


def test_holm_refuses_what_is_not_a_p_value() -> None:
    for bad in ([0.1, 1.2], [-0.1], [float("nan")]):
        with pytest.raises(ValueError):
            holm_adjusted(bad)


def test_rows_needed_matches_the_research_figures() -> None:
    """ψ = 0.04, one-sided 95%: δ = 0.05 -> 44 rows, 0.02 -> 271, 0.01 -> 1083."""
    table = PairedTable(a=950, b=20, c=20, d=10)
    assert table.discordance == 0.04
    assert [rows_needed(table, margin, Z95) for margin in (0.05, 0.02, 0.01)] == [44, 271, 1083]


def test_rows_needed_is_never_zero_when_no_row_disagreed() -> None:
    # 36 rows, none discordant: ψ is floored at z²/(n + z²) = 0.0699, the most it could be
    agreeing = PairedTable(a=34, b=0, c=0, d=2)
    assert rows_needed(agreeing, 0.05, Z95) == math.ceil(Z95**4 / (36 + Z95**2) / 0.05**2) == 76
    # ... and that many all-right rows are indeed enough for the gate's lower bound to clear -δ
    assert newcombe_paired_interval(PairedTable(76, 0, 0, 0), Z95)[0] > -0.05
    # no rows at all: the worst case, every row discordant
    assert rows_needed(PairedTable(0, 0, 0, 0), 0.05, Z95) == math.ceil(Z95**2 / 0.05**2) == 1083
    with pytest.raises(ValueError):
        rows_needed(agreeing, 0.0, Z95)


def test_rows_needed_never_falls_as_disagreements_grow() -> None:
    figures = [rows_needed(PairedTable(a=36 - k, b=k // 2, c=k - k // 2, d=0), 0.05, Z95) for k in range(37)]
    assert figures == sorted(figures)
    assert figures[0] > 0 and figures[-1] == math.ceil(Z95**2 / 0.05**2)
