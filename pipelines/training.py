"""The training loop shared by every torch classifier pipeline.

On CPU it is bit-for-bit deterministic for a seed. On CUDA it uses what makes a GPU fast: the whole
data set resident on the device (no per-batch host copies), bf16 autocast, channels_last for
convolutions and, when the run is long enough to repay the compile time, torch.compile.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from promoter.pipelines.config import TrainConfig

# Below this many optimizer steps torch.compile costs more than it saves.
COMPILE_MIN_STEPS = 3000


@dataclass(frozen=True)
class EpochMetrics:
    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    seconds: float
    samples_per_second: float  # the optimisation loop alone, without validation

    def as_mlflow(self) -> dict[str, float]:
        return {
            "train/loss": self.train_loss,
            "train/accuracy": self.train_accuracy,
            "val/loss": self.val_loss,
            "val/accuracy": self.val_accuracy,
            "train/epoch_seconds": self.seconds,
            "train/samples_per_second": self.samples_per_second,
        }


@dataclass
class TrainResult:
    network: nn.Module
    device: torch.device
    history: list[EpochMetrics] = field(default_factory=list)

    @property
    def samples_per_second(self) -> float:
        """Steady-state throughput: the first epoch pays for warm-up (and compilation) and is left out."""
        measured = self.history[1:] or self.history
        return sum(m.samples_per_second for m in measured) / len(measured) if measured else 0.0


class Standardize(nn.Module):
    """Feature scaling fitted on the training split and shipped inside the model, so serving needs none."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std.clamp_min(1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def pick_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{torch.cuda.current_device()} ({torch.cuda.get_device_name(device)})"
    return "cpu"


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    torch.use_deterministic_algorithms(True, warn_only=True)


def degrade_labels(
    labels: npt.NDArray[np.int64], n_classes: int, fraction: float, seed: int, only_class: int | None = None
) -> npt.NDArray[np.int64]:
    """Replace `fraction` of the labels (of `only_class`'s rows, if set) with a different, random
    class (deterministic for the seed)."""
    if only_class is not None and not 0 <= only_class < n_classes:
        raise ValueError(f"params.noisy_class: {only_class} is not a class index (0..{n_classes - 1})")
    if fraction <= 0:
        return labels
    rng = np.random.default_rng(seed + 1_000_003)
    noisy = labels.copy()
    eligible = np.arange(len(labels)) if only_class is None else np.flatnonzero(labels == only_class)
    rows = rng.choice(eligible, size=round(len(eligible) * fraction), replace=False)
    shift = rng.integers(1, n_classes, size=len(rows))
    noisy[rows] = (labels[rows] + shift) % n_classes
    return noisy


def _uses_bf16(config: TrainConfig, device: torch.device) -> bool:
    if config.precision == "bf16":
        return True
    return config.precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported()


def _compiles(config: TrainConfig, device: torch.device, steps: int) -> bool:
    if config.compile == "on":
        return True
    return config.compile == "auto" and device.type == "cuda" and steps >= COMPILE_MIN_STEPS


def predict_proba(
    network: nn.Module, features: npt.NDArray[np.float32], device: torch.device, batch_size: int = 4096
) -> npt.NDArray[np.float32]:
    network.eval()
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(features), batch_size):
            batch = torch.from_numpy(features[start : start + batch_size]).to(device)
            outputs.append(torch.softmax(network(batch).float(), dim=1).cpu().numpy())
    if not outputs:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(outputs).astype(np.float32)


def train_classifier(
    make_body: Callable[[], nn.Module],
    config: TrainConfig,
    train: tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]],
    val: tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]],
    n_classes: int,
    device: torch.device,
    on_epoch: Callable[[EpochMetrics], None] | None = None,
) -> TrainResult:
    """Fit `Standardize -> body` with AdamW and cross-entropy; returns the network in eval mode.

    The body is built here, after seeding, because its weight initialisation draws from the RNG.
    """
    seed_everything(config.seed)
    x_np, y_np = train
    if config.train_fraction < 1.0:
        keep = np.random.default_rng(config.seed).permutation(len(x_np))[
            : max(1, round(len(x_np) * config.train_fraction))
        ]
        x_np, y_np = x_np[np.sort(keep)], y_np[np.sort(keep)]
    y_np = degrade_labels(y_np, n_classes, config.label_noise, config.seed, config.noisy_class)

    # Resident data: one host-to-device copy for the whole run, batches are index gathers.
    x = torch.from_numpy(x_np).to(device)
    y = torch.from_numpy(y_np).to(device)
    x_val = torch.from_numpy(val[0]).to(device)
    y_val = torch.from_numpy(val[1]).to(device)
    reduce_dims = [0, *range(2, x.dim())] if x.dim() > 2 else [0]
    mean = x.mean(dim=reduce_dims, keepdim=True)[0]
    std = x.std(dim=reduce_dims, keepdim=True)[0]
    network: nn.Module = nn.Sequential(Standardize(mean, std), make_body()).to(device)

    channels_last = device.type == "cuda" and x.dim() == 4
    if channels_last:
        network = network.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        x = x.contiguous(memory_format=torch.channels_last)
        x_val = x_val.contiguous(memory_format=torch.channels_last)

    steps_per_epoch = -(-len(x) // config.batch_size)
    model_step: nn.Module = network
    if _compiles(config, device, steps_per_epoch * config.epochs):
        model_step = torch.compile(network)  # type: ignore[assignment]
    optimizer = torch.optim.AdamW(network.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    autocast_dtype = torch.bfloat16 if _uses_bf16(config, device) else None
    generator = torch.Generator(device=device).manual_seed(config.seed)

    result = TrainResult(network=network, device=device)
    for epoch in range(1, config.epochs + 1):
        started = time.perf_counter()
        network.train()
        order = torch.randperm(len(x), device=device, generator=generator)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.int64)
        for start in range(0, len(x), config.batch_size):
            rows = order[start : start + config.batch_size]
            xb, yb = x[rows], y[rows]
            with torch.autocast(
                device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None
            ):
                logits = model_step(xb)
                loss = loss_fn(logits.float(), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            # Accumulate on the device: a .item() per batch would stall the GPU every step.
            loss_sum += loss.detach() * len(rows)
            correct += (logits.argmax(dim=1) == yb).sum()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        fit_seconds = time.perf_counter() - started
        val_loss, val_accuracy = _validate(network, x_val, y_val, loss_fn, autocast_dtype, device)
        metrics = EpochMetrics(
            epoch=epoch,
            train_loss=float(loss_sum) / len(x),
            train_accuracy=float(correct) / len(x),
            val_loss=val_loss,
            val_accuracy=val_accuracy,
            seconds=time.perf_counter() - started,
            samples_per_second=len(x) / fit_seconds,
        )
        result.history.append(metrics)
        if on_epoch is not None:
            on_epoch(metrics)
    network.eval()
    return result


def _validate(
    network: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    loss_fn: nn.Module,
    autocast_dtype: torch.dtype | None,
    device: torch.device,
) -> tuple[float, float]:
    if len(x) == 0:
        return 0.0, 0.0
    network.eval()
    with (
        torch.inference_mode(),
        torch.autocast(
            device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None
        ),
    ):
        logits = network(x).float()
    return float(loss_fn(logits, y)), float((logits.argmax(dim=1) == y).float().mean())
