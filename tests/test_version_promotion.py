"""Promoting an already registered version (`source.modelVersion`) on one machine: its offline gates
are evaluated for real (the evaluate-only workflow, real MLflow, the real model against the real
champion on the held-out split) and reported, and a version that fails them is Rejected.

Version 1 of the shared `registered_digits` store is both the version promoted and the champion, so
the regression gate compares it with itself, and nothing here moves an alias other tests rely on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from mlflow.tracking import MlflowClient

from promoter.pipelines.tracking import store_client, tracking_uri
from promoter.promotion.gates import GateReport
from promoter.promotion.names import EVALUATED_VERSION_TAG, GATE_REPORT_ARTIFACT, PROMOTION_TAG
from promoter.promotion.status import PromotionStatus

from .conftest import run_cli

pytestmark = pytest.mark.slow


def promote_version(workdir: Path, name: str, gates: dict[str, Any]) -> tuple[int, PromotionStatus]:
    document = {
        "apiVersion": "mlops.promoter.dev/v1alpha1",
        "kind": "ModelPromotion",
        "metadata": {"name": name},
        "spec": {"model": "digits", "source": {"modelVersion": "1"}, "gates": gates},
    }
    spec = workdir / f"{name}.yaml"
    spec.write_text(yaml.safe_dump(document))
    completed = run_cli("run", spec, "--json", "--workdir", workdir)
    assert completed.stdout, completed.stderr
    return completed.returncode, PromotionStatus.model_validate(json.loads(completed.stdout))


def gate_report(client: MlflowClient, run_id: str) -> GateReport:
    path = client.download_artifacts(run_id, GATE_REPORT_ARTIFACT)
    return GateReport.model_validate_json(Path(path).read_text())


def test_a_registered_version_is_gated_against_the_champion_before_it_is_promoted(
    registered_digits: Path,
) -> None:
    client = store_client(tracking_uri(registered_digits))
    trained_in = client.get_model_version("digits", "1").run_id
    gates = {"absolute": {"accuracy": 0.8}, "regression": {"metric": "accuracy", "maxDrop": 0.0}}

    code, status = promote_version(registered_digits, "version-again", gates)
    assert code == 0, status.message
    assert [t.phase for t in status.history] == ["Evaluating", "Gating", "Promoting", "Promoted"]
    assert status.run_id is not None and status.run_id != trained_in  # a run of its own, tagged
    evaluation = client.get_run(status.run_id)
    assert evaluation.data.tags[PROMOTION_TAG] == "version-again"
    assert evaluation.data.tags[EVALUATED_VERSION_TAG] == "1"
    assert status.gates is not None and status.gates.passed
    assert status.gates.report_uri == f"runs:/{status.run_id}/{GATE_REPORT_ARTIFACT}"

    report = gate_report(client, status.run_id)
    assert (report.candidate.version, report.candidate.run_id) == ("1", trained_in)
    assert report.champion is not None and report.champion.version == "1"
    regression = next(g for g in report.gates if g.kind == "regression")
    assert regression.verdict == "pass"  # the champion met itself on the same held-out split
    assert report.candidate.metrics["accuracy"] == report.champion.metrics["accuracy"] > 0.8
    assert evaluation.data.metrics["accuracy"] == report.candidate.metrics["accuracy"]
    assert str(client.get_model_version_by_alias("digits", "champion").version) == "1"


def test_a_registered_version_that_fails_its_gates_is_rejected_with_them_reported(
    registered_digits: Path,
) -> None:
    client = store_client(tracking_uri(registered_digits))
    experiment = client.get_experiment_by_name("digits")
    assert experiment is not None
    # an earlier attempt whose process died mid-evaluation
    mine = {PROMOTION_TAG: "version-too-strict", EVALUATED_VERSION_TAG: "1"}
    dead = client.create_run(experiment.experiment_id, tags=mine).info.run_id

    code, status = promote_version(registered_digits, "version-too-strict", {"absolute": {"accuracy": 1.0}})
    assert code == 3, status.message
    assert [t.phase for t in status.history] == ["Evaluating", "Gating", "Rejected"]
    assert status.gates is not None and not status.gates.passed
    assert [g.name for g in status.gates.failures] == ["absolute.accuracy"]
    assert "absolute.accuracy" in status.message
    assert status.run_id is not None and status.run_id != dead
    assert client.get_run(status.run_id).data.tags["gate.decision"] == "fail"
    assert client.get_run(dead).info.status == "KILLED"  # not left RUNNING, and not reused
