"""Prometheus metrics of the inference server, correct with several uvicorn workers.

With PROMETHEUS_MULTIPROC_DIR set (the `serve` command sets it for more than one worker), every
worker writes its samples to files there and `/metrics` aggregates them, whichever worker answers.
Per-feature sums and sums of squares let the drift monitor compute the serving mean and variance
of each input feature and compare them with the training reference. The sum is exported as two
counters, the positive parts and the negative magnitudes (S = increase(pos) - increase(neg)): a gauge
of a running sum breaks `increase()` (any decrease reads as a counter reset), `delta()` breaks across
a pod restart, and `promtool check metrics` refuses a gauge named `..._sum`.
"""

from __future__ import annotations

import os

import numpy as np
import numpy.typing as npt
from prometheus_client import REGISTRY as DEFAULT_REGISTRY
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

REQUEST_SECONDS = Histogram(
    "promoter_request_duration_seconds",
    "HTTP request latency.",
    ["endpoint", "status"],
    buckets=LATENCY_BUCKETS,
)
IN_FLIGHT = Gauge("promoter_requests_in_flight", "Requests being handled.", multiprocess_mode="livesum")
REQUEST_ROWS = Histogram("promoter_request_inputs", "Inputs per prediction request.", buckets=BATCH_BUCKETS)
FORWARD_ROWS = Histogram(
    "promoter_forward_batch_size", "Inputs per forward pass (after micro-batching).", buckets=BATCH_BUCKETS
)
FORWARD_SECONDS = Histogram(
    "promoter_forward_duration_seconds", "Forward pass latency.", buckets=LATENCY_BUCKETS
)
PREDICTIONS = Counter(
    "promoter_predictions_total", "Predictions by predicted class.", ["model_version", "class"]
)
LOW_CONFIDENCE = Counter(
    "promoter_low_confidence_predictions_total",
    "Predictions whose top probability is below the low-confidence threshold.",
    ["model_version"],
)
FEATURE_POSITIVE_SUM = Counter(
    "promoter_input_feature_positive_sum",
    "Sum of the positive parts of each input feature (for drift; the mean is (pos - neg) / observations).",
    ["feature"],
)
FEATURE_NEGATIVE_SUM = Counter(
    "promoter_input_feature_negative_sum",
    "Sum of the magnitudes of the negative parts of each input feature (for drift).",
    ["feature"],
)
FEATURE_SQUARES = Counter(
    "promoter_input_feature_sum_squares", "Sum of squares of each input feature.", ["feature"]
)
FEATURE_COUNT = Counter(
    "promoter_input_feature_observations_total", "Inputs observed for feature statistics."
)
MODEL_INFO = Gauge(
    "promoter_model_info",
    "The model this server serves (value 1).",
    ["name", "version", "run_id", "git_commit"],
    multiprocess_mode="liveall",
)
READY = Gauge("promoter_ready", "1 once the model is loaded and warmed up.", multiprocess_mode="livemin")


def render() -> bytes:
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(DEFAULT_REGISTRY)


class PredictionRecorder:
    """Accumulates what the model was asked and answered; `flush` publishes it to Prometheus.

    It is fed once per forward pass (a micro-batch), not once per request, and the per-label metric
    updates (one per class, two per feature) happen once per flush: both keep it off the hot path.
    """

    def __init__(
        self, version: str, class_names: tuple[str, ...], feature_count: int, low_confidence: float
    ) -> None:
        self._per_class = [PREDICTIONS.labels(version, name) for name in class_names]
        self._low_confidence = LOW_CONFIDENCE.labels(version)
        self._low_threshold = low_confidence
        self._feature_positive = [FEATURE_POSITIVE_SUM.labels(str(i)) for i in range(feature_count)]
        self._feature_negative = [FEATURE_NEGATIVE_SUM.labels(str(i)) for i in range(feature_count)]
        self._feature_squares = [FEATURE_SQUARES.labels(str(i)) for i in range(feature_count)]
        self._reset()

    def _reset(self) -> None:
        self._class_counts = np.zeros(len(self._per_class), dtype=np.int64)
        self._low = 0
        self._positive = np.zeros(len(self._feature_squares), dtype=np.float64)
        self._negative = np.zeros(len(self._feature_squares), dtype=np.float64)
        self._squares = np.zeros(len(self._feature_squares), dtype=np.float64)
        self._count = 0

    def record(self, inputs: npt.NDArray[np.float32], probabilities: npt.NDArray[np.float32]) -> None:
        self._class_counts += np.bincount(probabilities.argmax(axis=1), minlength=len(self._per_class))
        self._low += int((probabilities.max(axis=1) < self._low_threshold).sum())
        flat = inputs.reshape(len(inputs), -1).astype(np.float64)
        self._positive += np.clip(flat, 0.0, None).sum(axis=0)
        self._negative -= np.clip(flat, None, 0.0).sum(axis=0)
        self._squares += np.einsum("ij,ij->j", flat, flat)
        self._count += len(inputs)

    def flush(self) -> None:
        if self._count == 0:
            return
        for child, count in zip(self._per_class, self._class_counts.tolist(), strict=True):
            if count:
                child.inc(count)
        if self._low:
            self._low_confidence.inc(self._low)
        for child, value in zip(self._feature_positive, self._positive.tolist(), strict=True):
            child.inc(value)
        for child, value in zip(self._feature_negative, self._negative.tolist(), strict=True):
            child.inc(value)
        for square_child, value in zip(self._feature_squares, self._squares.tolist(), strict=True):
            square_child.inc(value)
        FEATURE_COUNT.inc(self._count)
        self._reset()
