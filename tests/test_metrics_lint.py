"""Every /metrics the project serves passes `promtool check metrics` (Prometheus' own linter: naming,
suffixes, units, help text), on the real output. The operator's real port is also linted at the end
of tests/test_operator_cluster.py, after a whole module of promotions.

A metric that fails lint is not only ugly: `promoter_input_feature_sum` (a gauge named `_sum`) made
`increase()` read every decrease as a counter reset, so the serving mean was wrong."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client import REGISTRY, generate_latest

from promoter.pipelines.digits import load_digits_v1
from promoter.promotion.gates import GateResult
from promoter.promotion.spec import parse_promotion
from promoter.promotion.status import GateSummary, PromotionStatus, Transition, utc_now

from .conftest import EXAMPLES, Server
from .prometheus import assert_lint_clean, promtool_check_metrics

DIGITS = load_digits_v1()


def test_the_linter_refuses_what_the_old_feature_sum_gauge_exported() -> None:
    """The check can fail: the gauge this project exported before is refused."""
    old = b"# HELP promoter_input_feature_sum Sum.\n# TYPE promoter_input_feature_sum gauge\n"
    old += b'promoter_input_feature_sum{feature="0"} 1.0\n'
    checked = promtool_check_metrics(old)
    assert checked.returncode != 0
    assert 'should not have "_sum" suffix' in checked.stdout + checked.stderr


def _traffic(server: Server) -> None:
    inputs = DIGITS.features[:16].tolist()
    assert server.client.post("/predict", json={"inputs": inputs}).status_code == 200
    v2 = {"inputs": [{"name": "input", "shape": [2, 64], "datatype": "FP32", "data": inputs[:2]}]}
    server.client.post("/v2/models/digits/infer", json=v2)
    assert server.client.post("/predict", json={"inputs": "nonsense"}).status_code == 422


@pytest.fixture(params=["1", "2"], ids=["one-worker", "two-workers"])
def serving(request: pytest.FixtureRequest, registered_digits: Path) -> Iterator[Server]:
    """One worker (the default registry) and two (multiprocess mode: files merged at scrape)."""
    server = Server(registered_digits, "--model-uri", "models:/digits/1", "--workers", request.param)
    try:
        server.wait_ready()
        yield server
    finally:
        assert server.stop()


def test_the_inference_server_metrics_pass_promtool(serving: Server) -> None:
    _traffic(serving)
    for _ in range(10):  # new connections: the kernel spreads them over the workers
        with httpx.Client(base_url=serving.url, timeout=30) as fresh:
            assert fresh.post("/predict", json={"inputs": DIGITS.features[:3].tolist()}).status_code == 200
    time.sleep(1.5)  # workers publish their accumulators once a second
    exposition = serving.client.get("/metrics").content
    assert b"promoter_input_feature_positive_sum_total" in exposition
    assert b"promoter_input_feature_negative_sum_total" in exposition
    assert b"promoter_predictions_total" in exposition
    assert_lint_clean(exposition)


def test_feature_sums_are_split_into_positive_and_negative_counters() -> None:
    """S = increase(pos) - increase(neg): both only grow, so a counter reset is a pod restart only."""
    from promoter.serving.metrics import PredictionRecorder

    def value(name: str, feature: str) -> float:
        return REGISTRY.get_sample_value(name, {"feature": feature}) or 0.0

    names = ("promoter_input_feature_positive_sum_total", "promoter_input_feature_negative_sum_total")
    before = [(value(names[0], f), value(names[1], f)) for f in ("0", "1")]
    recorder = PredictionRecorder("lint", ("a", "b"), 2, 0.5)
    inputs = np.array([[1.5, -2.0], [-0.5, -1.0], [2.0, 3.0]], dtype=np.float32)
    recorder.record(inputs, np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8]], dtype=np.float32))
    recorder.flush()
    after = [(value(names[0], f), value(names[1], f)) for f in ("0", "1")]

    grown = [(a[0] - b[0], a[1] - b[1]) for a, b in zip(after, before, strict=True)]
    assert grown == [(3.5, 0.5), (3.0, 3.0)]
    assert [pos - neg for pos, neg in grown] == pytest.approx(inputs.sum(axis=0).tolist())


def test_the_operator_metrics_pass_promtool_after_every_kind_of_outcome() -> None:
    """What the operator's port serves (prometheus_client's default registry, as `start_http_server`
    serves it), after transitions of every outcome, gate failures, a rollback and the phase gauge."""
    from promoter.operator import metrics

    promotion = parse_promotion(
        {**_example(), "metadata": {"name": "lint", "namespace": "ns"}}, origin="lint"
    )
    book = metrics.PhaseBook()
    book.seen("ns", "lint", "Training", promotion.spec)
    created = utc_now()
    failed = GateResult(
        name="perClass.f1[3]",
        kind="per_class",
        metric="class/3/f1",
        actual=0.5,
        threshold=0.85,
        verdict="fail",
        enforced=True,
    )
    status = PromotionStatus(phase="Rejected", gates=GateSummary(passed=False, failures=[failed]))
    for phase in ("Rejected", "Promoted", "RolledBack"):
        history = [
            Transition(phase="Training", at=created, reason="Started"),
            Transition(phase=phase, at=created + timedelta(seconds=90), reason=phase),
        ]
        status.history = history
        for index in range(len(history)):
            metrics.record_transition(history, index)
            metrics.record_outcome("digits", created, status, index)
    book.gone("ns", "lint")

    exposition = generate_latest(REGISTRY)
    text = exposition.decode()
    assert 'promoter_gate_failures_total{enforced="true",gate="perClass.f1"}' in text
    assert 'promoter_rollbacks_total{model="digits"}' in text
    assert "promoter_time_to_promote_seconds_count" in text
    assert 'promoter_promotions{phase="Training"} 0.0' in text
    assert_lint_clean(exposition)


def _example() -> dict[str, object]:
    import yaml

    document: dict[str, object] = yaml.safe_load((EXAMPLES / "digits" / "promotion.yaml").read_text())
    return document
