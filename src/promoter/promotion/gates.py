"""Offline gates: does the candidate deserve to go further? Pure functions of metrics and the spec.

Every gate reports its actual value, threshold and verdict, so a rejected promotion says exactly why
and a passing one records the evidence. Advisory gates (`enforce: false`) are evaluated and reported
but never block, so a new gate can be trialled before it is trusted.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, computed_field

from promoter.promotion.spec import Gates, LoadTest, PromotionSpec, RegressionGate

Verdict = Literal["pass", "fail", "skipped"]


class GateResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    kind: Literal["absolute", "per_class", "regression", "load"]
    metric: str
    actual: float | None
    threshold: float | None
    comparison: Literal[">=", "<="] = ">="
    verdict: Verdict
    enforced: bool
    detail: str = ""


class ModelEvidence(BaseModel):
    """Who was measured: a run, optionally a registered version, and its held-out metrics."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    version: str | None = None
    metrics: dict[str, float]


class GateReport(BaseModel):
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

    @computed_field  # type: ignore[prop-decorator]
    @property
    def passed(self) -> bool:
        return all(g.verdict != "fail" for g in self.gates if g.enforced)

    @property
    def blocking_failures(self) -> list[GateResult]:
        return [g for g in self.gates if g.enforced and g.verdict == "fail"]

    def to_json(self) -> str:
        return self.model_dump_json(indent=2) + "\n"


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
    candidate: dict[str, float],
    champion: dict[str, float] | None,
    class_names: tuple[str, ...],
) -> list[GateResult]:
    """One result per absolute floor, per class and metric floor, and the champion regression check.

    A metric the spec names but the evaluation did not produce fails its gate: a typo in a gate must
    not silently pass.
    """
    results = [
        _floor(absolute_gate(metric), "absolute", metric, candidate.get(metric), rule.min, rule.enforce)
        for metric, rule in gates.absolute.items()
    ]
    for metric, rule in gates.per_class.items():
        for class_name in class_names:
            key = f"class/{class_name}/{metric}"
            results.append(
                _floor(
                    f"{per_class_gate(metric)}[{class_name}]",
                    "per_class",
                    key,
                    candidate.get(key),
                    rule.min,
                    rule.enforce,
                )
            )
    if gates.regression is not None:
        results.append(_regression(gates.regression, candidate, champion))
    return results


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
    declared = [(absolute_gate(metric), rule.enforce) for metric, rule in gates.absolute.items()]
    declared += [(per_class_gate(metric), rule.enforce) for metric, rule in gates.per_class.items()]
    if gates.regression is not None:
        declared.append((regression_gate(gates.regression.metric), gates.regression.enforce))
    if spec.rollout is not None:
        profile = spec.rollout.load_test
        declared += [(load_test_gate(metric), profile.enforce) for metric, _, _ in load_budgets(profile)]
    return declared
