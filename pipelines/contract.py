"""What a pipeline must provide to be trained, evaluated, gated and served by promoter.

A pipeline is data + a network + its hyper-parameters. Training, evaluation, tracking, packaging
and serving are shared, so a new model plugs in by implementing this small class.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
from matplotlib.figure import Figure
from pydantic import ValidationError
from torch import nn

from promoter.pipelines.data import DataSource
from promoter.pipelines.metrics import ClassificationReport
from promoter.pipelines.training import TrainConfig
from promoter.promotion.spec import SpecError

PARAMS_FIELD = "spec.source.train.params"


class Pipeline(ABC):
    name: ClassVar[str]
    config_type: ClassVar[type[TrainConfig]] = TrainConfig

    @abstractmethod
    def data_source(self) -> DataSource:
        """Where versions of this pipeline's data come from."""

    @abstractmethod
    def build_body(self, config: TrainConfig, input_shape: tuple[int, ...], n_classes: int) -> nn.Module:
        """The network after input standardization; it returns logits."""

    def parse_config(self, params: Mapping[str, Any]) -> TrainConfig:
        try:
            return self.config_type.model_validate(dict(params))
        except ValidationError as exc:
            problems = [
                f"  {PARAMS_FIELD}.{'.'.join(str(p) for p in error['loc'])}: {error['msg']}"
                for error in exc.errors()
            ]
            raise SpecError(f"invalid params for pipeline {self.name!r}:\n" + "\n".join(problems)) from None

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
