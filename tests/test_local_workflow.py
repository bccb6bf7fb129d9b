"""The rendered workflow executed on this machine: every step a real subprocess through Hera's runner."""

from __future__ import annotations

from pathlib import Path

import pytest

from promoter.pipelines.local_executor import StepFailed, run_workflow
from promoter.pipelines.workflow import ClusterSettings, build_workflow
from promoter.promotion.spec import ModelPromotion, parse_promotion

pytestmark = pytest.mark.slow


def wine_promotion(name: str = "wine-local", **data: str) -> ModelPromotion:
    return parse_promotion(
        {
            "apiVersion": "mlops.promoter.dev/v1alpha1",
            "kind": "ModelPromotion",
            "metadata": {"name": name},
            "spec": {
                "model": "wine",
                "source": {
                    "train": {"pipeline": "wine", "data": {"version": "v1", **data}, "params": {"seed": 3}}
                },
                "gates": {"absolute": {"accuracy": 0.85}, "perClass": {"recall": 0.7}},
            },
        }
    )


def run_locally(promotion: ModelPromotion, workdir: Path) -> dict[str, dict[str, str]]:
    settings = ClusterSettings(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    manifest = build_workflow(promotion, settings).to_dict()
    started: list[str] = []
    results = run_workflow(manifest, workdir, env={"PROMOTER_WORKDIR": str(workdir)}, on_start=started.append)
    assert started == ["train", "evaluate"]
    return {name: result.outputs for name, result in results.items()}


def test_train_then_evaluate_as_subprocesses(tmp_path: Path) -> None:
    outputs = run_locally(wine_promotion(), tmp_path)
    run_id = outputs["train"]["run-id"]
    assert len(run_id) == 32
    assert outputs["evaluate"] == {"decision": "pass"}

    from promoter.pipelines.tracking import store_client, tracking_uri

    run = store_client(tracking_uri(tmp_path)).get_run(run_id)
    assert run.data.tags["gate.decision"] == "pass"
    assert run.data.metrics["accuracy"] >= 0.85
    assert (tmp_path / "steps" / "train" / "log.txt").read_text().count("epoch") >= 60


def test_a_failing_step_stops_the_dag_and_shows_why(tmp_path: Path) -> None:
    with pytest.raises(StepFailed) as caught:
        run_locally(wine_promotion(sha256="f" * 64), tmp_path)
    assert caught.value.task == "train" and caught.value.returncode == 2
    assert "spec.source.train.data.sha256: pins ffffffffffff" in str(caught.value)
    assert "Traceback" not in str(caught.value)
    assert not (tmp_path / "steps" / "evaluate").exists()
