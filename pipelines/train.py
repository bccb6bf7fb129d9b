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
from promoter.pipelines import Pipeline, get_pipeline
from promoter.pipelines.config import TrainConfig
from promoter.pipelines.data import Dataset, load_verified
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
    DEVICE_TAG,
    GIT_COMMIT_TAG,
    GIT_DIRTY_TAG,
    MODEL_ARTIFACT,
    MODEL_TAG,
    PIPELINE_TAG,
    PROMOTION_TAG,
    run_artifact_uri,
)
from promoter.promotion.spec import ModelPromotion, TrainSource
from promoter.redaction import flatten, redact_flat

# Two entries of the resolved config as its flattened params name them (MLflow params are flat
# strings): the parts of a run's config that neither its tags nor its model's manifest hold, which
# reproduction reads back to rebuild the config and its hash.
GIT_REVISION_PARAM = "git.revision"
RESOURCES_PARAM = "resources"


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
    device = pick_device()

    resolved = resolved_config(promotion.spec.model, source, config, dataset, revision.commit)
    tags = {
        GIT_COMMIT_TAG: revision.commit,
        GIT_DIRTY_TAG: str(revision.dirty).lower(),
        "mlflow.source.git.commit": revision.commit,
        DATA_VERSION_TAG: dataset.version,
        DATA_SHA_TAG: dataset.sha256,
        CONFIG_SHA_TAG: config_sha256(resolved),
        DEVICE_TAG: describe_device(device),
        "torch.version": torch.__version__,
        "cuda.version": torch.version.cuda or "none",
        "python.version": platform.python_version(),
        PROMOTION_TAG: promotion.metadata.name,
        PIPELINE_TAG: pipeline.name,
        MODEL_TAG: promotion.spec.model,
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
        result = fit(pipeline, config, dataset, device, on_epoch=record_epoch)
        manifest = ModelManifest(
            pipeline=pipeline.name,
            config=config.model_dump(mode="json"),
            input_shape=dataset.input_shape,
            class_names=dataset.class_names,
        )
        example = dataset.features[dataset.split()["val"][:2]]
        model_uri = log_pipeline_model(result.network, manifest, example)
        return TrainedCandidate(run_id=run.info.run_id, model_uri=model_uri, result=result)


def resolved_config(
    model: str, source: TrainSource, config: TrainConfig, dataset: Dataset, commit: str
) -> dict[str, Any]:
    """Everything that decides what a candidate is: logged as its params and hashed into its
    `config.sha256` tag. The one place it is built: reproduction rebuilds it from a run's record and
    must hash it exactly as training did, or every reproduction would be flagged."""
    return {
        "model": model,
        "pipeline": source.pipeline,
        "data": {
            "version": dataset.version,
            "sha256": dataset.sha256,
            "rows": {name: len(rows) for name, rows in dataset.split().items()},
        },
        "git": {"revision": source.git.revision, "commit": commit},
        "params": config.model_dump(mode="json"),
        RESOURCES_PARAM: source.resources.model_dump(mode="json", by_alias=True, exclude_defaults=True),
    }


def fit(
    pipeline: Pipeline,
    config: TrainConfig,
    dataset: Dataset,
    device: torch.device,
    on_epoch: Callable[[EpochMetrics], None] | None = None,
) -> TrainResult:
    """Train the pipeline's network on the data's train split, validating on its val split: what a
    candidate's run records, and what reproducing that run does again from the same config."""
    splits = dataset.split()
    features, labels = dataset.features, dataset.labels
    return train_classifier(
        lambda: pipeline.build_body(config, dataset.input_shape, len(dataset.class_names)),
        config,
        (features[splits["train"]], labels[splits["train"]]),
        (features[splits["val"]], labels[splits["val"]]),
        len(dataset.class_names),
        device,
        on_epoch=on_epoch,
    )


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
