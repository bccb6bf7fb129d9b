"""Retrain a candidate from its recorded lineage and compare its held-out metrics with the original's.

A run records the code (git commit), the data (version and content hash), the exact config (its
hash, and the resolved params in the model's manifest, seed included) and the device it trained on.
Training is deterministic on CPU, so the same lineage retrained on CPU must give the same model and
identical metrics; on CUDA kernels may reduce in another order, so metrics agree within a tolerance.
A candidate that does not come back is not what its lineage says it is, and is not reproduced.

Nothing is written: the retrained network is scored in memory, packaged as logging it would be, so
a reproduction leaves no MLflow run and no registered version behind (it must never be a candidate).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mlflow.exceptions import MlflowException

from promoter.lineage import CodeRevision, LineageError, code_revision, config_sha256
from promoter.pipelines import get_pipeline
from promoter.pipelines.config import TrainConfig
from promoter.pipelines.data import DataError, Dataset
from promoter.pipelines.packaging import ModelBundle, ModelManifest, cpu_state, load_bundle
from promoter.pipelines.preflight import CODE_DIR
from promoter.pipelines.scoring import score_bundle
from promoter.pipelines.tracking import configure_tracking
from promoter.pipelines.train import GIT_REVISION_PARAM, RESOURCES_PARAM, fit, resolved_config
from promoter.pipelines.training import EpochMetrics, describe_device, pick_device
from promoter.promotion.gates import ReproductionEvidence, metrics_beyond, reproduction_tolerance
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
    run_artifact_uri,
)
from promoter.promotion.spec import DataRef, GitRef, Resources, SpecError, TrainSource

DEFAULT_GPU_TOLERANCE = 0.01
# The tags a run must carry to be retrained from: what training writes on every run.
LINEAGE = (
    GIT_COMMIT_TAG,
    GIT_DIRTY_TAG,
    DATA_VERSION_TAG,
    DATA_SHA_TAG,
    CONFIG_SHA_TAG,
    PIPELINE_TAG,
    MODEL_TAG,
    DEVICE_TAG,
)


class ReproductionError(RuntimeError):
    """The run cannot even be retrained here: unknown, without lineage, or another commit's."""


@dataclass(frozen=True)
class MetricDiff:
    name: str
    original: float
    reproduced: float

    @property
    def difference(self) -> float:
        """Reproduced minus original."""
        return self.reproduced - self.original


@dataclass(frozen=True)
class Reproduction:
    run_id: str
    git_commit: str
    data_version: str
    recorded_data_sha256: str
    current_data_sha256: str
    recorded_config_sha256: str
    reproduced_config_sha256: str  # what the run records hashes to, with the data as it is now
    device: str  # where the retraining ran
    original_device: str  # where the run trained (its `device` tag)
    tolerance: float  # the largest |difference| accepted: 0.0 unless either side used CUDA
    cuda: bool  # the run or its retraining used CUDA
    diffs: tuple[MetricDiff, ...]  # every held-out metric; empty when nothing was retrained
    lineage_problems: tuple[str, ...]  # what makes the retraining no evidence, whatever the metrics
    problems: tuple[str, ...]  # why it is not reproduced (the above, and metrics beyond tolerance)

    @property
    def reproduced(self) -> bool:
        return not self.problems

    def evidence(self) -> ReproductionEvidence:
        """What the reproducibility gate judges (promoter.promotion.gates), kept in the gate report:
        the facts, with the tolerance left to the gate's rule."""
        return ReproductionEvidence(
            cuda=self.cuda,
            device=self.device,
            original_device=self.original_device,
            recorded_data_sha256=self.recorded_data_sha256,
            current_data_sha256=self.current_data_sha256,
            problems=list(self.lineage_problems),
            metrics={diff.name: (diff.original, diff.reproduced) for diff in self.diffs},
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "reproduced": self.reproduced,
            "diffs": [{**asdict(diff), "difference": diff.difference} for diff in self.diffs],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def reproduce_run(
    run_id: str,
    workdir: Path,
    *,
    gpu_tolerance: float = DEFAULT_GPU_TOLERANCE,
    on_epoch: Callable[[EpochMetrics], None] | None = None,
) -> Reproduction:
    """Retrain `run_id` from its lineage on this machine and diff every held-out metric.

    Raises ReproductionError when it cannot be tried at all; anything that makes the retrained model
    untrustworthy as evidence (a dirty checkout, changed data, another config) is a problem in the
    result instead, and with changed data nothing is retrained: there would be nothing honest to compare.
    """
    client = configure_tracking(workdir)
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise ReproductionError(f"no MLflow run {run_id!r} at {client.tracking_uri}") from None
    tags, params = run.data.tags, run.data.params
    missing = [tag for tag in LINEAGE if not tags.get(tag)]
    if missing:
        raise ReproductionError(
            f"run {run_id} has no lineage to retrain from: it lacks the tags {', '.join(missing)} "
            "(was it trained by promoter?)"
        )
    commit = tags[GIT_COMMIT_TAG]
    running = _running_code(run_id, commit)
    try:
        pipeline = get_pipeline(tags[PIPELINE_TAG])
        dataset = pipeline.data_source().load(tags[DATA_VERSION_TAG])
    except (SpecError, DataError) as exc:
        raise ReproductionError(f"run {run_id} cannot be retrained here: {exc}") from None
    model_uri = run_artifact_uri(run_id, MODEL_ARTIFACT)
    try:
        original = load_bundle(model_uri)
    except (MlflowException, OSError, TypeError) as exc:
        raise ReproductionError(f"run {run_id} has no model to compare with at {model_uri}: {exc}") from None
    config = pipeline.parse_config(original.manifest.config)  # resolved at training: seed included
    config_hash = _recorded_config_hash(tags, params, original.manifest, config, dataset)
    device = pick_device()
    used_cuda = device.type == "cuda" or tags[DEVICE_TAG].startswith("cuda")
    tolerance = reproduction_tolerance(gpu_tolerance, used_cuda)

    problems: list[str] = []
    not_the_commit = f"has uncommitted changes: its code is not commit {commit}"
    if tags[GIT_DIRTY_TAG] == "true":
        problems.append(f"the checkout the run trained from {not_the_commit}")
    if running.dirty:
        problems.append(f"the checkout retraining it {not_the_commit}")
    data_changed = dataset.sha256 != tags[DATA_SHA_TAG]
    if data_changed:
        problems.append(
            f"data changed: {dataset.name}@{dataset.version} was recorded as {tags[DATA_SHA_TAG]} "
            f"and now hashes to {dataset.sha256}"
        )
    elif config_hash != tags[CONFIG_SHA_TAG]:  # (changed data changes the hash too: said above)
        problems.append(
            f"config differs: the run's {CONFIG_SHA_TAG} is {tags[CONFIG_SHA_TAG]}, but the config it "
            f"records (its model's params, data, commit and resources) hashes to {config_hash}"
        )

    diffs: tuple[MetricDiff, ...] = ()
    lineage = tuple(problems)
    if not data_changed:
        result = fit(pipeline, config, dataset, device, on_epoch=on_epoch)
        retrained = ModelBundle.from_state(original.manifest, cpu_state(result.network))
        retrained.optimize_for_inference()  # as loading the logged model would: the same graphs
        before = score_bundle(original, dataset, f"run {run_id}").flat()
        after = score_bundle(retrained, dataset, f"the retrained run {run_id}").flat()
        diffs = tuple(MetricDiff(name, before[name], after[name]) for name in before)
        beyond = metrics_beyond({diff.name: (diff.original, diff.reproduced) for diff in diffs}, tolerance)
        problems.extend([beyond] if beyond is not None else [])

    return Reproduction(
        run_id=run_id,
        git_commit=commit,
        data_version=dataset.version,
        recorded_data_sha256=tags[DATA_SHA_TAG],
        current_data_sha256=dataset.sha256,
        recorded_config_sha256=tags[CONFIG_SHA_TAG],
        reproduced_config_sha256=config_hash,
        device=describe_device(device),
        original_device=tags[DEVICE_TAG],
        tolerance=tolerance,
        cuda=used_cuda,
        diffs=diffs,
        lineage_problems=lineage,
        problems=tuple(problems),
    )


def _recorded_config_hash(
    tags: Mapping[str, str],
    params: Mapping[str, str],
    manifest: ModelManifest,
    config: TrainConfig,
    dataset: Dataset,
) -> str:
    """The config hash of what the run records (tags, params, its model's manifest) with `dataset`,
    built and hashed by training's own code: equal to its `config.sha256` unless the record lies."""
    recorded = TrainSource(
        pipeline=manifest.pipeline,
        data=DataRef(version=dataset.version),
        git=GitRef(revision=params.get(GIT_REVISION_PARAM, "HEAD")),
        params=manifest.config,
        resources=recorded_resources(params),
    )
    return config_sha256(resolved_config(tags[MODEL_TAG], recorded, config, dataset, tags[GIT_COMMIT_TAG]))


def recorded_resources(params: Mapping[str, str]) -> Resources:
    """The run's `resources`, back from its flattened params (`resources.gpu`,
    `resources.nodeSelector.<key>`, `resources.tolerations.<i>.<field>`): a node selector's keys
    hold dots of their own (`kubernetes.io/arch`), so the nesting comes from the schema, not the dots."""
    prefix = f"{RESOURCES_PARAM}."
    raw: dict[str, Any] = {}
    tolerations: dict[int, dict[str, str]] = {}
    for key, value in params.items():
        if not key.startswith(prefix):
            continue
        field, _, rest = key.removeprefix(prefix).partition(".")
        if field == "nodeSelector":
            raw.setdefault(field, {})[rest] = value
        elif field == "tolerations":
            index, _, attribute = rest.partition(".")
            tolerations.setdefault(int(index), {})[attribute] = value
        else:
            raw[field] = value
    if tolerations:
        raw["tolerations"] = [tolerations[index] for index in sorted(tolerations)]
    return Resources.model_validate(raw)  # lax: params are strings, `gpu: "1"` is 1 again


def _running_code(run_id: str, commit: str) -> CodeRevision:
    """The code running, refused unless it is the commit the run trained from."""
    try:
        running = code_revision("HEAD", CODE_DIR)
    except LineageError as exc:
        raise ReproductionError(f"run {run_id} cannot be retrained here: {exc}") from None
    if running.commit != commit:
        raise ReproductionError(
            f"run {run_id} was trained from commit {commit}, but the code running is commit "
            f"{running.commit}: reproduce it from a checkout (or an image) of {commit[:12]}"
        )
    return running
