"""Evaluate a candidate and the current @champion on the same held-out split, then gate."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException

from promoter.pipelines import get_pipeline
from promoter.pipelines.contract import Pipeline
from promoter.pipelines.data import Dataset, SplitName, load_verified
from promoter.pipelines.metrics import (
    ClassificationReport,
    classification_report,
    confusion_matrix_figure,
    pr_curves_figure,
)
from promoter.pipelines.packaging import load_bundle
from promoter.pipelines.tracking import configure_tracking
from promoter.promotion.gates import GateReport, ModelEvidence, evaluate_gates
from promoter.promotion.names import (
    DATA_VERSION_TAG,
    GATE_REPORT_ARTIFACT,
    MODEL_ARTIFACT,
    PIPELINE_TAG,
    run_artifact_uri,
)
from promoter.promotion.spec import ModelPromotion
from promoter.registry import current_champion

HELD_OUT_SPLIT: SplitName = "test"


class EvaluationError(RuntimeError):
    pass


@dataclass(frozen=True)
class Evaluation:
    report: GateReport
    candidate: ClassificationReport
    champion: ClassificationReport | None


def _score(model_uri: str, dataset: Dataset) -> ClassificationReport:
    held_out = dataset.split()[HELD_OUT_SPLIT]
    bundle = load_bundle(model_uri)
    try:
        probabilities = bundle.predict_proba(dataset.features[held_out])
    except ValueError as exc:
        raise EvaluationError(f"{model_uri} cannot score {dataset.name}@{dataset.version}: {exc}") from None
    return classification_report(dataset.labels[held_out], probabilities, dataset.class_names)


def evaluate_candidate(
    promotion: ModelPromotion, run_id: str, workdir: Path, report_path: Path | None = None
) -> Evaluation:
    source = promotion.train
    client = configure_tracking(workdir)
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise EvaluationError(f"no MLflow run {run_id!r} at {client.tracking_uri}") from None
    trained_by, trained_on = run.data.tags.get(PIPELINE_TAG), run.data.tags.get(DATA_VERSION_TAG)
    if trained_by != source.pipeline or trained_on != source.data.version:
        raise EvaluationError(
            f"run {run_id} was trained by pipeline {trained_by!r} on data {trained_on!r}, "
            f"but the spec asks for {source.pipeline!r} on {source.data.version!r}"
        )
    pipeline = get_pipeline(source.pipeline)
    dataset = load_verified(pipeline.data_source(), source.data.version, source.data.sha256)

    candidate = _score(run_artifact_uri(run_id, MODEL_ARTIFACT), dataset)
    champion_version = current_champion(client, promotion.spec.model)
    champion = None
    champion_evidence = None
    if champion_version is not None:
        champion = _score(f"models:/{promotion.spec.model}/{champion_version.version}", dataset)
        champion_evidence = ModelEvidence(
            run_id=champion_version.run_id or "",
            version=str(champion_version.version),
            metrics=champion.flat(),
        )

    report = GateReport(
        model=promotion.spec.model,
        promotion=promotion.metadata.name,
        data_version=dataset.version,
        data_sha256=dataset.sha256,
        split=HELD_OUT_SPLIT,
        samples=len(candidate.y_true),
        candidate=ModelEvidence(run_id=run_id, metrics=candidate.flat()),
        champion=champion_evidence,
        gates=evaluate_gates(
            promotion.spec.gates, candidate.flat(), champion.flat() if champion else None, dataset.class_names
        ),
    )
    _record(run_id, report, candidate, champion, pipeline, dataset)
    if report_path is not None:
        report_path.parent.mkdir(parents=True, exist_ok=True)
        report_path.write_text(report.to_json())
    return Evaluation(report=report, candidate=candidate, champion=champion)


def _record(
    run_id: str,
    report: GateReport,
    candidate: ClassificationReport,
    champion: ClassificationReport | None,
    pipeline: Pipeline,
    dataset: Dataset,
) -> None:
    held_out = dataset.split()[HELD_OUT_SPLIT]
    with mlflow.start_run(run_id=run_id):
        mlflow.log_metrics(candidate.flat())
        if champion is not None:
            mlflow.log_metrics(
                {
                    f"champion/{key}": value
                    for key, value in champion.flat().items()
                    if not key.startswith("class/")
                }
            )
        mlflow.log_figure(confusion_matrix_figure(candidate), "plots/confusion_matrix.png")
        mlflow.log_figure(pr_curves_figure(candidate), "plots/pr_curves.png")
        failures = pipeline.failure_figure(dataset.features[held_out], candidate)
        if failures is not None:
            mlflow.log_figure(failures, "plots/failures.png")
        mlflow.log_text(report.to_json(), GATE_REPORT_ARTIFACT)
        mlflow.set_tags(
            {
                "gate.decision": "pass" if report.passed else "fail",
                "gate.champion_version": report.champion.version if report.champion else "none",
            }
        )
