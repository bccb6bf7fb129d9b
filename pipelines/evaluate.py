"""Evaluate a candidate and the current @champion on the same held-out split, then gate.

The candidate is a training run (`evaluate_candidate`: the report goes into that run) or a version
already registered (`evaluate_version`: its pipeline and data come from the tags of the run that
trained it, and the report goes into a new run tagged with the promotion and the version, so a
version promoted again, after a rollback say, is gated against today's champion and on record).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

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
from promoter.pipelines.tracking import configure_tracking, experiment_id
from promoter.promotion.gates import GateReport, ModelEvidence, evaluate_gates
from promoter.promotion.names import (
    DATA_SHA_TAG,
    DATA_VERSION_TAG,
    EVALUATED_VERSION_TAG,
    GATE_REPORT_ARTIFACT,
    MODEL_ARTIFACT,
    PIPELINE_TAG,
    PROMOTION_TAG,
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
    run_id: str  # the MLflow run that holds the report


@dataclass(frozen=True)
class _Candidate:
    """Who is evaluated: where its model is, and the evidence that names it in the report."""

    model_uri: str
    evidence: ModelEvidence


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
    """Evaluate a training run of this promotion's pipeline and data; the report goes into that run."""
    source = promotion.train
    client = configure_tracking(workdir)
    trained_by, trained_on, _ = _provenance(client, run_id)
    if trained_by != source.pipeline or trained_on != source.data.version:
        raise EvaluationError(
            f"run {run_id} was trained by pipeline {trained_by!r} on data {trained_on!r}, "
            f"but the spec asks for {source.pipeline!r} on {source.data.version!r}"
        )
    pipeline = get_pipeline(source.pipeline)
    dataset = load_verified(pipeline.data_source(), source.data.version, source.data.sha256)
    candidate = _Candidate(run_artifact_uri(run_id, MODEL_ARTIFACT), ModelEvidence(run_id=run_id, metrics={}))
    return _evaluate(client, promotion, candidate, pipeline, dataset, run_id, report_path)


def evaluate_version(promotion: ModelPromotion, workdir: Path, report_path: Path | None = None) -> Evaluation:
    """Evaluate the registered version `spec.source.modelVersion` on the pipeline and data it was
    trained on (its source run's tags); the report goes into a new run of the model's experiment."""
    model, version = promotion.spec.model, promotion.spec.source.model_version
    if version is None:
        raise EvaluationError(f"{promotion.metadata.name}: spec.source has no modelVersion to evaluate")
    client = configure_tracking(workdir)
    try:
        registered = client.get_model_version(model, version)
    except MlflowException:
        raise EvaluationError(
            f"{model} has no registered version {version} at {client.tracking_uri}"
        ) from None
    if not registered.run_id:
        raise EvaluationError(
            f"{model} version {version} has no source run: its pipeline and data are unknown"
        )
    trained_by, trained_on, trained_sha = _provenance(client, registered.run_id)
    if trained_by is None or trained_on is None:
        raise EvaluationError(
            f"{model} version {version}: run {registered.run_id} has no {PIPELINE_TAG!r} or "
            f"{DATA_VERSION_TAG!r} tag, so its held-out split is unknown"
        )
    pipeline = get_pipeline(trained_by)
    dataset = load_verified(pipeline.data_source(), trained_on, None)
    if trained_sha is not None and dataset.sha256 != trained_sha:
        raise EvaluationError(
            f"{model} version {version} was trained on {dataset.name}@{trained_on} hashing to "
            f"{trained_sha[:12]}…, which now hashes to {dataset.sha256[:12]}…: the data changed"
        )
    experiment = experiment_id(client, model, workdir)
    _mark_dead_attempts(client, experiment, promotion.metadata.name, version)
    evaluation_run = client.create_run(
        experiment,
        run_name=f"{promotion.metadata.name}-evaluate",
        tags={
            PROMOTION_TAG: promotion.metadata.name,
            EVALUATED_VERSION_TAG: version,
            PIPELINE_TAG: trained_by,
            DATA_VERSION_TAG: trained_on,
            DATA_SHA_TAG: dataset.sha256,
        },
    )
    evidence = ModelEvidence(run_id=registered.run_id, version=version, metrics={})
    candidate = _Candidate(f"models:/{model}/{version}", evidence)
    return _evaluate(client, promotion, candidate, pipeline, dataset, evaluation_run.info.run_id, report_path)


def _mark_dead_attempts(client: MlflowClient, experiment: str, promotion: str, version: str) -> None:
    """An evaluation is never reused (the champion it met may have changed since), but one that died
    mid-way (its process is gone: steps die with their driver) is marked KILLED, not left RUNNING."""
    mine = f"tags.`{PROMOTION_TAG}` = '{promotion}' and tags.`{EVALUATED_VERSION_TAG}` = '{version}'"
    for run in client.search_runs([experiment], filter_string=mine):
        if run.info.status == "RUNNING":
            client.set_terminated(run.info.run_id, status="KILLED")


def _provenance(client: MlflowClient, run_id: str) -> tuple[str | None, str | None, str | None]:
    """The pipeline, data version and data hash a run was trained with, from its tags."""
    try:
        tags = client.get_run(run_id).data.tags
    except MlflowException:
        raise EvaluationError(f"no MLflow run {run_id!r} at {client.tracking_uri}") from None
    return tags.get(PIPELINE_TAG), tags.get(DATA_VERSION_TAG), tags.get(DATA_SHA_TAG)


def _evaluate(
    client: MlflowClient,
    promotion: ModelPromotion,
    candidate: _Candidate,
    pipeline: Pipeline,
    dataset: Dataset,
    record_in: str,
    report_path: Path | None,
) -> Evaluation:
    """Score the candidate and the current champion on the same held-out split, gate, and record
    the report in the run `record_in`. A candidate that is the champion meets itself: no regression."""
    scored = _score(candidate.model_uri, dataset)
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
        samples=len(scored.y_true),
        candidate=candidate.evidence.model_copy(update={"metrics": scored.flat()}),
        champion=champion_evidence,
        gates=evaluate_gates(
            promotion.spec.gates, scored.flat(), champion.flat() if champion else None, dataset.class_names
        ),
    )
    _record(record_in, report, scored, champion, pipeline, dataset)
    if report_path is not None:
        report_path.parent.mkdir(parents=True, exist_ok=True)
        report_path.write_text(report.to_json())
    return Evaluation(report=report, candidate=scored, champion=champion, run_id=record_in)


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
