"""Invalid ModelPromotions, each with the field its refusal must name: one table shared by every entry
point that validates (`promoter run`, `render`, `train`, the operator, the admission webhook).

Each entry starts from the shipped example and changes one thing, so the refusal can only come from
that change.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "digits" / "promotion.yaml"


def example() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    return document


@dataclass(frozen=True)
class InvalidSpec:
    id: str
    change: Callable[[dict[str, Any]], None]  # mutates a copy of the example
    field: str  # the field path the error must name, as written in YAML

    def document(self, name: str | None = None) -> dict[str, Any]:
        document = copy.deepcopy(example())
        self.change(document)
        if name is not None and isinstance(document.get("metadata"), dict):
            document["metadata"]["name"] = name
        return document


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A change that sets `path` (dots; created where missing) to `value`."""

    def change(document: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        node = document
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value

    return change


def _delete(path: str) -> Callable[[dict[str, Any]], None]:
    """A change that removes `path` (dots)."""

    def change(document: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        node = document
        for key in parents:
            node = node[key]
        del node[leaf]

    return change


def _both(*changes: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    def change(document: dict[str, Any]) -> None:
        for one in changes:
            one(document)

    return change


def _promote_version(version: str) -> Callable[[dict[str, Any]], None]:
    """Promote a registered version instead of training."""
    return _both(_delete("spec.source.train"), _set("spec.source.modelVersion", version))


PARAMS = "spec.source.train.params"
LOAD_TEST = "spec.rollout.loadTest"
NAME_43 = "digits-" + "x" * 36  # one more than the 42 characters every derived name allows

INVALID_SPECS: list[InvalidSpec] = [
    # --- the resource itself
    InvalidSpec("wrong-api-version", _set("apiVersion", "mlops.promoter.dev/v1"), "apiVersion"),
    InvalidSpec("wrong-kind", _set("kind", "Promotion"), "kind"),
    InvalidSpec("unknown-top-level-field", _set("surprise", 1), "surprise"),
    InvalidSpec("unknown-spec-field", _set("spec.surprise", 1), "spec.surprise"),
    InvalidSpec("name-too-long", _set("metadata.name", NAME_43), "metadata.name"),
    InvalidSpec("name-uppercase", _set("metadata.name", "Digits-1"), "metadata.name"),
    InvalidSpec("name-underscore", _set("metadata.name", "digits_1"), "metadata.name"),
    # --- the registered model: an MLflow name and a label value
    InvalidSpec("model-with-slash", _set("spec.model", "team/digits"), "spec.model"),
    InvalidSpec("model-too-long", _set("spec.model", "d" * 64), "spec.model"),
    InvalidSpec("model-trailing-dash", _set("spec.model", "digits-"), "spec.model"),
    InvalidSpec("model-with-space", _set("spec.model", "my digits"), "spec.model"),
    InvalidSpec("model-empty", _set("spec.model", ""), "spec.model"),
    # --- the source: exactly one of train and modelVersion
    InvalidSpec("both-train-and-version", _set("spec.source.modelVersion", "3"), "spec.source"),
    InvalidSpec("neither-train-nor-version", _delete("spec.source.train"), "spec.source"),
    InvalidSpec("model-version-zero", _promote_version("0"), "spec.source.modelVersion"),
    InvalidSpec("model-version-not-a-number", _promote_version("latest"), "spec.source.modelVersion"),
    InvalidSpec("model-version-too-long", _promote_version("1" * 11), "spec.source.modelVersion"),
    # --- what trains
    InvalidSpec(
        "unknown-pipeline", _set("spec.source.train.pipeline", "digitz"), "spec.source.train.pipeline"
    ),
    InvalidSpec(
        "pipeline-like-markup", _set("spec.source.train.pipeline", "[/red]"), "spec.source.train.pipeline"
    ),
    InvalidSpec("unknown-param", _set(f"{PARAMS}.epochz", 3), f"{PARAMS}.epochz"),
    InvalidSpec("epochs-zero", _set(f"{PARAMS}.epochs", 0), f"{PARAMS}.epochs"),
    InvalidSpec("epochs-a-string", _set(f"{PARAMS}.epochs", "3"), f"{PARAMS}.epochs"),
    InvalidSpec("epochs-a-bool", _set(f"{PARAMS}.epochs", True), f"{PARAMS}.epochs"),
    InvalidSpec("lr-nan", _set(f"{PARAMS}.lr", float("nan")), f"{PARAMS}.lr"),
    InvalidSpec("lr-infinite", _set(f"{PARAMS}.lr", float("inf")), f"{PARAMS}.lr"),
    InvalidSpec("lr-negative", _set(f"{PARAMS}.lr", -0.1), f"{PARAMS}.lr"),
    InvalidSpec("precision-fp3", _set(f"{PARAMS}.precision", "fp3"), f"{PARAMS}.precision"),
    InvalidSpec("seed-beyond-torch", _set(f"{PARAMS}.seed", 2**70), f"{PARAMS}.seed"),
    InvalidSpec("seed-negative", _set(f"{PARAMS}.seed", -1), f"{PARAMS}.seed"),
    InvalidSpec("batch-size-zero", _set(f"{PARAMS}.batch_size", 0), f"{PARAMS}.batch_size"),
    InvalidSpec("label-noise-all", _set(f"{PARAMS}.label_noise", 1.0), f"{PARAMS}.label_noise"),
    InvalidSpec("train-fraction-zero", _set(f"{PARAMS}.train_fraction", 0), f"{PARAMS}.train_fraction"),
    InvalidSpec("channels-too-few", _set(f"{PARAMS}.channels", 2), f"{PARAMS}.channels"),
    InvalidSpec(
        "unknown-data-version", _set("spec.source.train.data.version", "v9"), "spec.source.train.data.version"
    ),
    InvalidSpec(
        "wrong-sha256", _set("spec.source.train.data.sha256", "0" * 64), "spec.source.train.data.sha256"
    ),
    InvalidSpec(
        "sha256-not-hex", _set("spec.source.train.data.sha256", "v1"), "spec.source.train.data.sha256"
    ),
    InvalidSpec(
        "git-no-such-rev",
        _set("spec.source.train.git.revision", "no-such-rev"),
        "spec.source.train.git.revision",
    ),
    InvalidSpec(
        "git-revision-an-option",
        _set("spec.source.train.git.revision", "--output=x"),
        "spec.source.train.git.revision",
    ),
    InvalidSpec("gpu-17", _set("spec.source.train.resources.gpu", 17), "spec.source.train.resources.gpu"),
    InvalidSpec(
        "toleration-operator",
        _set("spec.source.train.resources.tolerations", [{"key": "gpu", "operator": "In"}]),
        "spec.source.train.resources.tolerations[0].operator",
    ),
    # --- offline gates: thresholds, and metrics the pipeline produces (with or without a champion)
    InvalidSpec(
        "absolute-metric-typo", _set("spec.gates.absolute", {"acuracy": 0.9}), "spec.gates.absolute.acuracy"
    ),
    InvalidSpec(
        "absolute-unknown-class",
        _set("spec.gates.absolute", {"class/ten/f1": 0.9}),
        "spec.gates.absolute.class/ten/f1",
    ),
    InvalidSpec(
        "absolute-above-one", _set("spec.gates.absolute", {"accuracy": 1.5}), "spec.gates.absolute.accuracy"
    ),
    InvalidSpec("per-class-metric-typo", _set("spec.gates.perClass", {"f2": 0.8}), "spec.gates.perClass.f2"),
    InvalidSpec(
        "regression-metric-typo",
        _set("spec.gates.regression.metric", "acuracy"),
        "spec.gates.regression.metric",
    ),
    # a registered version is not trained, but its gates are evaluated: typos are refused up front too
    InvalidSpec(
        "version-absolute-metric-typo",
        _both(_promote_version("3"), _set("spec.gates.absolute", {"acuracy": 0.9})),
        "spec.gates.absolute.acuracy",
    ),
    InvalidSpec(
        "version-per-class-metric-typo",
        _both(_promote_version("3"), _set("spec.gates.perClass", {"f2": 0.8})),
        "spec.gates.perClass.f2",
    ),
    InvalidSpec(
        "version-regression-metric-typo",
        _both(_promote_version("3"), _set("spec.gates.regression.metric", "acuracy")),
        "spec.gates.regression.metric",
    ),
    InvalidSpec(
        "regression-max-drop-negative",
        _set("spec.gates.regression.maxDrop", -0.1),
        "spec.gates.regression.maxDrop",
    ),
    # --- paired, latency, reproducibility and further evaluation sets
    InvalidSpec("paired-margin-zero", _set("spec.gates.paired", {"margin": 0}), "spec.gates.paired.margin"),
    InvalidSpec(
        "paired-confidence-below-half",
        _set("spec.gates.paired", {"confidence": 0.4}),
        "spec.gates.paired.confidence",
    ),
    InvalidSpec(
        "paired-min-rows-zero", _set("spec.gates.paired", {"minRows": 0}), "spec.gates.paired.minRows"
    ),
    InvalidSpec(
        "min-gain-not-a-proportion",
        _set("spec.gates.minGain", {"metric": "macro_f1", "min": 0.01}),
        "spec.gates.minGain.metric",
    ),
    InvalidSpec(
        "min-gain-unknown-class",
        _set("spec.gates.minGain", {"metric": "class/ten/recall", "min": 0.0}),
        "spec.gates.minGain.metric",
    ),
    InvalidSpec("latency-without-budget", _set("spec.gates.latency", {"batchSize": 8}), "spec.gates.latency"),
    InvalidSpec(
        "latency-ratio-below-one",
        _set("spec.gates.latency", {"maxRatio": 0.5}),
        "spec.gates.latency.maxRatio",
    ),
    InvalidSpec(
        "latency-batch-of-one",
        _set("spec.gates.latency", {"batchSize": 1, "maxRatio": 1.2}),
        "spec.gates.latency.batchSize",
    ),
    InvalidSpec(
        "reproducibility-tolerance-above-one",
        _set("spec.gates.reproducibility", {"gpuTolerance": 2}),
        "spec.gates.reproducibility.gpuTolerance",
    ),
    InvalidSpec(
        "dataset-unknown-version",
        _set("spec.gates.datasets", {"shifted": {"data": {"version": "v9"}}}),
        "spec.gates.datasets.shifted.data.version",
    ),
    InvalidSpec(
        "dataset-pinned-hash-differs",
        _set("spec.gates.datasets", {"shifted": {"data": {"version": "v1-shifted", "sha256": "0" * 64}}}),
        "spec.gates.datasets.shifted.data.sha256",
    ),
    InvalidSpec(
        "dataset-metric-typo",
        _set(
            "spec.gates.datasets",
            {"shifted": {"data": {"version": "v1-shifted"}, "absolute": {"acuracy": 0.8}}},
        ),
        "spec.gates.datasets.shifted.absolute.acuracy",
    ),
    InvalidSpec(
        "dataset-name-upper",
        _set("spec.gates.datasets", {"Shifted": {"data": {"version": "v1-shifted"}}}),
        "spec.gates.datasets.Shifted",
    ),
    # --- the rollout and its load test
    InvalidSpec("rollout-name-upper", _set("spec.rollout.name", "Digits"), "spec.rollout.name"),
    InvalidSpec("rollout-name-too-long", _set("spec.rollout.name", "d" * 64), "spec.rollout.name"),
    InvalidSpec("duration-zero", _set(f"{LOAD_TEST}.duration", "0s"), f"{LOAD_TEST}.duration"),
    InvalidSpec("duration-under-a-second", _set(f"{LOAD_TEST}.duration", "500ms"), f"{LOAD_TEST}.duration"),
    InvalidSpec("duration-over-an-hour", _set(f"{LOAD_TEST}.duration", "999999h"), f"{LOAD_TEST}.duration"),
    InvalidSpec("duration-without-unit", _set(f"{LOAD_TEST}.duration", "15"), f"{LOAD_TEST}.duration"),
    InvalidSpec("users-zero", _set(f"{LOAD_TEST}.users", 0), f"{LOAD_TEST}.users"),
    InvalidSpec("users-negative", _set(f"{LOAD_TEST}.users", -5), f"{LOAD_TEST}.users"),
    InvalidSpec("spawn-rate-zero", _set(f"{LOAD_TEST}.spawnRate", 0), f"{LOAD_TEST}.spawnRate"),
    InvalidSpec("spawn-rate-negative", _set(f"{LOAD_TEST}.spawnRate", -1), f"{LOAD_TEST}.spawnRate"),
    InvalidSpec(
        "max-error-rate-over-one", _set(f"{LOAD_TEST}.maxErrorRate", 1.5), f"{LOAD_TEST}.maxErrorRate"
    ),
    InvalidSpec("max-p95-infinite", _set(f"{LOAD_TEST}.maxP95Ms", float("inf")), f"{LOAD_TEST}.maxP95Ms"),
    InvalidSpec("unknown-load-test-field", _set(f"{LOAD_TEST}.p95", 50), f"{LOAD_TEST}.p95"),
]
