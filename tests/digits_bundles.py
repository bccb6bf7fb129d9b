"""Untrained digits models, compiled as the server compiles them, built in process in milliseconds.

For what depends on a network's shape and not on its weights (latency above all): no training, no
MLflow store. Shared by tests/test_latency.py and benchmarks/latency_gate.py.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from promoter.pipelines import get_pipeline
from promoter.pipelines.digits import load_digits_v1
from promoter.pipelines.packaging import ModelBundle, ModelManifest
from promoter.pipelines.training import Standardize


def digits_features() -> npt.NDArray[np.float32]:
    """The digits images, N x 1 x 8 x 8: the inputs the digits models are served."""
    return load_digits_v1().features


def digits_bundle(channels: int, seed: int) -> ModelBundle:
    """A SmallCNN of `channels` with weights drawn from `seed`, compiled (`optimize_for_inference`)."""
    pipeline = get_pipeline("digits")
    config = pipeline.parse_config({"seed": seed, "channels": channels})
    manifest = ModelManifest(
        pipeline="digits",
        config=config.model_dump(mode="json"),
        input_shape=(1, 8, 8),
        class_names=tuple(str(digit) for digit in range(10)),
    )
    torch.manual_seed(seed)
    body = pipeline.build_body(config, manifest.input_shape, len(manifest.class_names))
    # pixel values are 0..16: roughly the scaling training would fit on them
    network = nn.Sequential(Standardize(torch.full((1, 1, 1), 5.0), torch.full((1, 1, 1), 6.0)), body)
    bundle = ModelBundle(manifest, network)
    if not bundle.optimize_for_inference():
        raise RuntimeError(f"the digits network with {channels} channels did not compile")
    return bundle
