"""Training throughput: the reference trainer against a plain PyTorch loop, side by side, one run.

The plain loop is what most training scripts look like: fp32, the data set on the host, one
host-to-device copy per batch of 256. The reference trainer is `train_classifier` as the digits
pipeline runs it: data resident on the device and, on CUDA, bf16 autocast, channels_last and
torch.compile, at batch 1024. Both train the same SmallCNN on the same tiled digits images, at the
native 8x8 and upscaled to 32x32. Throughput is steady state (the first epoch is warm-up).

    .venv/bin/python benchmarks/train_throughput.py            # CUDA when present, else CPU
    .venv/bin/python benchmarks/train_throughput.py --samples 20000 --epochs 3
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import nn

from promoter.pipelines.digits import DigitsConfig, load_digits_v1
from promoter.pipelines.networks import SmallCNN
from promoter.pipelines.training import describe_device, pick_device, seed_everything, train_classifier

PLAIN_BATCH = 256
TUNED_BATCH = 1024


@dataclass(frozen=True)
class Measurement:
    size: int
    trainer: str
    batch: int
    precision: str
    samples_per_second: float


def tiled_images(size: int, samples: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    digits = load_digits_v1()
    repeats = -(-samples // len(digits.labels))
    features = np.tile(digits.features, (repeats, 1, 1, 1))[:samples]
    labels = np.tile(digits.labels, repeats)[:samples]
    if size != 8:
        features = F.interpolate(torch.from_numpy(features), size=(size, size), mode="bilinear").numpy()
    return np.ascontiguousarray(features, dtype=np.float32), labels.astype(np.int64)


def plain_loop(
    x: npt.NDArray[np.float32], y: npt.NDArray[np.int64], device: torch.device, epochs: int
) -> float:
    seed_everything(0)
    model = SmallCNN(DigitsConfig().channels, 10).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    loss_fn = nn.CrossEntropyLoss()
    x_cpu, y_cpu = torch.from_numpy(x), torch.from_numpy(y)
    rates = []
    for _ in range(epochs):
        started = time.perf_counter()
        order = torch.randperm(len(x_cpu))
        for start in range(0, len(order), PLAIN_BATCH):
            rows = order[start : start + PLAIN_BATCH]
            xb, yb = x_cpu[rows].to(device), y_cpu[rows].to(device)
            loss = loss_fn(model(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss.item()  # what a typical loop does to print its loss
        if device.type == "cuda":
            torch.cuda.synchronize()
        rates.append(len(x_cpu) / (time.perf_counter() - started))
    return float(np.mean(rates[1:] or rates))


def reference_trainer(
    x: npt.NDArray[np.float32], y: npt.NDArray[np.int64], device: torch.device, epochs: int, compile_mode: str
) -> tuple[float, str]:
    config = DigitsConfig(epochs=epochs, batch_size=TUNED_BATCH, compile=compile_mode)  # type: ignore[arg-type]
    empty = (x[:0], y[:0])
    result = train_classifier(lambda: SmallCNN(config.channels, 10), config, (x, y), empty, 10, device)
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    return result.samples_per_second, "bf16" if bf16 else "fp32"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--samples", type=int, default=None, help="images per epoch (default: 200k CUDA, 20k CPU)"
    )
    parser.add_argument("--epochs", type=int, default=3, help="epochs per measurement; the first is warm-up")
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 32])
    parser.add_argument(
        "--compile",
        choices=["auto", "on", "off"],
        default=None,
        help="torch.compile for the reference trainer (default: on for CUDA, off for CPU)",
    )
    args = parser.parse_args()
    device = pick_device()
    samples = args.samples or (200_000 if device.type == "cuda" else 20_000)
    compile_mode = args.compile or ("on" if device.type == "cuda" else "off")
    print(
        f"device: {describe_device(device)}  torch {torch.__version__}  threads {torch.get_num_threads()}  "
        f"samples/epoch {samples}  epochs {args.epochs}  compile {compile_mode}"
    )

    rows: list[Measurement] = []
    for size in args.sizes:
        x, y = tiled_images(size, samples)
        rows.append(
            Measurement(size, "plain loop", PLAIN_BATCH, "fp32", plain_loop(x, y, device, args.epochs))
        )
        rate, precision = reference_trainer(x, y, device, args.epochs, compile_mode)
        rows.append(Measurement(size, "reference trainer", TUNED_BATCH, precision, rate))

    print(
        f"\n{'image':>7}  {'trainer':<18} {'batch':>5}  {'precision':<9} {'samples/s':>12}  {'vs plain':>8}"
    )
    speedups = {}
    for plain, tuned in zip(rows[::2], rows[1::2], strict=True):
        speedups[plain.size] = tuned.samples_per_second / plain.samples_per_second
        for row in (plain, tuned):
            ratio = row.samples_per_second / plain.samples_per_second
            print(
                f"{row.size:>4}x{row.size:<2}  {row.trainer:<18} {row.batch:>5}  {row.precision:<9} "
                f"{row.samples_per_second:>12,.0f}  {ratio:>7.2f}x"
            )
    print()
    for size, speedup in speedups.items():
        print(f"speedup_{size}x{size}={speedup:.2f}")


if __name__ == "__main__":
    main()
