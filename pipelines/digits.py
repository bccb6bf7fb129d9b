"""The reference pipeline: scikit-learn's bundled 8x8 handwritten digits and a small CNN."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from pydantic import Field

from promoter.pipelines.config import TrainConfig
from promoter.pipelines.contract import Pipeline
from promoter.pipelines.data import Dataset, DataSource, InMemorySource
from promoter.pipelines.metrics import ClassificationReport

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from torch import nn


class DigitsConfig(TrainConfig):
    epochs: int = Field(default=8, ge=1, le=10_000)
    lr: float = Field(default=2e-3, gt=0, le=10)
    # 16 keeps every class's F1 well above 0.9 at 2.3x the inference speed of 32 (see benchmarks/).
    channels: int = Field(default=16, ge=4, le=512)


def load_digits_v1() -> Dataset:
    from sklearn.datasets import load_digits  # seconds to import: only when the data is needed

    bunch = load_digits()
    return Dataset(
        name="digits",
        version="v1",
        features=bunch.images.astype(np.float32)[:, None, :, :],  # N x 1 x 8 x 8, pixel values 0..16
        labels=bunch.target.astype(np.int64),
        class_names=tuple(str(d) for d in range(10)),
    )


def load_digits_shifted() -> Dataset:
    """v1's images as later traffic might look: each moved by up to a pixel and with pixel noise,
    seeded so that the version means the same bytes everywhere. A second evaluation set for gates
    (`spec.gates.datasets`), never trained on."""
    v1 = load_digits_v1()
    rng = np.random.default_rng(20261124)
    images = v1.features[:, 0]
    shifted = np.zeros_like(images)
    for row, (dy, dx) in enumerate(rng.integers(-1, 2, size=(len(images), 2))):
        source = images[row, max(0, -dy) : 8 - max(0, dy), max(0, -dx) : 8 - max(0, dx)]
        shifted[row, max(0, dy) : 8 - max(0, -dy), max(0, dx) : 8 - max(0, -dx)] = source
    noisy = np.clip(shifted + rng.normal(0.0, 1.5, shifted.shape), 0.0, 16.0).astype(np.float32)
    return Dataset(
        name="digits",
        version="v1-shifted",
        features=noisy[:, None, :, :],
        labels=v1.labels,
        class_names=v1.class_names,
    )


class DigitsPipeline(Pipeline):
    name = "digits"
    config_type = DigitsConfig

    def data_source(self) -> DataSource:
        return InMemorySource("digits", {"v1": load_digits_v1, "v1-shifted": load_digits_shifted})

    def build_body(self, config: TrainConfig, input_shape: tuple[int, ...], n_classes: int) -> nn.Module:
        assert isinstance(config, DigitsConfig)
        if len(input_shape) != 3 or input_shape[0] != 1:
            raise ValueError(f"digits expects 1 x H x W images, got {input_shape}")
        from promoter.pipelines.networks import SmallCNN  # torch, only when a network is built

        return SmallCNN(config.channels, n_classes)

    def failure_figure(
        self, features: npt.NDArray[np.float32], report: ClassificationReport, limit: int = 36
    ) -> Figure | None:
        from matplotlib.figure import Figure

        rows = self.worst_failures(report, limit)
        if len(rows) == 0:
            return None
        side = math.ceil(math.sqrt(len(rows)))
        figure = Figure(figsize=(1.3 * side, 1.5 * side), dpi=100)
        for slot, row in enumerate(rows):
            axes = figure.add_subplot(side, side, slot + 1)
            axes.imshow(features[row, 0], cmap="gray_r")
            predicted = report.class_names[report.y_pred[row]]
            confidence = report.probabilities[row, report.y_pred[row]]
            axes.set_title(
                f"{report.class_names[report.y_true[row]]}→{predicted} {confidence:.2f}", fontsize=7
            )
            axes.axis("off")
        figure.suptitle("worst failures: true→predicted confidence", fontsize=9)
        figure.tight_layout()
        return figure
