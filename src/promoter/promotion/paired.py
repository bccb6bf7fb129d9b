"""Paired statistics for comparing a candidate with the champion on the same held-out rows.

Both models are scored on the same rows, so their outcomes are paired: a row both get right tells
nothing about which is better, and only the discordant rows (one right, the other wrong) carry the
comparison. Treating the two accuracies or recalls as independent proportions would throw that
away and give intervals far too wide (or, with Wald, far too narrow at small n). Per class k, over
the n_k rows whose true label is k, the 2x2 table is

    a = both right, b = champion right and candidate wrong,
    c = candidate right and champion wrong, d = both wrong,

and the recall difference, candidate minus champion, is Δ = (c - b) / n.

- "Not worse by more than δ": the lower limit L of Newcombe's (1998) method 10 interval for Δ,
  a score interval that stays inside [-1, 1] and does not collapse when few rows disagree. A class
  passes when L > -δ; every class must pass, an intersection-union test (Berger 1982), so each
  interval is one-sided at the gate's own confidence and needs no multiplicity correction.
- "Significantly worse": the one-sided exact McNemar test on the discordant rows, and Holm's
  step-down adjustment across the classes, since a fail verdict is a union over classes.
- How many rows a class would need before it could pass at all, for the "inconclusive" verdict.

Pure functions of counts (numpy and scipy.stats only), so the gate that uses them is a pure function
of the evaluation's predictions. References: Newcombe RG (1998), "Improved confidence intervals for
the difference between binomial proportions based on paired data", Statistics in Medicine
17:2635-2650; Wilson EB (1927), JASA 22:209-212; McNemar Q (1947), Psychometrika 12:153-157;
Holm S (1979), Scandinavian Journal of Statistics 6:65-70.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import stats


@dataclass(frozen=True)
class PairedTable:
    """One class's (or the whole split's) 2x2 table of paired outcomes on the same rows."""

    a: int  # both right
    b: int  # champion right, candidate wrong
    c: int  # candidate right, champion wrong
    d: int  # both wrong

    def __post_init__(self) -> None:
        for name in ("a", "b", "c", "d"):
            if getattr(self, name) < 0:
                raise ValueError(f"paired table cell {name} is negative: {self}")

    @property
    def n(self) -> int:
        return self.a + self.b + self.c + self.d

    @property
    def delta(self) -> float:
        """Candidate minus champion, in recall (accuracy over the whole split); 0.0 without rows."""
        return (self.c - self.b) / self.n if self.n else 0.0

    @property
    def discordance(self) -> float:
        """The share of rows on which the two models disagree about being right; 0.0 without rows."""
        return (self.b + self.c) / self.n if self.n else 0.0


def _right(truth: NDArray[np.int64], pred: NDArray[np.int64]) -> NDArray[np.bool_]:
    if pred.shape != truth.shape:
        raise ValueError(f"predictions of shape {pred.shape} for labels of shape {truth.shape}")
    return np.asarray(pred == truth, dtype=np.bool_)


def paired_table(
    truth: NDArray[np.int64], candidate_pred: NDArray[np.int64], champion_pred: NDArray[np.int64]
) -> PairedTable:
    """The paired table over all the rows given (both prediction arrays aligned with `truth`)."""
    candidate = _right(truth, candidate_pred)
    champion = _right(truth, champion_pred)
    return PairedTable(
        a=int(np.count_nonzero(candidate & champion)),
        b=int(np.count_nonzero(champion & ~candidate)),
        c=int(np.count_nonzero(candidate & ~champion)),
        d=int(np.count_nonzero(~candidate & ~champion)),
    )


def paired_tables(
    y_true: NDArray[np.int64],
    candidate_pred: NDArray[np.int64],
    champion_pred: NDArray[np.int64],
    n_classes: int,
) -> list[PairedTable]:
    """One table per class k in 0..n_classes-1, over the rows whose true label is k (recall's rows).

    A class with no rows gets an empty table (n == 0), never a missing entry, so the gate can call
    it inconclusive by name.
    """
    if y_true.size and (int(y_true.min()) < 0 or int(y_true.max()) >= n_classes):
        raise ValueError(f"true labels outside 0..{n_classes - 1}")
    candidate = _right(y_true, candidate_pred)
    champion = _right(y_true, champion_pred)

    def per_class(rows: NDArray[np.bool_]) -> list[int]:
        counts = np.bincount(y_true[rows], minlength=n_classes)
        return [int(count) for count in counts]

    a = per_class(candidate & champion)
    b = per_class(champion & ~candidate)
    c = per_class(candidate & ~champion)
    d = per_class(~candidate & ~champion)
    return [PairedTable(a[k], b[k], c[k], d[k]) for k in range(n_classes)]


def z_one_sided(confidence: float) -> float:
    """The normal quantile of a one-sided bound at `confidence`: 0.95 -> 1.6449."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    return float(stats.norm.ppf(confidence))


def wilson_interval(successes: int, n: int, z: float) -> tuple[float, float]:
    """Wilson's score interval for successes/n at normal quantile z; (0.0, 1.0) when n == 0.

    z is the quantile itself, so the same function gives a two-sided interval (z = 1.96) or the
    limits of a one-sided bound (z = 1.645). Unlike Wald it never leaves [0, 1] and never has zero
    width at 0 or n successes, which is what method 10 needs from it.
    """
    if not 0 <= successes <= n:
        raise ValueError(f"{successes} successes out of {n}")
    if n == 0:
        return (0.0, 1.0)
    z2 = z * z
    centre = (successes + z2 / 2) / (n + z2)
    half = z / (n + z2) * math.sqrt(successes * (n - successes) / n + z2 / 4)
    return (max(0.0, centre - half), min(1.0, centre + half))


def _phi(table: PairedTable) -> float:
    """Newcombe's correlation between the two models' outcomes, continuity-corrected when positive.

    The Pearson correlation of the 2x2 table, (ad - bc) / sqrt((a+b)(c+d)(a+c)(b+d)), with its
    numerator replaced by max(ad - bc - n/2, 0) when ad > bc, and 0 when a margin is empty. This is
    method 10 as published: the corrected φ reproduces the paper's Table III (the plain φ does not:
    at a=20, b=2, c=12, d=16 it gives 0.0618 for the lower limit, the paper 0.0562). A positive
    correlation narrows the interval, so the correction errs towards a wider one.
    """
    a, b, c, d = table.a, table.b, table.c, table.d
    margins = (a + b) * (c + d) * (a + c) * (b + d)
    if margins == 0:
        return 0.0
    numerator = float(a * d - b * c)
    if numerator > 0:
        numerator = max(numerator - table.n / 2, 0.0)
    return numerator / math.sqrt(margins)


def newcombe_paired_interval(table: PairedTable, z: float) -> tuple[float, float]:
    """Newcombe's (1998) method 10 interval (L, U) for p_candidate - p_champion = (c - b) / n.

    The Wilson limits of each model's own proportion (candidate (a+c)/n, champion (a+b)/n), at the
    same z, combined through the correlation φ between the two (see `_phi`):

        L = Δ - sqrt((p_ca - l_ca)² - 2φ (p_ca - l_ca)(u_ch - p_ch) + (u_ch - p_ch)²)
        U = Δ + sqrt((u_ca - p_ca)² - 2φ (u_ca - p_ca)(p_ch - l_ch) + (p_ch - l_ch)²)

    clamped to [-1, 1]. With z one-sided (z_one_sided(0.95)), L alone is a 95% lower bound; with
    z two-sided (1.96), (L, U) is a 95% interval. (-1.0, 1.0) when there are no rows.
    """
    n = table.n
    if n == 0:
        return (-1.0, 1.0)
    p_ca = (table.a + table.c) / n
    p_ch = (table.a + table.b) / n
    l_ca, u_ca = wilson_interval(table.a + table.c, n, z)
    l_ch, u_ch = wilson_interval(table.a + table.b, n, z)
    phi = _phi(table)
    below_ca, above_ch = p_ca - l_ca, u_ch - p_ch
    above_ca, below_ch = u_ca - p_ca, p_ch - l_ch
    # max(0, ...): with |φ| <= 1 the radicands are sums of squares minus at most twice a product;
    # only rounding can take them below zero.
    lower = table.delta - math.sqrt(max(0.0, below_ca**2 - 2 * phi * below_ca * above_ch + above_ch**2))
    upper = table.delta + math.sqrt(max(0.0, above_ca**2 - 2 * phi * above_ca * below_ch + below_ch**2))
    return (max(-1.0, lower), min(1.0, upper))


def mcnemar_worse_pvalue(table: PairedTable) -> float:
    """One-sided exact McNemar p-value for "the candidate is worse than the champion".

    Under equal models each discordant row is a fair coin, so b ~ Binomial(b + c, 1/2) and the
    p-value is P(B >= b). 1.0 when no row is discordant: nothing can be concluded from no evidence.
    The two-sided exact test (statsmodels' mcnemar(exact=True)) is min(1, 2p) whenever b >= c.
    """
    discordant = table.b + table.c
    if discordant == 0:
        return 1.0
    return float(stats.binomtest(table.b, discordant, 0.5, alternative="greater").pvalue)


def holm_adjusted(pvalues: Sequence[float]) -> list[float]:
    """Holm's (1979) step-down adjusted p-values, in the input's order.

    Sorted ascending, the i-th smallest (from 0) is multiplied by m - i, then a running maximum
    keeps the adjusted values in the same order as the raw ones, and each is capped at 1. Rejecting
    every adjusted p < alpha controls the family-wise error at alpha whatever the dependence between the
    tests: the classes share the two models, so their tests are not independent.
    """
    raw = np.asarray(pvalues, dtype=np.float64)
    if raw.size == 0:
        return []
    if raw.ndim != 1 or np.isnan(raw).any() or (raw < 0).any() or (raw > 1).any():
        raise ValueError(f"p-values must be a flat sequence in [0, 1], got {list(pvalues)}")
    m = raw.size
    order = np.argsort(raw, kind="stable")
    stepped = np.maximum.accumulate((m - np.arange(m)) * raw[order])
    adjusted = np.empty(m, dtype=np.float64)
    adjusted[order] = np.minimum(stepped, 1.0)
    return [float(p) for p in adjusted]


def rows_needed(table: PairedTable, margin: float, z: float) -> int:
    """Rows a class needs before a candidate equal to the champion could show Δ > -margin.

    With the models equal, Δ's standard error is sqrt(ψ / n) for discordance ψ, so the lower bound
    clears -margin once z·sqrt(ψ/n) < margin: n > z²ψ / margin². ψ is the table's observed
    discordance, floored at the Wilson upper limit (same z) of 0 discordant rows out of n,
    z² / (n + z²): a class whose rows never disagreed has not shown that its models never disagree,
    only that they disagree less often than about that. Without the floor such a class would need
    "0 rows" (the formula's lie); with it, it needs what a discordance it cannot rule out would need.
    The floor is 1 (every row discordant, the worst case) for a class with no rows, and is
    non-decreasing in b + c, so one more disagreement never lowers the figure.
    """
    if margin <= 0:
        raise ValueError(f"margin must be positive, got {margin}")
    floor = wilson_interval(0, table.n, z)[1]
    psi = max(table.discordance, floor)
    return math.ceil(z * z * psi / margin**2)
