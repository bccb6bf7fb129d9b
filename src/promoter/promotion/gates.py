"""Offline gates: does the candidate deserve to go further? Pure functions of evidence and the spec.

Every gate reports its actual value, threshold and verdict, so a rejected promotion says exactly why
and a passing one records the evidence. Advisory gates (`enforce: false`) are evaluated and reported
but never block, so a new gate can be trialled before it is trusted; `promoter gates replay` goes one
step further and judges a new definition against the evidence past promotions kept.

Verdicts: `pass`, `fail`, `skipped` (nothing to judge: no champion yet, say) and `inconclusive`: the
paired gate could show neither that the candidate is no worse nor that it is worse. An enforced
inconclusive gate sends the promotion to a person (AwaitingApproval), with the evidence.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field

from promoter.promotion.paired import (
    PairedTable,
    holm_adjusted,
    mcnemar_worse_pvalue,
    newcombe_paired_interval,
    rows_needed,
    z_one_sided,
)
from promoter.promotion.spec import (
    Gates,
    LatencyGate,
    LoadTest,
    MinGain,
    PairedGate,
    PromotionSpec,
    RegressionGate,
    ReproducibilityGate,
    SetGates,
)

Verdict = Literal["pass", "fail", "inconclusive", "skipped"]
Decision = Literal["pass", "fail", "inconclusive"]
GateKind = Literal[
    "absolute", "per_class", "regression", "paired", "min_gain", "latency", "reproducibility", "load"
]
# The metric every class's paired gate is on: recall is the class's accuracy, a proportion of the
# same rows for both models, which is what a paired interval needs.
PAIRED_METRIC = "recall"


class GateResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    kind: GateKind
    metric: str
    actual: float | None
    threshold: float | None
    comparison: Literal[">=", "<=", ">"] = ">="
    verdict: Verdict
    enforced: bool
    detail: str = ""
    # The numbers behind a statistical verdict (rows, discordant pairs, bounds, p-values), so that a
    # report can be checked by hand.
    statistics: dict[str, float] = Field(default_factory=dict)


class ModelEvidence(BaseModel):
    """Who was measured: a run, optionally a registered version, and its held-out metrics."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    version: str | None = None
    metrics: dict[str, float]


class PairedCounts(BaseModel):
    """Candidate and champion on the same rows: a = both right, b = only the champion right,
    c = only the candidate right, d = both wrong. What a paired gate is judged on, kept in the report
    so that any later gate definition can be judged on it too."""

    model_config = ConfigDict(frozen=True)

    a: int = Field(ge=0)
    b: int = Field(ge=0)
    c: int = Field(ge=0)
    d: int = Field(ge=0)

    @classmethod
    def of(cls, table: PairedTable) -> PairedCounts:
        return cls(a=table.a, b=table.b, c=table.c, d=table.d)

    def table(self) -> PairedTable:
        return PairedTable(self.a, self.b, self.c, self.d)

    @property
    def n(self) -> int:
        return self.a + self.b + self.c + self.d


class PairedEvidence(BaseModel):
    """Paired outcomes over every row of a set, and over the rows of each true class."""

    model_config = ConfigDict(frozen=True)

    overall: PairedCounts
    per_class: dict[str, PairedCounts]


class SetEvidence(BaseModel):
    """What one evaluation set measured of both models: all any of its gates is judged on."""

    model_config = ConfigDict(frozen=True)

    data_version: str
    data_sha256: str
    samples: int
    class_names: tuple[str, ...]
    candidate: dict[str, float]
    champion: dict[str, float] | None = None
    paired: PairedEvidence | None = None  # None without a champion


class ReproductionEvidence(BaseModel):
    """The candidate retrained from its recorded lineage, and its held-out metrics against the
    original's (promoter.pipelines.reproduce): facts, the tolerance is the gate's."""

    model_config = ConfigDict(frozen=True)

    cuda: bool  # either training ran on CUDA: bit-for-bit equality is not promised there
    device: str
    original_device: str
    recorded_data_sha256: str
    current_data_sha256: str
    # what makes the retraining no evidence whatever the metrics: changed data, another config, a
    # checkout with uncommitted changes
    problems: list[str] = Field(default_factory=list)
    # metric -> (original, reproduced); empty when the data changed (nothing honest to compare)
    metrics: dict[str, tuple[float, float]] = Field(default_factory=dict)


class GateReport(BaseModel):
    """The evidence of one evaluation and the gates judged on it (an MLflow artifact of the run).

    Fields added after the first release default to "not measured", so older reports still load
    (history, replay); a gate that needs what a report lacks is skipped, saying so."""

    model_config = ConfigDict(frozen=True)

    model: str
    promotion: str
    data_version: str
    data_sha256: str
    split: str
    samples: int
    candidate: ModelEvidence
    champion: ModelEvidence | None
    gates: list[GateResult]
    class_names: tuple[str, ...] = ()
    paired: PairedEvidence | None = None
    datasets: dict[str, SetEvidence] = Field(default_factory=dict)
    reproduction: ReproductionEvidence | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def decision(self) -> Decision:
        return decide_gates(self.gates)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def passed(self) -> bool:
        return self.decision == "pass"

    @property
    def blocking_failures(self) -> list[GateResult]:
        return [g for g in self.gates if g.enforced and g.verdict == "fail"]

    @property
    def inconclusive(self) -> list[GateResult]:
        return [g for g in self.gates if g.enforced and g.verdict == "inconclusive"]

    def held_out(self) -> SetEvidence:
        """The held-out split's evidence, shaped as every evaluation set's is."""
        return SetEvidence(
            data_version=self.data_version,
            data_sha256=self.data_sha256,
            samples=self.samples,
            class_names=self.class_names,
            candidate=self.candidate.metrics,
            champion=self.champion.metrics if self.champion else None,
            paired=self.paired,
        )

    def to_json(self) -> str:
        return self.model_dump_json(indent=2) + "\n"


def decide_gates(results: list[GateResult]) -> Decision:
    """Fail if an enforced gate failed; else inconclusive if an enforced gate was; else pass."""
    enforced = {g.verdict for g in results if g.enforced}
    if "fail" in enforced:
        return "fail"
    return "inconclusive" if "inconclusive" in enforced else "pass"


def _floor(
    name: str,
    kind: Literal["absolute", "per_class"],
    metric: str,
    actual: float | None,
    minimum: float,
    enforce: bool,
) -> GateResult:
    if actual is None:
        return GateResult(
            name=name,
            kind=kind,
            metric=metric,
            actual=None,
            threshold=minimum,
            verdict="fail",
            enforced=enforce,
            detail=f"metric {metric!r} was not measured",
        )
    return GateResult(
        name=name,
        kind=kind,
        metric=metric,
        actual=actual,
        threshold=minimum,
        verdict="pass" if actual >= minimum else "fail",
        enforced=enforce,
    )


def evaluate_gates(
    gates: Gates,
    held_out: SetEvidence,
    *,
    datasets: Mapping[str, SetEvidence] | None = None,
    reproduction: ReproductionEvidence | None = None,
) -> list[GateResult]:
    """Every gate the spec declares, judged on the evidence: the held-out split's (floors, paired,
    minGain, regression, latency), each further evaluation set's under its own thresholds, and the
    reproduction's.

    A metric the spec names but the evaluation did not produce fails its gate: a typo in a gate must
    not silently pass. Evidence a report does not hold at all (a set not evaluated, a reproduction or
    latency not measured: an older report being replayed) skips the gate, saying so.
    """
    results = set_gates(gates, held_out)
    if gates.regression is not None:
        results.append(_regression(gates.regression, held_out.candidate, held_out.champion))
    if gates.latency is not None:
        results += _latency(gates.latency, held_out)
    if gates.reproducibility is not None:
        results.append(_reproducibility(gates.reproducibility, reproduction))
    for name, rules in gates.datasets.items():
        prefix = dataset_prefix(name)
        evidence = (datasets or {}).get(name)
        if evidence is None:
            why = f"evaluation set {name!r} was not evaluated"
            results.append(_skipped(prefix.rstrip("/"), "absolute", "", why))
            continue
        results += [
            result.model_copy(update={"name": prefix + result.name}) for result in set_gates(rules, evidence)
        ]
    return results


def set_gates(rules: SetGates, evidence: SetEvidence) -> list[GateResult]:
    """The gates any evaluation set can have: floors on the candidate, and paired against the champion."""
    candidate = evidence.candidate
    results = [
        _floor(absolute_gate(metric), "absolute", metric, candidate.get(metric), rule.min, rule.enforce)
        for metric, rule in rules.absolute.items()
    ]
    for metric, rule in rules.per_class.items():
        for class_name in evidence.class_names:
            key = _class_metric(class_name, metric)
            name = f"{per_class_gate(metric)}[{class_name}]"
            results.append(_floor(name, "per_class", key, candidate.get(key), rule.min, rule.enforce))
    if rules.paired is not None:
        results += _paired(rules.paired, evidence)
    if rules.min_gain is not None:
        results.append(_min_gain(rules.min_gain, evidence))
    return results


def _class_metric(class_name: str, metric: str) -> str:
    """As promoter.pipelines.metrics names it (the core imports nothing of promoter's)."""
    return f"class/{class_name}/{metric}"


def _skipped(name: str, kind: GateKind, metric: str, detail: str, enforce: bool = True) -> GateResult:
    """Nothing to judge (no champion yet, evidence a report does not hold): said, never a pass."""
    return GateResult(
        name=name,
        kind=kind,
        metric=metric,
        actual=None,
        threshold=None,
        verdict="skipped",
        enforced=enforce,
        detail=detail,
    )


NO_CHAMPION = "no @champion yet: nothing to compare with"
NOT_RECORDED = "paired outcomes were not recorded"


def _paired(rule: PairedGate, evidence: SetEvidence) -> list[GateResult]:
    """Per class: pass when the lower bound of the recall difference is above -margin (each class at
    the stated confidence: all must pass, an intersection-union test, so no correction is due); fail
    when the class is significantly worse (exact McNemar, Holm-adjusted across the classes) by more
    than the margin; inconclusive otherwise, saying how many rows the margin would need."""
    family = paired_gate()
    if evidence.champion is None:
        return [_skipped(family, "paired", PAIRED_METRIC, NO_CHAMPION, rule.enforce)]
    if evidence.paired is None:
        return [_skipped(family, "paired", PAIRED_METRIC, NOT_RECORDED, rule.enforce)]
    z = z_one_sided(rule.confidence)
    alpha = 1.0 - rule.confidence
    tables = [
        evidence.paired.per_class.get(name, PairedCounts(a=0, b=0, c=0, d=0)).table()
        for name in evidence.class_names
    ]
    pvalues = [mcnemar_worse_pvalue(table) for table in tables]
    results = []
    for class_name, table, p, p_holm in zip(
        evidence.class_names, tables, pvalues, holm_adjusted(pvalues), strict=True
    ):
        lower, upper = newcombe_paired_interval(table, z)
        needed = rows_needed(table, rule.margin, z)
        statistics = {
            "rows": table.n,
            "championOnly": table.b,
            "candidateOnly": table.c,
            "delta": table.delta,
            "lower": lower,
            "upper": upper,
            "p": p,
            "pHolm": p_holm,
            "rowsNeeded": needed,
        }
        change = f"recall {table.delta:+.3f} ({table.c} gained, {table.b} lost of {table.n})"
        verdict: Verdict
        if p_holm < alpha and table.delta < -rule.margin:
            verdict = "fail"
            detail = f"{change}: significantly worse (McNemar p {p:.3g}, Holm {p_holm:.3g})"
        elif table.n < rule.min_rows:
            verdict = "inconclusive"
            detail = f"{change}: {table.n} rows, fewer than minRows {rule.min_rows}"
        elif lower > -rule.margin:
            verdict = "pass"
            detail = f"{change}: lower bound {lower:+.3f} > -{rule.margin:g}"
        else:
            verdict = "inconclusive"
            detail = (
                f"{change}: lower bound {lower:+.3f} is not above -{rule.margin:g}, nor significantly worse; "
            )
            if needed > table.n:
                detail += (
                    f"about {needed} rows would show a margin of {rule.margin:g} for models this discordant"
                )
            else:
                detail += "the drop observed keeps the bound below the margin: more rows would decide"
        results.append(
            GateResult(
                name=f"{family}[{class_name}]",
                kind="paired",
                metric=_class_metric(class_name, PAIRED_METRIC),
                actual=lower,
                threshold=-rule.margin,
                comparison=">",
                verdict=verdict,
                enforced=rule.enforce,
                detail=detail,
                statistics=statistics,
            )
        )
    return results


def _min_gain(rule: MinGain, evidence: SetEvidence) -> GateResult:
    """The lower bound of the paired interval of candidate - champion must reach `min`."""
    name = min_gain_gate(rule.metric)
    if evidence.champion is None:
        return _skipped(name, "min_gain", rule.metric, NO_CHAMPION, rule.enforce)
    if evidence.paired is None:
        return _skipped(name, "min_gain", rule.metric, NOT_RECORDED, rule.enforce)
    if rule.metric == "accuracy":
        counts: PairedCounts | None = evidence.paired.overall
    else:
        counts = evidence.paired.per_class.get(rule.metric.split("/")[1])
    if counts is None:
        return GateResult(
            name=name,
            kind="min_gain",
            metric=rule.metric,
            actual=None,
            threshold=rule.min,
            verdict="fail",
            enforced=rule.enforce,
            detail=f"metric {rule.metric!r} was not measured",
        )
    table = counts.table()
    lower, upper = newcombe_paired_interval(table, z_one_sided(rule.confidence))
    return GateResult(
        name=name,
        kind="min_gain",
        metric=rule.metric,
        actual=lower,
        threshold=rule.min,
        verdict="pass" if lower >= rule.min else "fail",
        enforced=rule.enforce,
        detail=(
            f"{rule.metric} {table.delta:+.4f} over {table.n} rows ({table.c} gained, {table.b} lost); "
            f"{rule.confidence:.0%} lower bound {lower:+.4f}"
        ),
        statistics={"rows": table.n, "delta": table.delta, "lower": lower, "upper": upper},
    )


def _latency(rule: LatencyGate, evidence: SetEvidence) -> list[GateResult]:
    """The candidate's p95 at batch 1 against a budget, and its median over the champion's (measured
    in the same process, interleaved) at batch 1 and at the rule's batch size.

    The ratio is of medians: on a busy machine the p95 of 50 passes measures the scheduler, not the
    model (two identical networks gave p95 ratios from 0.11 to 16.7 on two loaded cores, their
    medians 0.95 to 1.05; benchmarks/latency_gate.py), and a gate that fails equal models is worse
    than none. Both percentiles are logged for both models."""
    results = []
    candidate, champion = evidence.candidate, evidence.champion
    if rule.max_p95_ms is not None:
        name, metric = latency_gate("p95Ms"), latency_metric(1, "p95")
        actual = candidate.get(metric)
        if actual is None:
            results.append(_skipped(name, "latency", metric, f"{metric} was not measured", rule.enforce))
        else:
            results.append(
                GateResult(
                    name=name,
                    kind="latency",
                    metric=metric,
                    actual=actual,
                    threshold=rule.max_p95_ms,
                    comparison="<=",
                    verdict="pass" if actual <= rule.max_p95_ms else "fail",
                    enforced=rule.enforce,
                    detail=f"candidate p95 at batch 1 over {rule.rounds} rounds",
                )
            )
    if rule.max_ratio is None:
        return results
    for batch in (1, rule.batch_size):
        name, metric = latency_gate("p50Ratio") + f"[batch{batch}]", latency_metric(batch, "p50")
        if champion is None:
            results.append(_skipped(name, "latency", metric, NO_CHAMPION, rule.enforce))
            continue
        mine, theirs = candidate.get(metric), champion.get(metric)
        if mine is None or theirs is None or theirs <= 0:
            results.append(
                _skipped(name, "latency", metric, f"{metric} was not measured for both", rule.enforce)
            )
            continue
        ratio = mine / theirs
        results.append(
            GateResult(
                name=name,
                kind="latency",
                metric=metric,
                actual=ratio,
                threshold=rule.max_ratio,
                comparison="<=",
                verdict="pass" if ratio <= rule.max_ratio else "fail",
                enforced=rule.enforce,
                detail=f"median {mine:.3f} ms against the champion's {theirs:.3f} ms at batch {batch}",
                statistics={"candidateP50Ms": mine, "championP50Ms": theirs},
            )
        )
    return results


def _reproducibility(rule: ReproducibilityGate, evidence: ReproductionEvidence | None) -> GateResult:
    """Retrained from its lineage, the candidate must score the same: exactly on CPU, within the
    tolerance when CUDA trained either (its kernels are not bit-for-bit deterministic)."""
    name = reproducibility_gate()
    if evidence is None:
        return _skipped(name, "reproducibility", "", "the candidate was not retrained", rule.enforce)
    tolerance = reproduction_tolerance(rule.gpu_tolerance, evidence.cuda)
    problems = list(evidence.problems)
    beyond = metrics_beyond(evidence.metrics, tolerance)
    if beyond is not None:
        problems.append(beyond)
    if not evidence.metrics and not problems:
        problems.append("no held-out metric was compared")
    differences = [abs(reproduced - original) for original, reproduced in evidence.metrics.values()]
    where = f"retrained on {evidence.device} (original: {evidence.original_device})"
    return GateResult(
        name=name,
        kind="reproducibility",
        metric="max |difference| of held-out metrics",
        actual=max(differences, default=None),
        threshold=tolerance,
        comparison="<=",
        verdict="fail" if problems else "pass",
        enforced=rule.enforce,
        detail="; ".join([*problems, where]),
    )


def reproduction_tolerance(gpu_tolerance: float, cuda: bool) -> float:
    """The largest |difference| a retrained model may show: none on CPU, where training is bit for
    bit deterministic; `gpu_tolerance` when CUDA trained either side."""
    return gpu_tolerance if cuda else 0.0


def metrics_beyond(
    metrics: Mapping[str, tuple[float, float]], tolerance: float, shown: int = 3
) -> str | None:
    """One problem naming the worst metrics (original, reproduced) whose |difference| exceeds the
    tolerance, or None: the gate's judgement, and `promoter reproduce`'s."""
    beyond = sorted(
        (
            (metric, original, reproduced)
            for metric, (original, reproduced) in metrics.items()
            if abs(reproduced - original) > tolerance
        ),
        key=lambda item: abs(item[2] - item[1]),
        reverse=True,
    )
    if not beyond:
        return None
    worst = ", ".join(
        f"{metric} {original:.4f} -> {reproduced:.4f}" for metric, original, reproduced in beyond[:shown]
    )
    more = f" and {len(beyond) - shown} more" if len(beyond) > shown else ""
    return f"{len(beyond)} held-out metrics differ beyond {tolerance:g}: {worst}{more}"


def _regression(
    rule: RegressionGate, candidate: dict[str, float], champion: dict[str, float] | None
) -> GateResult:
    actual = candidate.get(rule.metric)
    threshold: float | None = None
    if champion is None:
        verdict: Verdict = "skipped"
        detail = "no @champion yet: nothing to regress against"
    elif actual is None or rule.metric not in champion:
        verdict, detail = "fail", f"metric {rule.metric!r} missing for candidate or champion"
    else:
        threshold = champion[rule.metric] - rule.max_drop
        verdict = "pass" if actual >= threshold else "fail"
        detail = f"champion {champion[rule.metric]:.4f} - maxDrop {rule.max_drop}"
    return GateResult(
        name=regression_gate(rule.metric),
        kind="regression",
        metric=rule.metric,
        actual=actual,
        threshold=threshold,
        verdict=verdict,
        enforced=rule.enforce,
        detail=detail,
    )


def evaluate_load_gates(
    profile: LoadTest, *, p95_ms: float, error_rate: float, rps: float
) -> list[GateResult]:
    """The online gates, judged on what the load test measured against the preview.

    Only the budgets the profile sets are gates; a load test without budgets still has to produce a
    result (a crashed or empty load test is a failure upstream, never a pass here).
    """
    measured = {"p95Ms": p95_ms, "errorRate": error_rate, "rps": rps}
    results = []
    for metric, threshold, comparison in load_budgets(profile):
        actual = measured[metric]
        ok = actual <= threshold if comparison == "<=" else actual >= threshold
        results.append(
            GateResult(
                name=load_test_gate(metric),
                kind="load",
                metric=metric,
                actual=actual,
                threshold=threshold,
                comparison=comparison,
                verdict="pass" if ok else "fail",
                enforced=profile.enforce,
            )
        )
    return results


# --- gate names: how results, reports, status and metrics name each gate, in one place ------------


def absolute_gate(metric: str) -> str:
    return f"absolute.{metric}"


def per_class_gate(metric: str) -> str:
    """The rule's name; each class's result adds `[class]` to it (see `gate_family`)."""
    return f"perClass.{metric}"


def regression_gate(metric: str) -> str:
    return f"regression.{metric}"


def load_test_gate(metric: str) -> str:
    return f"loadTest.{metric}"


def paired_gate() -> str:
    """The rule's name; each class's result adds `[class]` to it."""
    return f"paired.{PAIRED_METRIC}"


def min_gain_gate(metric: str) -> str:
    return f"minGain.{metric}"


def latency_gate(budget: str) -> str:
    return f"latency.{budget}"


def reproducibility_gate() -> str:
    return "reproducibility.heldOut"


def dataset_prefix(name: str) -> str:
    """What a further evaluation set's results are prefixed with: `datasets.recent/absolute.accuracy`."""
    return f"datasets.{name}/"


def latency_metric(batch: int, statistic: Literal["p50", "p95"]) -> str:
    """The forward-latency metric the evaluation logs for both models (the champion's under
    `champion/`), in milliseconds: `latency/batch1/p95_ms`."""
    return f"latency/batch{batch}/{statistic}_ms"


def gate_family(name: str) -> str:
    """A result's name without its class (`perClass.f1[3]` -> `perClass.f1`): the rule it checks."""
    return name.split("[", 1)[0]


def load_budgets(profile: LoadTest) -> list[tuple[str, float, Literal[">=", "<="]]]:
    """The budgets a load-test profile sets, as (metric, threshold, comparison): only these are gates."""
    budgets: list[tuple[str, float | None, Literal[">=", "<="]]] = [
        ("p95Ms", profile.max_p95_ms, "<="),
        ("errorRate", profile.max_error_rate, "<="),
        ("rps", profile.min_rps, ">="),
    ]
    return [
        (metric, threshold, comparison) for metric, threshold, comparison in budgets if threshold is not None
    ]


def declared_gates(spec: PromotionSpec) -> list[tuple[str, bool]]:
    """Every rule a spec declares, by the name its results carry (per-class rules once, without a
    class), and whether it is enforced: what can fail, known before anything is evaluated."""
    gates = spec.gates
    declared = _declared_set_gates(gates, "")
    if gates.regression is not None:
        declared.append((regression_gate(gates.regression.metric), gates.regression.enforce))
    if gates.latency is not None:
        latency = gates.latency
        if latency.max_p95_ms is not None:
            declared.append((latency_gate("p95Ms"), latency.enforce))
        if latency.max_ratio is not None:  # one rule; each batch size's result adds `[batchN]`
            declared.append((latency_gate("p50Ratio"), latency.enforce))
    if gates.reproducibility is not None:
        declared.append((reproducibility_gate(), gates.reproducibility.enforce))
    for name, rules in gates.datasets.items():
        declared += _declared_set_gates(rules, dataset_prefix(name))
    if spec.rollout is not None:
        profile = spec.rollout.load_test
        declared += [(load_test_gate(metric), profile.enforce) for metric, _, _ in load_budgets(profile)]
    return declared


def _declared_set_gates(rules: SetGates, prefix: str) -> list[tuple[str, bool]]:
    declared = [(prefix + absolute_gate(metric), rule.enforce) for metric, rule in rules.absolute.items()]
    declared += [(prefix + per_class_gate(metric), rule.enforce) for metric, rule in rules.per_class.items()]
    if rules.paired is not None:
        declared.append((prefix + paired_gate(), rules.paired.enforce))
    if rules.min_gain is not None:
        declared.append((prefix + min_gain_gate(rules.min_gain.metric), rules.min_gain.enforce))
    return declared
