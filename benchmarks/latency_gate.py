"""What the latency gate would see: p95 (and p50) ratios of digits CNNs timed side by side by
`measure_latency`, the champion with 16 channels (the default) and candidates of 16, 32, 64 and 256.

16 vs 16 is two random initialisations of the same architecture: the same work, so its spread is
the measurement's own noise, and a sane `gates.latency.maxRatio` sits clearly above its maximum.
Each repetition draws fresh weights for both models and measures them as the gate does (batch 1 and
`--batch-size`, `--rounds` interleaved passes, the server's one torch thread). Untrained weights:
latency depends on the architecture, not on what was learnt.

    .venv/bin/python benchmarks/latency_gate.py                    # 10 repetitions, batch 32, 50 rounds
    .venv/bin/python benchmarks/latency_gate.py --repetitions 20 --widths 16 256
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from promoter.pipelines.latency import LatencyReport, Stat, measure_latency  # noqa: E402
from promoter.promotion.gates import latency_metric  # noqa: E402
from tests.digits_bundles import digits_bundle, digits_features  # noqa: E402  (shared with the tests)

CHAMPION_CHANNELS = 16


def ratio(report: LatencyReport, batch: int, stat: Stat) -> float:
    """Candidate over champion, as the gate's `latency.p50Ratio[...]` divides the medians."""
    assert report.champion is not None
    name = latency_metric(batch, stat)
    return report.candidate[name] / report.champion[name]


def spread(values: list[float]) -> str:
    return f"{min(values):6.2f} {statistics.median(values):6.2f} {max(values):6.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--repetitions", type=int, default=10, help="fresh pairs of models per width")
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 32, 64, 256], help="candidates")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=50)
    options = parser.parse_args()
    features = digits_features()
    batches = sorted({1, options.batch_size})

    print(
        f"champion: {CHAMPION_CHANNELS} channels; {options.repetitions} repetitions, "
        f"{options.rounds} rounds, batch 1 and {options.batch_size}; ratio = candidate / champion"
    )
    # the ratios' spread depends on what else runs: say how busy the machine was
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n")
    header = f"{'candidate':<10}{'batch':>6}  {'p95 ratio min/med/max':>22}  {'p50 ratio min/med/max':>22}"
    print(header + f"  {'cand p95 ms (med)':>18}  {'champ p95 ms (med)':>19}  {'call s (med)':>12}")
    for width in options.widths:
        reports: list[LatencyReport] = []
        seconds: list[float] = []
        for repetition in range(options.repetitions):
            champion = digits_bundle(CHAMPION_CHANNELS, seed=2 * repetition)
            candidate = digits_bundle(width, seed=2 * repetition + 1)
            started = time.perf_counter()
            reports.append(
                measure_latency(
                    candidate, champion, features, batch_size=options.batch_size, rounds=options.rounds
                )
            )
            seconds.append(time.perf_counter() - started)
        for batch in batches:
            p95 = [ratio(r, batch, "p95") for r in reports]
            p50 = [ratio(r, batch, "p50") for r in reports]
            name = latency_metric(batch, "p95")
            candidate_ms = statistics.median(r.candidate[name] for r in reports)
            champion_ms = statistics.median(r.champion[name] for r in reports if r.champion is not None)
            print(
                f"{width:<10}{batch:>6}  {spread(p95):>22}  {spread(p50):>22}"
                f"  {candidate_ms:>18.3f}  {champion_ms:>19.3f}  {statistics.median(seconds):>12.2f}"
            )
    print(f"\nload average at end: {os.getloadavg()[0]:.1f}")
    print(
        f"max p95 ratio of {CHAMPION_CHANNELS} vs {CHAMPION_CHANNELS} (noise alone) is the floor of "
        "a sane maxRatio; the wider rows show what a slower candidate looks like"
    )


if __name__ == "__main__":
    main()
