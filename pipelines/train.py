"""Train one candidate and record everything needed to trust it (or reject it) later."""

from __future__ import annotations

import platform
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import torch
from mlflow.tracking import MlflowClient

from promoter.lineage import code_revision, config_sha256
from promoter.pipelines import get_pipeline
from promoter.pipelines.data import load_verified
from promoter.pipelines.packaging import ModelManifest, log_pipeline_model
from promoter.pipelines.preflight import CODE_DIR
from promoter.pipelines.tracking import configure_tracking, experiment_id
from promoter.pipelines.training import (
    EpochMetrics,
    TrainResult,
    describe_device,
    pick_device,
    train_classifier,
)
from promoter.promotion.names import (
    CONFIG_SHA_TAG,
    DATA_SHA_TAG,
    DATA_VERSION_TAG,
    GIT_COMMIT_TAG,
    GIT_DIRTY_TAG,
    MODEL_ARTIFACT,
    PIPELINE_TAG,
    PROMOTION_TAG,
    run_artifact_uri,
)
from promoter.promotion.spec import ModelPromotion
from promoter.redaction import flatten, redact_flat


@dataclass(frozen=True)
class TrainedCandidate:
    run_id: str
    model_uri: str
    result: TrainResult | None  # None: an earlier finished run was reused


def train_candidate(
    promotion: ModelPromotion,
    workdir: Path,
    on_epoch: Callable[[EpochMetrics], None] | None = None,
    *,
    reuse_finished: bool = False,
) -> TrainedCandidate:
    """Train and log one candidate.

    With `reuse_finished`, a finished run of the same promotion and resolved config is returned
    instead: a workflow step retried after a crash (or a resumed `promoter run`) must not train twice.
    """
    source = promotion.train
    pipeline = get_pipeline(source.pipeline)
    config = pipeline.parse_config(source.params)
    revision = code_revision(source.git.revision, CODE_DIR)
    dataset = load_verified(pipeline.data_source(), source.data.version, source.data.sha256)
    splits = dataset.split()
    device = pick_device()

    resolved: dict[str, Any] = {
        "model": promotion.spec.model,
        "pipeline": pipeline.name,
        "data": {
            "version": dataset.version,
            "sha256": dataset.sha256,
            "rows": {name: len(rows) for name, rows in splits.items()},
        },
        "git": {"revision": source.git.revision, "commit": revision.commit},
        "params": config.model_dump(mode="json"),
        "resources": source.resources.model_dump(mode="json", by_alias=True, exclude_defaults=True),
    }
    tags = {
        GIT_COMMIT_TAG: revision.commit,
        GIT_DIRTY_TAG: str(revision.dirty).lower(),
        "mlflow.source.git.commit": revision.commit,
        DATA_VERSION_TAG: dataset.version,
        DATA_SHA_TAG: dataset.sha256,
        CONFIG_SHA_TAG: config_sha256(resolved),
        "device": describe_device(device),
        "torch.version": torch.__version__,
        "cuda.version": torch.version.cuda or "none",
        "python.version": platform.python_version(),
        PROMOTION_TAG: promotion.metadata.name,
        PIPELINE_TAG: pipeline.name,
        "promoter.model": promotion.spec.model,
    }

    client = configure_tracking(workdir)
    experiment = experiment_id(client, promotion.spec.model, workdir)
    if reuse_finished:
        finished = _finished_run(client, experiment, promotion.metadata.name, tags[CONFIG_SHA_TAG])
        if finished is not None:
            return TrainedCandidate(
                run_id=finished, model_uri=run_artifact_uri(finished, MODEL_ARTIFACT), result=None
            )

    def record_epoch(metrics: EpochMetrics) -> None:
        mlflow.log_metrics(metrics.as_mlflow(), step=metrics.epoch)
        if on_epoch is not None:
            on_epoch(metrics)

    with mlflow.start_run(experiment_id=experiment, run_name=promotion.metadata.name, tags=tags) as run:
        mlflow.log_params(redact_flat(flatten(resolved)))
        features, labels = dataset.features, dataset.labels
        result = train_classifier(
            lambda: pipeline.build_body(config, dataset.input_shape, len(dataset.class_names)),
            config,
            (features[splits["train"]], labels[splits["train"]]),
            (features[splits["val"]], labels[splits["val"]]),
            len(dataset.class_names),
            device,
            on_epoch=record_epoch,
        )
        manifest = ModelManifest(
            pipeline=pipeline.name,
            config=config.model_dump(mode="json"),
            input_shape=dataset.input_shape,
            class_names=dataset.class_names,
        )
        model_uri = log_pipeline_model(result.network, manifest, features[splits["val"][:2]])
        return TrainedCandidate(run_id=run.info.run_id, model_uri=model_uri, result=result)


def _finished_run(client: MlflowClient, experiment: str, promotion: str, config_hash: str) -> str | None:
    """The run a previous attempt finished, if any; attempts that died mid-training are marked KILLED
    (their process is gone: steps die with their driver), so the store shows what really happened."""
    runs = client.search_runs(
        [experiment],
        filter_string=f"tags.`{PROMOTION_TAG}` = '{promotion}' and tags.`{CONFIG_SHA_TAG}` = '{config_hash}'",
        order_by=["attributes.start_time ASC"],
    )
    for run in runs:
        if run.info.status == "RUNNING":
            client.set_terminated(run.info.run_id, status="KILLED")
    finished = [run.info.run_id for run in runs if run.info.status == "FINISHED"]
    return finished[0] if finished else None
