from __future__ import annotations

import json

from promoter.promotion.gates import (
    GateReport,
    ModelEvidence,
    declared_gates,
    evaluate_gates,
    evaluate_load_gates,
    gate_family,
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


def verdicts(
    gates: Gates, candidate: dict[str, float], champion: dict[str, float] | None = None
) -> dict[str, str]:
    return {g.name: g.verdict for g in evaluate_gates(gates, candidate, champion, CLASSES)}


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
    [result] = evaluate_gates(gates, metrics(0.94), metrics(0.955), CLASSES)
    assert result.threshold is not None and abs(result.threshold - 0.945) < 1e-12


def test_a_gate_on_an_unmeasured_metric_fails_rather_than_passing() -> None:
    gates = Gates.model_validate({"absolute": {"auc": 0.9}, "perClass": {"recall": 0.5}})
    results = evaluate_gates(gates, metrics(0.99), None, CLASSES)
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
        gates=evaluate_gates(gates, candidate, None, CLASSES),
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
    results = evaluate_gates(spec.gates, candidate, {"accuracy": 0.96}, ("0", "1"))
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
