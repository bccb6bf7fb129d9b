"""Run Locust headless against an address, in its own process, and read back what it measured.

Locust monkey-patches the standard library (gevent), so it never runs inside the caller's process.
A load test that crashed, or that measured no request, raises: it is never mistaken for a pass.
"""

from __future__ import annotations

import csv
import math
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from promoter.processes import bound_to_parent
from promoter.promotion.spec import LoadTest
from promoter.promotion.status import LoadTestResult

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
ENDPOINT = "/predict"


class LoadTestError(RuntimeError):
    pass


def run_locust(
    host: str, profile: LoadTest, out_dir: Path, env: Mapping[str, str] | None = None
) -> LoadTestResult:
    out_dir.mkdir(parents=True, exist_ok=True)
    prefix = out_dir / "locust"
    seconds = max(1, math.ceil(profile.duration_seconds))
    command = [
        sys.executable, "-m", "locust",
        "-f", str(LOCUSTFILE),
        "--headless", "--only-summary",
        "--users", str(profile.users),
        "--spawn-rate", str(profile.spawn_rate),
        "--run-time", f"{seconds}s",
        "--stop-timeout", "5",
        "--host", host,
        "--csv", str(prefix),
        "--exit-code-on-error", "0",  # failures are judged by the gates, not by Locust's exit status
    ]  # fmt: skip
    log = out_dir / "locust.log"
    started = time.monotonic()
    with log.open("w") as output:
        completed = subprocess.run(
            command,
            stdout=output,
            stderr=subprocess.STDOUT,
            timeout=seconds + 120,
            env=None if env is None else dict(env),
            check=False,
            preexec_fn=bound_to_parent(),
        )
    elapsed = time.monotonic() - started
    if completed.returncode != 0:
        raise LoadTestError(f"locust exited with {completed.returncode}; log: {log}")
    return parse_stats(Path(f"{prefix}_stats.csv"), min(elapsed, float(seconds)))


def parse_stats(path: Path, duration_seconds: float) -> LoadTestResult:
    try:
        with path.open(newline="") as handle:
            rows = {row["Name"]: row for row in csv.DictReader(handle)}
    except OSError as exc:
        raise LoadTestError(f"locust left no statistics ({path}): {exc.strerror}") from None
    row = rows.get(ENDPOINT)
    if row is None or int(row["Request Count"]) == 0:
        raise LoadTestError(f"the load test sent no {ENDPOINT} request ({path})")
    return LoadTestResult(
        requests=int(row["Request Count"]),
        failures=int(row["Failure Count"]),
        rps=float(row["Requests/s"]),
        p50_ms=float(row["50%"]),
        p95_ms=float(row["95%"]),
        p99_ms=float(row["99%"]),
        duration_seconds=duration_seconds,
    )
