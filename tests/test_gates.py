from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from promoter.promotion.gates import (
    GateReport,
    GateResult,
    ModelEvidence,
    PairedCounts,
    PairedEvidence,
    ReproductionEvidence,
    SetEvidence,
    decide_gates,
    declared_gates,
    evaluate_gates,
    evaluate_load_gates,
    gate_family,
    latency_metric,
)
from promoter.promotion.spec import Gates, PromotionSpec

CLASSES = ("cat", "dog")


def metrics(accuracy: float, cat_f1: float = 0.9, dog_f1: float = 0.9) -> dict[str, float]:
    return {
        "accuracy": accuracy,
        "macro_f1": (cat_f1 + dog_f1) / 2,
        "class/cat/f1": cat_f1,
        "class/dog/f1": dog_f1,
    }


def measured(
    candidate: dict[str, float],
    champion: dict[str, float] | None = None,
    classes: tuple[str, ...] = CLASSES,
    paired: PairedEvidence | None = None,
) -> SetEvidence:
    """What an evaluation set measured, as the evaluation hands it to the gates."""
    return SetEvidence(
        data_version="v1",
        data_sha256="0" * 64,
        samples=100,
        class_names=classes,
        candidate=candidate,
        champion=champion,
        paired=paired,
    )


def verdicts(
    gates: Gates, candidate: dict[str, float], champion: dict[str, float] | None = None
) -> dict[str, str]:
    return {g.name: g.verdict for g in evaluate_gates(gates, measured(candidate, champion))}


def test_absolute_floors_pass_at_the_threshold_and_fail_below() -> None:
    gates = Gates.model_validate({"absolute": {"accuracy": 0.9}})
    assert verdicts(gates, metrics(0.9)) == {"absolute.accuracy": "pass"}
    assert verdicts(gates, metrics(0.8999)) == {"absolute.accuracy": "fail"}


def test_per_class_floors_check_every_class() -> None:
    gates = Gates.model_validate({"perClass": {"f1": 0.85}})
    assert verdicts(gates, metrics(0.9, cat_f1=0.95, dog_f1=0.6)) == {
        "perClass.f1[cat]": "pass",
        "perClass.f1[dog]": "fail",
    }


def test_regression_is_skipped_without_a_champion_and_enforced_with_one() -> None:
    gates = Gates.model_validate({"regression": {"metric": "accuracy", "maxDrop": 0.01}})
    assert verdicts(gates, metrics(0.5)) == {"regression.accuracy": "skipped"}
    assert verdicts(gates, metrics(0.95), champion=metrics(0.955)) == {"regression.accuracy": "pass"}
    assert verdicts(gates, metrics(0.94), champion=metrics(0.955)) == {"regression.accuracy": "fail"}
    [result] = evaluate_gates(gates, measured(metrics(0.94), metrics(0.955)))
    assert result.threshold is not None and abs(result.threshold - 0.945) < 1e-12


def test_a_gate_on_an_unmeasured_metric_fails_rather_than_passing() -> None:
    gates = Gates.model_validate({"absolute": {"auc": 0.9}, "perClass": {"recall": 0.5}})
    results = evaluate_gates(gates, measured(metrics(0.99)))
    assert {r.verdict for r in results} == {"fail"}
    assert "was not measured" in results[0].detail


def report(gates: Gates, candidate: dict[str, float]) -> GateReport:
    return GateReport(
        model="m",
        promotion="p",
        data_version="v1",
        data_sha256="0" * 64,
        split="test",
        samples=10,
        candidate=ModelEvidence(run_id="r", metrics=candidate),
        champion=None,
        gates=evaluate_gates(gates, measured(candidate)),
    )


def test_advisory_gates_are_reported_but_never_block() -> None:
    gates = Gates.model_validate({"absolute": {"accuracy": {"min": 0.99, "enforce": False}, "macro_f1": 0.5}})
    result = report(gates, metrics(0.9))
    assert [(g.name, g.verdict, g.enforced) for g in result.gates] == [
        ("absolute.accuracy", "fail", False),
        ("absolute.macro_f1", "pass", True),
    ]
    assert result.passed and result.blocking_failures == []


def test_the_report_json_carries_the_decision() -> None:
    gates = Gates.model_validate({"absolute": {"accuracy": 0.95}})
    document = json.loads(report(gates, metrics(0.9)).to_json())
    assert document["passed"] is False
    assert document["gates"][0] == {
        "name": "absolute.accuracy",
        "kind": "absolute",
        "metric": "accuracy",
        "actual": 0.9,
        "threshold": 0.95,
        "comparison": ">=",
        "verdict": "fail",
        "enforced": True,
        "detail": "",
        "statistics": {},
    }
    assert GateReport.model_validate(document).passed is False


def test_every_result_is_named_after_a_rule_the_spec_declares() -> None:
    """The metrics initialise one failure counter per declared rule (operator/metrics.py): a result
    whose name no rule carries would be counted under a series nobody initialised."""
    spec = PromotionSpec.model_validate(
        {
            "model": "digits",
            "source": {"modelVersion": "1"},
            "gates": {
                "absolute": {"accuracy": 0.9},
                "perClass": {"f1": {"min": 0.8, "enforce": False}},
                "regression": {"metric": "accuracy", "maxDrop": 0.01},
            },
            "rollout": {"name": "digits-serving", "loadTest": {"maxP95Ms": 50, "minRps": 10}},
        }
    )
    candidate = {"accuracy": 0.95, "class/0/f1": 0.9, "class/1/f1": 0.7}
    results = evaluate_gates(spec.gates, measured(candidate, {"accuracy": 0.96}, ("0", "1")))
    assert spec.rollout is not None
    results += evaluate_load_gates(spec.rollout.load_test, p95_ms=30.0, error_rate=0.0, rps=5.0)

    declared = dict(declared_gates(spec))
    assert declared == {
        "absolute.accuracy": True,
        "perClass.f1": False,
        "regression.accuracy": True,
        "loadTest.p95Ms": True,
        "loadTest.rps": True,
    }
    assert {(gate_family(r.name), r.enforced) for r in results} == set(declared.items())


# --- paired gates against the champion ------------------------------------------------------------


def counts(a: int, b: int, c: int, d: int = 0) -> PairedCounts:
    return PairedCounts(a=a, b=b, c=c, d=d)


def paired_evidence(per_class: dict[str, PairedCounts]) -> SetEvidence:
    overall = PairedCounts(
        a=sum(t.a for t in per_class.values()),
        b=sum(t.b for t in per_class.values()),
        c=sum(t.c for t in per_class.values()),
        d=sum(t.d for t in per_class.values()),
    )
    classes = tuple(per_class)
    return measured(metrics(0.9), metrics(0.9), classes, PairedEvidence(overall=overall, per_class=per_class))


PAIRED = Gates.model_validate({"paired": {"margin": 0.1, "minRows": 20}})


def by_name(results: list[GateResult]) -> dict[str, GateResult]:
    return {r.name: r for r in results}


def test_a_class_that_cannot_be_told_apart_from_the_champion_passes_by_its_lower_bound() -> None:
    [same] = evaluate_gates(PAIRED, paired_evidence({"cat": counts(40, 0, 0)}))
    assert same.verdict == "pass"
    assert same.name == "paired.recall[cat]" and same.metric == "class/cat/recall"
    # 40/40 for both: the lower bound is Wilson's at n=40, z=1.645: -(1 - 40/(40 + z^2)) = -0.0634
    assert same.actual is not None and abs(same.actual + 0.0634) < 5e-4
    assert same.threshold == -0.1 and same.comparison == ">"


def test_a_class_significantly_worse_by_more_than_the_margin_fails_after_holm() -> None:
    results = by_name(
        evaluate_gates(PAIRED, paired_evidence({"cat": counts(40, 0, 0), "dog": counts(30, 10, 0)}))
    )
    dog = results["paired.recall[dog]"]
    assert dog.verdict == "fail"
    # exact one-sided McNemar: 10 lost, none gained: 0.5**10; Holm over two classes doubles the smaller
    assert abs(dog.statistics["p"] - 0.5**10) < 1e-12
    assert abs(dog.statistics["pHolm"] - 2 * 0.5**10) < 1e-12
    assert dog.statistics["delta"] == -0.25
    assert "significantly worse" in dog.detail
    assert results["paired.recall[cat]"].verdict == "pass"


def test_neither_no_worse_nor_worse_is_inconclusive_and_says_how_many_rows_it_would_take() -> None:
    [dropped] = evaluate_gates(PAIRED, paired_evidence({"cat": counts(30, 3, 0, 1)}))
    assert dropped.verdict == "inconclusive"  # -0.088: not significant, not shown within 0.1
    assert "more rows would decide" in dropped.detail
    tight = Gates.model_validate({"paired": {"margin": 0.05}})
    [even] = evaluate_gates(tight, paired_evidence({"cat": counts(36, 2, 2)}))
    assert even.verdict == "inconclusive"
    # z^2 * psi / margin^2 = 1.6449^2 * 0.1 / 0.05^2: a class as discordant needs 109 rows for 0.05
    assert even.statistics["rowsNeeded"] == 109
    assert "about 109 rows would show a margin of 0.05" in even.detail


def test_a_class_with_fewer_rows_than_min_rows_is_inconclusive() -> None:
    [result] = evaluate_gates(PAIRED, paired_evidence({"cat": counts(10, 0, 0)}))
    assert result.verdict == "inconclusive"
    assert "fewer than minRows 20" in result.detail


def test_an_inconclusive_enforced_gate_makes_the_report_inconclusive_and_an_advisory_one_does_not() -> None:
    evidence = paired_evidence({"cat": counts(30, 3, 0, 1)})
    enforced = evaluate_gates(PAIRED, evidence)
    assert decide_gates(enforced) == "inconclusive"
    advisory = Gates.model_validate({"paired": {"margin": 0.1, "enforce": False}})
    assert decide_gates(evaluate_gates(advisory, evidence)) == "pass"


def test_paired_gates_are_skipped_without_a_champion() -> None:
    gates = Gates.model_validate({"paired": {}, "minGain": {"min": 0.01}})
    results = evaluate_gates(gates, measured(metrics(0.9)))
    assert [(r.name, r.verdict) for r in results] == [
        ("paired.recall", "skipped"),
        ("minGain.accuracy", "skipped"),
    ]


def test_min_gain_is_judged_on_the_lower_bound_not_the_point_value() -> None:
    evidence = paired_evidence({"cat": counts(40, 1, 5, 4), "dog": counts(40, 1, 5, 4)})  # +0.08 overall
    for required, verdict in ((0.0, "pass"), (0.08, "fail")):
        gates = Gates.model_validate({"minGain": {"metric": "accuracy", "min": required}})
        [result] = evaluate_gates(gates, evidence)
        assert result.statistics["delta"] == 0.08
        assert result.actual is not None and result.actual < 0.08  # the bound, below the point value
        assert result.verdict == verdict, (required, result)
    per_class = Gates.model_validate({"minGain": {"metric": "class/dog/recall", "min": 0.0}})
    [dog] = evaluate_gates(per_class, evidence)
    assert dog.name == "minGain.class/dog/recall" and dog.statistics["rows"] == 50


# --- latency, reproducibility, further evaluation sets --------------------------------------------


def test_latency_gates_budget_the_p95_and_the_median_over_the_champions_at_both_batch_sizes() -> None:
    gates = Gates.model_validate({"latency": {"batchSize": 32, "maxP95Ms": 5, "maxRatio": 1.2}})
    timed = {latency_metric(1, "p95"): 2.0, latency_metric(1, "p50"): 1.0, latency_metric(32, "p50"): 9.0}
    champion = {latency_metric(1, "p50"): 0.9, latency_metric(32, "p50"): 3.0}
    results = by_name(evaluate_gates(gates, measured(metrics(0.9) | timed, metrics(0.9) | champion)))
    assert results["latency.p95Ms"].verdict == "pass" and results["latency.p95Ms"].comparison == "<="
    assert results["latency.p50Ratio[batch1]"].verdict == "pass"
    slower = results["latency.p50Ratio[batch32]"]
    assert slower.verdict == "fail" and slower.actual == 3.0
    assert "3.000 ms" in slower.detail
    alone = by_name(evaluate_gates(gates, measured(metrics(0.9) | timed)))
    assert alone["latency.p50Ratio[batch1]"].verdict == "skipped"


def test_a_latency_gate_needs_a_budget() -> None:
    with pytest.raises(ValidationError, match="maxP95Ms, maxRatio or both"):
        Gates.model_validate({"latency": {"batchSize": 8}})


def reproduction(**changes: object) -> ReproductionEvidence:
    fields: dict[str, object] = {
        "cuda": False,
        "device": "cpu",
        "original_device": "cpu",
        "recorded_data_sha256": "a" * 64,
        "current_data_sha256": "a" * 64,
        "metrics": {"accuracy": (0.97, 0.97), "class/cat/f1": (0.95, 0.95)},
    }
    return ReproductionEvidence.model_validate(fields | changes)


REPRODUCIBLE = Gates.model_validate({"reproducibility": {"gpuTolerance": 0.01}})


def reproduced(evidence: ReproductionEvidence | None) -> GateResult:
    [result] = evaluate_gates(REPRODUCIBLE, measured(metrics(0.9)), reproduction=evidence)
    return result


def test_reproduction_must_be_identical_on_cpu_and_within_tolerance_on_gpu() -> None:
    assert reproduced(reproduction()).verdict == "pass"
    drift = {"accuracy": (0.97, 0.9666), "class/cat/f1": (0.95, 0.95)}
    on_cpu = reproduced(reproduction(metrics=drift))
    assert on_cpu.verdict == "fail"
    assert "accuracy 0.9700 -> 0.9666" in on_cpu.detail
    assert reproduced(reproduction(metrics=drift, cuda=True, device="cuda:0")).verdict == "pass"


def test_reproduction_rejects_what_its_lineage_says_is_no_evidence() -> None:
    changed = "data changed: digits@v1 was recorded as aaaa and now hashes to bbbb"
    result = reproduced(reproduction(current_data_sha256="b" * 64, problems=[changed], metrics={}))
    assert result.verdict == "fail"
    assert changed in result.detail
    assert reproduced(None).verdict == "skipped"


def test_a_further_evaluation_set_has_its_own_thresholds_and_names() -> None:
    gates = Gates.model_validate(
        {
            "absolute": {"accuracy": 0.95},
            "datasets": {"shifted": {"data": {"version": "v1-shifted"}, "absolute": {"accuracy": 0.8}}},
        }
    )
    shifted = measured(metrics(0.85))
    results = evaluate_gates(gates, measured(metrics(0.97)), datasets={"shifted": shifted})
    assert [(r.name, r.verdict) for r in results] == [
        ("absolute.accuracy", "pass"),
        ("datasets.shifted/absolute.accuracy", "pass"),
    ]
    missing = evaluate_gates(gates, measured(metrics(0.97)))
    assert (missing[-1].name, missing[-1].verdict) == ("datasets.shifted", "skipped")


def test_every_new_gate_is_declared_under_the_names_its_results_carry() -> None:
    spec = PromotionSpec.model_validate(
        {
            "model": "digits",
            "source": {"modelVersion": "1"},
            "gates": {
                "paired": {"margin": 0.1},
                "minGain": {"metric": "accuracy", "min": 0.0, "enforce": False},
                "latency": {"batchSize": 32, "maxP95Ms": 5, "maxRatio": 1.2},
                "reproducibility": {},
                "datasets": {"shifted": {"data": {"version": "v1-shifted"}, "paired": {"margin": 0.2}}},
            },
        }
    )
    evidence = paired_evidence({"cat": counts(40, 0, 0), "dog": counts(40, 0, 0)})
    timed = {latency_metric(b, p): 1.0 for b in (1, 32) for p in ("p50", "p95")}
    evidence = evidence.model_copy(
        update={"candidate": evidence.candidate | timed, "champion": (evidence.champion or {}) | timed}
    )
    results = evaluate_gates(
        spec.gates, evidence, datasets={"shifted": evidence}, reproduction=reproduction()
    )
    declared = dict(declared_gates(spec))
    assert declared == {
        "paired.recall": True,
        "minGain.accuracy": False,
        "latency.p95Ms": True,
        "latency.p50Ratio": True,
        "reproducibility.heldOut": True,
        "datasets.shifted/paired.recall": True,
    }
    assert {(gate_family(r.name), r.enforced) for r in results} == set(declared.items())
    assert decide_gates(results) == "pass"  # the advisory minGain fails: no gain shown on equal models
