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
import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from promoter.pipelines import get_pipeline
from promoter.pipelines.contract import Pipeline
from promoter.pipelines.data import DataError, Dataset, load_verified
from promoter.pipelines.latency import measure_latency
from promoter.pipelines.metrics import (
    CLASS_METRIC_PREFIX,
    ClassificationReport,
    confusion_matrix_figure,
    pr_curves_figure,
)
from promoter.pipelines.packaging import ModelBundle, load_bundle
from promoter.pipelines.reproduce import ReproductionError, reproduce_run
from promoter.pipelines.scoring import HELD_OUT_SPLIT, EvaluationError, RowIndex, score_bundle
from promoter.pipelines.tracking import configure_tracking, experiment_id
from promoter.promotion.gates import (
    GateReport,
    ModelEvidence,
    PairedCounts,
    PairedEvidence,
    ReproductionEvidence,
    SetEvidence,
    evaluate_gates,
)
from promoter.promotion.names import (
    DATA_SHA_TAG,
    DATA_VERSION_TAG,
    EVALUATED_VERSION_TAG,
    GATE_CHAMPION_TAG,
    GATE_DECISION_TAG,
    GATE_REPORT_ARTIFACT,
    MODEL_ARTIFACT,
    PIPELINE_TAG,
    PROMOTION_TAG,
    run_artifact_uri,
)
from promoter.promotion.paired import paired_table, paired_tables
from promoter.promotion.spec import EvaluationSet, ModelPromotion
from promoter.registry import current_champion


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
    return _evaluate(client, promotion, candidate, pipeline, dataset, run_id, report_path, workdir)


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
    run = evaluation_run.info.run_id
    return _evaluate(client, promotion, candidate, pipeline, dataset, run, report_path, workdir)


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


@dataclass(frozen=True)
class _Scored:
    """One evaluation set scored by both models, and the evidence its gates are judged on."""

    candidate: ClassificationReport
    champion: ClassificationReport | None
    evidence: SetEvidence


def _score_set(dataset: Dataset, rows: RowIndex, candidate: _Loaded, champion: _Loaded | None) -> _Scored:
    scored = score_bundle(candidate.bundle, dataset, candidate.uri, rows)
    against = score_bundle(champion.bundle, dataset, champion.uri, rows) if champion else None
    paired = None
    if against is not None:
        truth, mine, theirs = scored.y_true, scored.y_pred, against.y_pred
        paired = PairedEvidence(
            overall=PairedCounts.of(paired_table(truth, mine, theirs)),
            per_class={
                name: PairedCounts.of(table)
                for name, table in zip(
                    dataset.class_names,
                    paired_tables(truth, mine, theirs, len(dataset.class_names)),
                    strict=True,
                )
            },
        )
    evidence = SetEvidence(
        data_version=dataset.version,
        data_sha256=dataset.sha256,
        samples=len(rows),
        class_names=dataset.class_names,
        candidate=scored.flat(),
        champion=against.flat() if against else None,
        paired=paired,
    )
    return _Scored(scored, against, evidence)


@dataclass(frozen=True)
class _Loaded:
    uri: str
    bundle: ModelBundle


def _evaluate(
    client: MlflowClient,
    promotion: ModelPromotion,
    candidate: _Candidate,
    pipeline: Pipeline,
    dataset: Dataset,
    record_in: str,
    report_path: Path | None,
    workdir: Path,
) -> Evaluation:
    """Score the candidate and the current champion on the same held-out split (and on every further
    evaluation set the gates name), time both side by side, retrain the candidate if the gates ask
    for it, gate, and record the report in the run `record_in`. A candidate that is the champion
    meets itself: no regression."""
    gates = promotion.spec.gates
    mine = _Loaded(candidate.model_uri, load_bundle(candidate.model_uri))
    champion_version = current_champion(client, promotion.spec.model)
    theirs = None
    if champion_version is not None:
        uri = f"models:/{promotion.spec.model}/{champion_version.version}"
        theirs = _Loaded(uri, load_bundle(uri))
    held_out_rows = dataset.split()[HELD_OUT_SPLIT]
    held_out = _score_set(dataset, held_out_rows, mine, theirs)
    evidence = held_out.evidence
    if gates.latency is not None:
        timed = measure_latency(
            mine.bundle,
            theirs.bundle if theirs else None,
            dataset.features[held_out_rows],
            batch_size=gates.latency.batch_size,
            rounds=gates.latency.rounds,
        )
        evidence = evidence.model_copy(
            update={
                "candidate": evidence.candidate | timed.candidate,
                "champion": None if evidence.champion is None else evidence.champion | (timed.champion or {}),
            }
        )
    datasets = {
        name: _score_set(*_evaluation_set(pipeline, name, rules, dataset), mine, theirs)
        for name, rules in gates.datasets.items()
    }
    reproduction = None
    if gates.reproducibility is not None:
        reproduction = _reproduce(candidate.evidence.run_id, workdir, gates.reproducibility.gpu_tolerance)

    champion_evidence = None
    if champion_version is not None and evidence.champion is not None:
        champion_evidence = ModelEvidence(
            run_id=champion_version.run_id or "",
            version=str(champion_version.version),
            metrics=evidence.champion,
        )
    set_evidence = {name: scored.evidence for name, scored in datasets.items()}
    report = GateReport(
        model=promotion.spec.model,
        promotion=promotion.metadata.name,
        data_version=dataset.version,
        data_sha256=dataset.sha256,
        split=HELD_OUT_SPLIT,
        samples=len(held_out_rows),
        candidate=candidate.evidence.model_copy(update={"metrics": evidence.candidate}),
        champion=champion_evidence,
        class_names=dataset.class_names,
        paired=evidence.paired,
        datasets=set_evidence,
        reproduction=reproduction,
        gates=evaluate_gates(gates, evidence, datasets=set_evidence, reproduction=reproduction),
    )
    _record(record_in, report, held_out.candidate, pipeline, dataset)
    if report_path is not None:
        report_path.parent.mkdir(parents=True, exist_ok=True)
        report_path.write_text(report.to_json())
    return Evaluation(
        report=report, candidate=held_out.candidate, champion=held_out.champion, run_id=record_in
    )


def _evaluation_set(
    pipeline: Pipeline, name: str, rules: EvaluationSet, held_out: Dataset
) -> tuple[Dataset, RowIndex]:
    """A further evaluation set: every row of its data version (no model trained on it), whose classes
    must be the held-out split's, in the same order (the models' outputs are those classes)."""
    try:
        dataset = load_verified(pipeline.data_source(), rules.data.version, rules.data.sha256)
    except DataError as exc:
        raise EvaluationError(f"spec.gates.datasets.{name}: {exc}") from None
    if dataset.class_names != held_out.class_names:
        raise EvaluationError(
            f"spec.gates.datasets.{name}: {dataset.name}@{dataset.version} has classes "
            f"{list(dataset.class_names)}, the models predict {list(held_out.class_names)}"
        )
    return dataset, np.arange(len(dataset.labels), dtype=np.int64)


def _reproduce(run_id: str, workdir: Path, gpu_tolerance: float) -> ReproductionEvidence:
    """Retrain the candidate from its recorded lineage (promoter.pipelines.reproduce) as gate evidence."""
    try:
        reproduction = reproduce_run(run_id, workdir, gpu_tolerance=gpu_tolerance)
    except ReproductionError as exc:
        raise EvaluationError(f"spec.gates.reproducibility: {exc}") from None
    return reproduction.evidence()


def _record(
    run_id: str,
    report: GateReport,
    candidate: ClassificationReport,
    pipeline: Pipeline,
    dataset: Dataset,
) -> None:
    held_out = dataset.split()[HELD_OUT_SPLIT]
    with mlflow.start_run(run_id=run_id):
        mlflow.log_metrics(report.candidate.metrics)
        if report.champion is not None:
            mlflow.log_metrics(
                {
                    f"champion/{key}": value
                    for key, value in report.champion.metrics.items()
                    if not key.startswith(CLASS_METRIC_PREFIX)
                }
            )
        for name, evidence in report.datasets.items():
            mlflow.log_metrics({f"datasets/{name}/{key}": value for key, value in evidence.candidate.items()})
        mlflow.log_figure(confusion_matrix_figure(candidate), "plots/confusion_matrix.png")
        mlflow.log_figure(pr_curves_figure(candidate), "plots/pr_curves.png")
        failures = pipeline.failure_figure(dataset.features[held_out], candidate)
        if failures is not None:
            mlflow.log_figure(failures, "plots/failures.png")
        mlflow.log_text(report.to_json(), GATE_REPORT_ARTIFACT)
        mlflow.set_tags(
            {
                GATE_DECISION_TAG: report.decision,
                GATE_CHAMPION_TAG: report.champion.version if report.champion else "none",
            }
        )
