"""A tiny tabular pipeline (scikit-learn's wine data, an MLP): proof that the contract is not image-only."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from pydantic import Field

from promoter.pipelines.config import TrainConfig
from promoter.pipelines.contract import Pipeline
from promoter.pipelines.data import Dataset, DataSource, InMemorySource

if TYPE_CHECKING:
    from torch import nn


class WineConfig(TrainConfig):
    epochs: int = Field(default=60, ge=1, le=10_000)
    lr: float = Field(default=5e-3, gt=0, le=10)
    batch_size: int = Field(default=32, ge=1, le=65_536)
    hidden: int = Field(default=32, ge=2, le=4096)


def load_wine_v1() -> Dataset:
    from sklearn.datasets import load_wine  # seconds to import: only when the data is needed

    bunch = load_wine()
    return Dataset(
        name="wine",
        version="v1",
        features=bunch.data.astype(np.float32),
        labels=bunch.target.astype(np.int64),
        class_names=tuple(str(name) for name in bunch.target_names),
    )


class WinePipeline(Pipeline):
    name = "wine"
    config_type = WineConfig

    def data_source(self) -> DataSource:
        return InMemorySource("wine", {"v1": load_wine_v1})

    def build_body(self, config: TrainConfig, input_shape: tuple[int, ...], n_classes: int) -> nn.Module:
        from torch import nn  # only a run that trains pays for torch (see pipelines/config.py)

        assert isinstance(config, WineConfig)
        if len(input_shape) != 1:
            raise ValueError(f"wine expects flat feature vectors, got {input_shape}")
        return nn.Sequential(
            nn.Linear(input_shape[0], config.hidden),
            nn.ReLU(),
            nn.Linear(config.hidden, config.hidden),
            nn.ReLU(),
            nn.Linear(config.hidden, n_classes),
        )
