"""Forward latency of a candidate and the current champion, measured side by side in one process.

Absolute milliseconds on a shared machine drift 10-20% between runs (benchmarks/README.md), and
this project's CI machine has two noisy cores. So the latency gate compares ratios, and the two
models are timed in the same process, on the same rows, round by round in alternating order
(candidate then champion, then champion then candidate, ...): a burst of noise, a frequency change
or a cache flushed by a neighbour falls on both alike instead of on whichever ran second.

What is timed is the call the inference server makes per micro-batch: `ModelBundle.forward` on
rows `ModelBundle.validate` already accepted (serving/app.py hands it to the MicroBatcher). It
takes the frozen single-input graph for one row and the oneDNN batch graph for more, so batch 1 and
batch `batch_size` measure different graphs, as the server runs them. Bundles are measured as they
are: `load_bundle` compiles them as the server's are, and a network that could not be compiled is
served eagerly, so it is measured eagerly too. Parsing a request and validating it are left out:
they depend on the input's shape, not on the model.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import torch

from promoter.pipelines.packaging import ModelBundle
from promoter.promotion.gates import latency_metric

# The server's intra-op thread count (ServeSettings.torch_threads' default, which cannot be imported
# from here: serving imports pipelines). One thread per worker: on small batches a second one spins
# more CPU than it saves (benchmarks/README.md). tests/test_latency.py checks the two agree.
SERVING_TORCH_THREADS = 1

Stat = Literal["p50", "p95"]
_PERCENTILES: dict[Stat, float] = {"p50": 50.0, "p95": 95.0}


@dataclass(frozen=True)
class LatencyReport:
    """Percentiles of forward latency in milliseconds, keyed by `latency_metric` names, at batch 1
    and at `batch_size` (one set of names when `batch_size` is 1). `champion` is None without one."""

    batch_size: int
    rounds: int
    candidate: dict[str, float]
    champion: dict[str, float] | None


def measure_latency(
    candidate: ModelBundle,
    champion: ModelBundle | None,
    features: npt.NDArray[np.float32],
    *,
    batch_size: int,
    rounds: int,
    warmup: int = 5,
    threads: int | None = SERVING_TORCH_THREADS,
) -> LatencyReport:
    """Time `rounds` forward passes per model at batch 1 and at `batch_size`, interleaved.

    Round r of a batch size feeds both models the same rows, `features[r*b : (r+1)*b]` cycling over
    `features` when it has fewer rows than needed; the order alternates between rounds. Each model
    first runs `warmup` untimed passes per batch size (the first passes allocate, and TorchScript's
    profiling executor specialises the graph on them). Each pass is timed with
    `time.perf_counter_ns` around the call alone; inputs are prepared beforehand and the garbage
    collector is paused, so neither is charged to whichever model happened to trigger it.

    p50 and p95 are numpy's percentiles with linear interpolation (its default): with 50 rounds,
    p95 lies between the 3rd and 4th slowest pass, so a single stray pause does not move it.

    `threads` pins torch's intra-op threads for the measurement, as the server does (default: its
    default, one per worker), and restores the process's setting afterwards; None measures with the
    process's own setting, whatever it is. The setting is process-wide: nothing else should run
    torch in this process meanwhile.

    Raises ValueError (InputError) when `features` do not fit either model.
    """
    if batch_size < 1 or rounds < 1 or warmup < 0:
        raise ValueError(
            f"need batch_size >= 1, rounds >= 1 and warmup >= 0; got {batch_size}, {rounds}, {warmup}"
        )
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be at least 1 (or None for the process's setting), got {threads}")
    if len(features) == 0:
        raise ValueError("no rows to time the models on")
    models = [candidate] if champion is None else [candidate, champion]
    rows = candidate.validate(features)
    for model in models[1:]:
        model.validate(features)

    figures: list[dict[str, float]] = [{} for _ in models]
    with _torch_threads(threads), _gc_paused():
        for batch in sorted({1, batch_size}):
            inputs = [_round_rows(rows, batch, r) for r in range(rounds)]
            for figure, nanoseconds in zip(figures, _interleaved(models, inputs, warmup), strict=True):
                milliseconds = np.asarray(nanoseconds, dtype=np.float64) / 1e6
                for stat, q in _PERCENTILES.items():
                    figure[latency_metric(batch, stat)] = float(np.percentile(milliseconds, q))
    return LatencyReport(
        batch_size=batch_size,
        rounds=rounds,
        candidate=figures[0],
        champion=figures[1] if champion is not None else None,
    )


def _round_rows(rows: npt.NDArray[np.float32], batch: int, round_: int) -> npt.NDArray[np.float32]:
    """Round `round_`'s `batch` rows, cycling over `rows`: contiguous, as the server's batches are."""
    indices = np.arange(round_ * batch, (round_ + 1) * batch) % len(rows)
    return np.ascontiguousarray(rows[indices])


def _interleaved(
    models: Sequence[ModelBundle], inputs: Sequence[npt.NDArray[np.float32]], warmup: int
) -> list[list[int]]:
    """Nanoseconds per pass, per model: every model runs each round's input, in alternating order."""
    for index in range(warmup):
        for model in models:
            model.forward(inputs[index % len(inputs)])
    timings: list[list[int]] = [[] for _ in models]
    for round_, batch in enumerate(inputs):
        order = range(len(models)) if round_ % 2 == 0 else reversed(range(len(models)))
        for which in order:
            started = time.perf_counter_ns()
            models[which].forward(batch)
            timings[which].append(time.perf_counter_ns() - started)
    return timings


@contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """As `timeit` does: a collection triggered mid-measurement would be charged to one model."""
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
