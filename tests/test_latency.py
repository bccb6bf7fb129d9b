"""Forward latency of a candidate and its champion, measured side by side on real (untrained) models.

Timings are noisy, on CI above all, so what is asserted about them holds with a wide margin (a
network 16 times wider is over 20 times slower); how the models are timed (same rows, alternating
order, the server's thread count) is asserted exactly, by watching the calls.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import torch

from promoter.pipelines.latency import SERVING_TORCH_THREADS, LatencyReport, measure_latency
from promoter.pipelines.packaging import ModelBundle
from promoter.promotion.gates import latency_metric
from promoter.serving.settings import ServeSettings

from .digits_bundles import digits_bundle, digits_features

BATCH = 32
NAMES = {
    "latency/batch1/p50_ms",
    "latency/batch1/p95_ms",
    "latency/batch32/p50_ms",
    "latency/batch32/p95_ms",
}


@pytest.fixture(scope="module")
def features() -> npt.NDArray[np.float32]:
    return digits_features()


@pytest.fixture(scope="module")
def narrow() -> ModelBundle:
    return digits_bundle(channels=16, seed=0)


@pytest.fixture(scope="module")
def report(narrow: ModelBundle, features: npt.NDArray[np.float32]) -> LatencyReport:
    return measure_latency(narrow, digits_bundle(16, seed=1), features, batch_size=BATCH, rounds=50)


def test_metric_names_are_those_the_gate_reads() -> None:
    assert latency_metric(1, "p95") == "latency/batch1/p95_ms"
    assert latency_metric(32, "p50") == "latency/batch32/p50_ms"


def test_both_models_get_p50_and_p95_at_batch_1_and_the_batch_size(report: LatencyReport) -> None:
    assert (report.batch_size, report.rounds) == (BATCH, 50)
    assert report.champion is not None
    for figures in (report.candidate, report.champion):
        assert set(figures) == NAMES
        for batch in (1, BATCH):
            assert 0 < figures[latency_metric(batch, "p50")] <= figures[latency_metric(batch, "p95")]


def test_two_models_of_the_same_shape_time_alike_at_the_median(report: LatencyReport) -> None:
    # Same architecture, other weights: the same work. Only the median is compared: under load the
    # p95 of 50 passes hangs on which model two or three preemptions happened to hit (0.2-17x
    # measured on a busy 2-core machine), while the interleaved medians stayed within 5%.
    assert report.champion is not None
    for batch in (1, BATCH):
        p50 = latency_metric(batch, "p50")
        assert 0.5 < report.candidate[p50] / report.champion[p50] < 2


def test_without_a_champion_only_the_candidate_is_timed(
    narrow: ModelBundle, features: npt.NDArray[np.float32]
) -> None:
    alone = measure_latency(narrow, None, features, batch_size=BATCH, rounds=3, warmup=1)
    assert alone.champion is None
    assert set(alone.candidate) == NAMES


def test_a_batch_size_of_one_is_measured_once(narrow: ModelBundle, features: npt.NDArray[np.float32]) -> None:
    once = measure_latency(narrow, narrow, features, batch_size=1, rounds=3, warmup=1)
    assert set(once.candidate) == {"latency/batch1/p50_ms", "latency/batch1/p95_ms"}


def test_a_much_wider_network_measures_clearly_slower(
    narrow: ModelBundle, features: npt.NDArray[np.float32]
) -> None:
    # 256 channels cost about 250 times the multiply-adds of 16, and measured 20-75x slower on an
    # idle machine: a 2x margin only a broken measurement (or a swapped candidate) can miss.
    wider = digits_bundle(256, seed=0)
    wide = measure_latency(narrow, wider, features, batch_size=BATCH, rounds=5)
    assert wide.champion is not None
    p95 = latency_metric(BATCH, "p95")
    assert wide.champion[p95] / wide.candidate[p95] > 2
    # and the other way round: who is the candidate is not lost on the way
    swapped = measure_latency(wider, narrow, features, batch_size=BATCH, rounds=5)
    assert swapped.champion is not None
    assert swapped.candidate[p95] / swapped.champion[p95] > 2


class Watched(ModelBundle):
    """A real bundle that notes each forward pass: who ran, on which rows, with how many threads."""

    def __init__(self, name: str, bundle: ModelBundle, calls: list[tuple[str, Any, int]]) -> None:
        super().__init__(bundle.manifest, bundle.network)
        self.name, self.calls = name, calls

    def forward(self, inputs: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        self.calls.append((self.name, inputs.copy(), torch.get_num_threads()))
        return super().forward(inputs)


@pytest.fixture
def threads_restored() -> Iterator[int]:
    before = torch.get_num_threads()
    yield before
    torch.set_num_threads(before)


def test_both_models_run_the_same_rows_in_alternating_order_with_the_servers_threads(
    narrow: ModelBundle, threads_restored: int
) -> None:
    rows = np.arange(3 * 64, dtype=np.float32).reshape(3, 1, 8, 8)  # fewer rows than a batch: cycled
    calls: list[tuple[str, Any, int]] = []
    torch.set_num_threads(3)  # an evaluation process with threads of its own
    measure_latency(
        Watched("candidate", narrow, calls),
        Watched("champion", narrow, calls),
        rows,
        batch_size=4,
        rounds=3,
        warmup=2,
    )
    assert torch.get_num_threads() == 3  # restored
    assert {threads for _, _, threads in calls} == {SERVING_TORCH_THREADS}

    warmup, timed = 2 * 2, 3 * 2
    assert len(calls) == 2 * (warmup + timed)  # batch 1, then batch 4
    for start, batch in ((0, 1), (warmup + timed, 4)):
        rounds = calls[start + warmup : start + warmup + timed]
        assert [name for name, _, _ in rounds] == [
            *("candidate", "champion"),
            *("champion", "candidate"),
            *("candidate", "champion"),
        ]
        for r in range(3):
            (_, first, _), (_, second, _) = rounds[2 * r], rounds[2 * r + 1]
            expected = rows[np.arange(r * batch, (r + 1) * batch) % len(rows)]
            np.testing.assert_array_equal(first, expected)
            np.testing.assert_array_equal(second, expected)


def test_the_measurement_uses_the_servers_default_thread_count() -> None:
    assert ServeSettings.model_fields["torch_threads"].default == SERVING_TORCH_THREADS


def test_threads_none_measures_with_the_process_setting(narrow: ModelBundle, threads_restored: int) -> None:
    calls: list[tuple[str, Any, int]] = []
    torch.set_num_threads(3)
    measure_latency(
        Watched("candidate", narrow, calls), None, digits_features()[:8], batch_size=2, rounds=2, threads=None
    )
    assert {threads for _, _, threads in calls} == {3}


def test_features_that_do_not_fit_are_refused(narrow: ModelBundle) -> None:
    with pytest.raises(ValueError, match="expected inputs of shape"):
        measure_latency(narrow, None, np.zeros((4, 13), np.float32), batch_size=2, rounds=2)
