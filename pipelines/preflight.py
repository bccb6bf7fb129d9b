"""What training and evaluation would refuse, found before anything runs.

A spec naming a pipeline, a param, a data version, a revision or a gate metric that does not exist
would otherwise fail inside the train step, tens of seconds in, after the promotion was claimed; a
regression gate with a typo would even be skipped while there is no champion. These checks are
cheap: no training, and the data is loaded only to check a pinned hash or a class a gate names.

`promoter.validation` runs them for every driver. The workflow steps, which live in this package,
call them directly: validation sits above this package and may not be imported from it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from promoter.lineage import LineageError, UnknownRevision, code_revision
from promoter.pipelines import catalogue
from promoter.pipelines.contract import Pipeline
from promoter.pipelines.data import DataError, Dataset
from promoter.pipelines.metrics import CLASS_METRIC_PREFIX, class_metric_key
from promoter.promotion.spec import (
    EvaluationSet,
    Gates,
    InvalidPromotion,
    ModelPromotion,
    Problem,
    SetGates,
    TrainSource,
)

# The package's own checkout: lineage is about the code that trains, not the caller's directory.
CODE_DIR = Path(__file__).resolve().parent

PIPELINE_FIELD = "spec.source.train.pipeline"
DATA_VERSION_FIELD = "spec.source.train.data.version"
DATA_SHA_FIELD = "spec.source.train.data.sha256"


def promotion_problems(promotion: ModelPromotion) -> list[Problem]:
    """Every problem training and gating this promotion would run into.

    A registered version (`source.modelVersion`) is not trained, but its offline gates are still
    evaluated; which pipeline trained it only the registry knows, so its gates are checked against
    the metrics some pipeline of the catalogue produces: a typo is refused here, not found after
    an evaluation workflow has run."""
    source = promotion.spec.source.train
    if source is None:
        return _version_gate_problems(promotion.spec.gates)
    return training_problems(source, promotion.spec.gates)


def check_promotion_or_raise(promotion: ModelPromotion, origin: str) -> ModelPromotion:
    """The promotion itself, or InvalidPromotion listing every problem at once."""
    problems = promotion_problems(promotion)
    if problems:
        raise InvalidPromotion(origin, problems)
    return promotion


def training_problems(source: TrainSource, gates: Gates) -> list[Problem]:
    """Without its pipeline, the params, data and gates cannot be checked; the revision still can."""
    known = catalogue()
    if source.pipeline not in known:
        names = ", ".join(sorted(known))
        unknown = Problem(PIPELINE_FIELD, f"unknown pipeline {source.pipeline!r} (known: {names})")
        return [unknown, *_revision_problems(source.git.revision)]
    pipeline = known[source.pipeline]()
    dataset = _dataset_loader(pipeline, source.data.version)
    return [
        *pipeline.config_problems(source.params),
        *_data_problems(pipeline, source, dataset),
        *_revision_problems(source.git.revision),
        *_gate_problems(pipeline, gates, dataset),
    ]


def _dataset_loader(pipeline: Pipeline, version: str) -> Callable[[], Dataset | None]:
    """The data version, loaded at most once and only if a check needs it; None if it cannot be."""

    @cache
    def load() -> Dataset | None:
        if version not in pipeline.data_source().versions():
            return None
        try:
            return pipeline.data_source().load(version)
        except DataError:
            return None

    return load


def _data_problems(
    pipeline: Pipeline, source: TrainSource, dataset: Callable[[], Dataset | None]
) -> list[Problem]:
    version, pinned = source.data.version, source.data.sha256
    known = pipeline.data_source().versions()
    if version not in known:
        listed = ", ".join(known) or "none"
        message = f"pipeline {pipeline.name!r} has no data version {version!r} (known: {listed})"
        return [Problem(DATA_VERSION_FIELD, message)]
    if pinned is None:
        return []
    loaded = dataset()
    if loaded is None:
        return [Problem(DATA_VERSION_FIELD, f"{pipeline.name}@{version} cannot be loaded")]
    if loaded.sha256 != pinned:
        return [
            Problem(
                DATA_SHA_FIELD,
                f"pins {pinned[:12]}… but {pipeline.name}@{version} hashes to {loaded.sha256[:12]}…",
            )
        ]
    return []


def _revision_problems(revision: str) -> list[Problem]:
    try:
        code_revision(revision, CODE_DIR)
    except UnknownRevision as exc:
        return [Problem(UnknownRevision.FIELD, exc.reason)]
    except LineageError:
        # No checkout and no baked commit: the environment is at fault, not the spec, and training
        # reports it (exit 1). Refusing here would refuse every spec, valid ones included.
        return []
    return []


def _gate_problems(pipeline: Pipeline, gates: Gates, dataset: Callable[[], Dataset | None]) -> list[Problem]:
    """Every gate must name a metric the evaluation produces: a typo would otherwise fail the gate
    after training, or, for a regression gate without a champion yet, be skipped unnoticed."""
    problems = _gate_problems_of_set(pipeline, gates, dataset, "spec.gates")
    for name, rules in gates.datasets.items():
        problems += _evaluation_set_problems(pipeline, name, rules, dataset)
    return problems


def _gate_problems_of_set(
    pipeline: Pipeline, rules: SetGates, dataset: Callable[[], Dataset | None], at: str
) -> list[Problem]:
    def produced(metric: str) -> bool:
        if metric in pipeline.overall_metrics:
            return True
        if not metric.startswith(CLASS_METRIC_PREFIX):
            return False
        loaded = dataset()  # per-class metrics are named after the data's classes
        return loaded is not None and metric in {
            class_metric_key(name, per_class)
            for name in loaded.class_names
            for per_class in pipeline.per_class_metrics
        }

    producer = ProducedMetrics(
        f"pipeline {pipeline.name!r} produces no",
        pipeline.overall_metrics,
        pipeline.per_class_metrics,
        produced,
    )
    return producer.problems(rules, at)


def _evaluation_set_problems(
    pipeline: Pipeline, name: str, rules: EvaluationSet, held_out: Callable[[], Dataset | None]
) -> list[Problem]:
    """A further evaluation set must be a data version of the pipeline's source, hash as pinned, and
    have the classes the models predict, in the same order."""
    field = f"spec.gates.datasets.{name}.data"
    version = rules.data.version
    known = pipeline.data_source().versions()
    if version not in known:
        listed = ", ".join(known) or "none"
        message = f"pipeline {pipeline.name!r} has no data version {version!r} (known: {listed})"
        return [Problem(f"{field}.version", message)]
    loaded = _dataset_loader(pipeline, version)()
    if loaded is None:
        return [Problem(f"{field}.version", f"{pipeline.name}@{version} cannot be loaded")]
    if rules.data.sha256 is not None and loaded.sha256 != rules.data.sha256:
        message = (
            f"pins {rules.data.sha256[:12]}… but {pipeline.name}@{version} hashes to {loaded.sha256[:12]}…"
        )
        return [Problem(f"{field}.sha256", message)]
    trained_on = held_out()
    if trained_on is not None and trained_on.class_names != loaded.class_names:
        message = (
            f"{pipeline.name}@{version} has classes {list(loaded.class_names)}, but the models predict "
            f"{list(trained_on.class_names)}"
        )
        return [Problem(f"{field}.version", message)]
    return _gate_problems_of_set(pipeline, rules, lambda: loaded, f"spec.gates.datasets.{name}")


def _version_gate_problems(gates: Gates) -> list[Problem]:
    pipelines = [pipeline() for pipeline in catalogue().values()]
    overall = tuple(sorted({metric for p in pipelines for metric in p.overall_metrics}))
    per_class = tuple(sorted({metric for p in pipelines for metric in p.per_class_metrics}))

    def produced(metric: str) -> bool:
        class_name, _, last = metric.removeprefix(CLASS_METRIC_PREFIX).rpartition("/")
        return metric in overall or (
            metric.startswith(CLASS_METRIC_PREFIX) and bool(class_name) and last in per_class
        )

    producer = ProducedMetrics("no pipeline produces a", overall, per_class, produced)
    problems = producer.problems(gates)
    for name, rules in gates.datasets.items():  # their data versions are checked once the pipeline is known
        problems += producer.problems(rules, f"spec.gates.datasets.{name}")
    return problems


@dataclass(frozen=True)
class ProducedMetrics:
    """What an evaluation produces, as the gates of a spec are checked against it."""

    says: str  # "pipeline 'digits' produces no"; "no pipeline produces a" when it is not known yet
    overall: tuple[str, ...]
    per_class: tuple[str, ...]
    produced: Callable[[str], bool]

    def problems(self, gates: SetGates, at: str = "spec.gates") -> list[Problem]:
        """The problems of one evaluation set's gates, `at` its place in the spec."""

        def unknown(metric: str) -> str:
            return (
                f"{self.says} metric {metric!r} (produced: {', '.join(self.overall)} and "
                f"{class_metric_key('<class>', '<per-class metric>')})"
            )

        problems = [
            Problem(f"{at}.absolute.{metric}", unknown(metric))
            for metric in gates.absolute
            if not self.produced(metric)
        ]
        problems += [
            Problem(
                f"{at}.perClass.{metric}",
                f"{self.says} per-class metric {metric!r} (produced: {', '.join(self.per_class)})",
            )
            for metric in gates.per_class
            if metric not in self.per_class
        ]
        if gates.min_gain is not None and not self.produced(gates.min_gain.metric):
            problems.append(Problem(f"{at}.minGain.metric", unknown(gates.min_gain.metric)))
        if (
            isinstance(gates, Gates)
            and gates.regression is not None
            and not self.produced(gates.regression.metric)
        ):
            problems.append(Problem(f"{at}.regression.metric", unknown(gates.regression.metric)))
        return problems
