"""What a pipeline must provide to be trained, evaluated, gated and served by promoter.

A pipeline is data + a network + its hyper-parameters. Training, evaluation, tracking, packaging
and serving are shared, so a new model plugs in by implementing this small class.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import numpy.typing as npt
from pydantic import ValidationError

from promoter.pipelines.config import TrainConfig
from promoter.pipelines.data import DataSource
from promoter.pipelines.metrics import OVERALL_METRICS, PER_CLASS_METRICS, ClassificationReport
from promoter.promotion.spec import Problem, SpecError

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from torch import nn

PARAMS_FIELD = "spec.source.train.params"


class Pipeline(ABC):
    name: ClassVar[str]
    config_type: ClassVar[type[TrainConfig]] = TrainConfig
    # The metrics its evaluation logs on the held-out split, by the names gates use: overall ones and,
    # per class, `class/<class>/<metric>`. Every classifier shares one evaluation, which builds its
    # report from these very tuples, so what a spec's gates are checked against cannot drift from
    # what is produced.
    overall_metrics: ClassVar[tuple[str, ...]] = OVERALL_METRICS
    per_class_metrics: ClassVar[tuple[str, ...]] = PER_CLASS_METRICS

    @abstractmethod
    def data_source(self) -> DataSource:
        """Where versions of this pipeline's data come from."""

    @abstractmethod
    def build_body(self, config: TrainConfig, input_shape: tuple[int, ...], n_classes: int) -> nn.Module:
        """The network after input standardization; it returns logits."""

    def config_problems(self, params: Mapping[str, Any]) -> list[Problem]:
        """Every param that would stop training, named as in the spec; [] when they parse."""
        try:
            self.config_type.model_validate(dict(params))
        except ValidationError as exc:
            return [
                Problem(".".join([PARAMS_FIELD, *(str(p) for p in error["loc"])]), error["msg"])
                for error in exc.errors()
            ]
        return []

    def parse_config(self, params: Mapping[str, Any]) -> TrainConfig:
        problems = self.config_problems(params)
        if problems:
            lines = "\n".join(f"  {problem}" for problem in problems)
            raise SpecError(f"invalid params for pipeline {self.name!r}:\n{lines}")
        return self.config_type.model_validate(dict(params))

    def failure_figure(
        self, features: npt.NDArray[np.float32], report: ClassificationReport, limit: int = 36
    ) -> Figure | None:
        """A picture of the worst mistakes, where the input can be drawn; None where it cannot."""
        return None

    def worst_failures(self, report: ClassificationReport, limit: int) -> npt.NDArray[np.int64]:
        """Misclassified rows, most confidently wrong first."""
        wrong = np.flatnonzero(report.y_pred != report.y_true)
        confidence = report.probabilities[wrong, report.y_pred[wrong]]
        return wrong[np.argsort(-confidence, kind="stable")][:limit].astype(np.int64)
