"""What the operator's metrics count, read back from prometheus_client's registry (what its port
serves). The live check, against a real operator process, is at the end of test_operator_cluster.py."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import yaml
from prometheus_client import REGISTRY

from promoter.operator import metrics
from promoter.promotion.gates import GateResult
from promoter.promotion.spec import PromotionSpec, parse_promotion
from promoter.promotion.status import GateSummary, Phase, PromotionStatus, Transition, utc_now

from .conftest import EXAMPLES


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _spec(model: str) -> PromotionSpec:
    document: dict[str, Any] = yaml.safe_load((EXAMPLES / "digits" / "promotion.yaml").read_text())
    document["spec"]["model"] = model
    return parse_promotion(document, origin="test").spec


def _gate(name: str, enforced: bool) -> GateResult:
    return GateResult(
        name=name, kind="absolute", metric="m", actual=0.1, threshold=0.9, verdict="fail", enforced=enforced
    )


def _finish(model: str, status: PromotionStatus, phases: list[Phase], minutes: int = 1) -> None:
    created = utc_now()
    status.history = [
        Transition(phase=phase, at=created + timedelta(minutes=minutes * i), reason=phase)
        for i, phase in enumerate(phases, start=1)
    ]
    for index in range(len(status.history)):
        metrics.record_transition(status.history, index)
        metrics.record_outcome(model, created, status, index)


def test_the_phase_gauge_is_recomputed_from_what_the_watch_sees() -> None:
    book = metrics.PhaseBook()  # a restarted operator: the watch's initial listing fills it
    book.seen("a", "one", "Training", _spec("gauge"))
    book.seen("a", "two", "Training", None)  # a spec that does not parse still has a phase
    book.seen("b", "one", "Promoted", _spec("gauge"))
    assert _value("promoter_promotions", phase="Training") == 2
    book.seen("a", "one", "Gating", _spec("gauge"))  # a MODIFIED event: moved, not added
    book.gone("a", "two")
    book.gone("a", "never-seen")  # a DELETED event of something never listed changes nothing
    assert [_value("promoter_promotions", phase=p) for p in ("Training", "Gating", "Promoted")] == [0, 1, 1]
    assert _value("promoter_promotions", phase="AwaitingApproval") == 0  # every phase has a series


def test_seeing_a_spec_initialises_its_counters_at_zero() -> None:
    metrics.PhaseBook().seen("a", "x", "Pending", _spec("seen-model"))
    text = "\n".join(
        f"{sample.name}{sample.labels}"
        for family in REGISTRY.collect()
        for sample in family.samples
        if sample.name in ("promoter_rollbacks_total", "promoter_gate_failures_total")
    )
    assert "{'model': 'seen-model'}" in text
    for gate in (
        "absolute.accuracy",
        "absolute.macro_f1",
        "perClass.f1",
        "paired.recall",
        "latency.p50Ratio",
        "loadTest.p95Ms",
    ):
        assert f"'gate': '{gate}', 'enforced': 'true'" in text
    assert "'gate': 'regression.accuracy', 'enforced': 'false'" in text


def test_gate_failures_are_counted_once_per_promotion_by_rule() -> None:
    before = {
        (gate, enforced): _value("promoter_gate_failures_total", gate=gate, enforced=enforced)
        for gate, enforced in [("perClass.f1", "true"), ("absolute.ece", "false"), ("loadTest.p95Ms", "true")]
    }
    status = PromotionStatus(
        gates=GateSummary(
            passed=False,
            failures=[_gate("perClass.f1[3]", True), _gate("perClass.f1[8]", True)],
            advisory_failures=[_gate("absolute.ece", False)],
        ),
        load_test_gates=[
            _gate("loadTest.p95Ms", True),
            _gate("loadTest.rps", True).model_copy(update={"verdict": "pass"}),
        ],
    )
    # promoted, then rolled back: two terminal phases, one promotion
    _finish("counted", status, ["Gating", "Promoted", "RolledBack"])

    grown = {
        key: _value("promoter_gate_failures_total", gate=key[0], enforced=key[1]) - v
        for key, v in before.items()
    }
    assert grown == {("perClass.f1", "true"): 2, ("absolute.ece", "false"): 1, ("loadTest.p95Ms", "true"): 1}
    assert _value("promoter_gate_failures_total", gate="loadTest.rps", enforced="true") == 0


def test_rollbacks_and_time_to_promote() -> None:
    rollbacks = _value("promoter_rollbacks_total", model="timed")
    promoted = _value("promoter_time_to_promote_seconds_count")
    seconds = _value("promoter_time_to_promote_seconds_sum")

    _finish("timed", PromotionStatus(), ["Training", "Promoted", "RolledBack"], minutes=2)
    _finish("timed", PromotionStatus(), ["Training", "Rejected"])

    assert _value("promoter_rollbacks_total", model="timed") - rollbacks == 1
    assert _value("promoter_time_to_promote_seconds_count") - promoted == 1  # the rejected one is not
    assert _value("promoter_time_to_promote_seconds_sum") - seconds == 240  # created -> Promoted
