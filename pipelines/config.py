"""The hyper-parameters of a training run, as a spec's `params` are checked against them.

Free of torch on purpose: validating a spec (`promoter run` refusing a bad one, the operator, its
admission webhook) parses params with these classes, and must not pay torch's import (over a second
here, and its memory in the operator's pod) to say `epochs: 0` is wrong.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# torch.manual_seed takes 0..2**64-1 (and numpy's generators refuse negative seeds).
SEED_MAX = 2**64 - 1


class TrainConfig(BaseModel):
    """Hyper-parameters common to every classifier; a pipeline subclasses it for its own.

    Strict: `epochs: "3"` or `epochs: true` is a mistake to report, not a value to coerce, and NaN
    or infinity would pass every bound (NaN compares false) and train garbage.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    seed: int = Field(default=0, ge=0, le=SEED_MAX)
    epochs: int = Field(default=8, ge=1, le=10_000)
    lr: float = Field(default=1e-3, gt=0, le=10)
    batch_size: int = Field(default=64, ge=1, le=65_536)
    weight_decay: float = Field(default=0.0, ge=0)
    # Deliberate degradation, for experiments and for candidates that must fail their gates.
    label_noise: float = Field(default=0.0, ge=0, lt=1)
    # Set: the label noise hits only this class's training rows (by index): one degraded class, the
    # candidate a per-class paired gate must catch while the overall accuracy hardly moves.
    noisy_class: int | None = Field(default=None, ge=0, le=65_535)
    train_fraction: float = Field(default=1.0, gt=0, le=1)
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    compile: Literal["auto", "on", "off"] = "auto"
