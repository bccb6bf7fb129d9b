"""Promotion as a merge: the wall time from `git merge staging` into main to production's Promoted,
split into its parts, on the real test bed (Argo CD, kube-apiserver, the Rollouts controller, two
operators, MLflow; the stand-ins of tests/cluster_stand_ins.py for pods and Argo Workflows).

It runs the end-to-end flow of tests/test_gitops_flow.py (staging trains and promotes, commits the
production record; the merge; production evaluates, previews, load-tests and promotes), which
writes what it measured from the merge to PROMOTER_GITOPS_TIMINGS; this script prints the figures
of each run and each part's share of the whole. The parts, in order:

  sync              the push of the merge to Argo CD's Synced + Healthy (the refresh annotation
                    plays the git webhook; without one, Argo CD polls: --app-resync, 3 min by default)
  evaluate and gate production's evaluate-only Workflow: today's gates against today's @champion
  preview           Deploying -> LoadTesting: the Rollouts controller's preview ReplicaSet, ready
  load test         LoadTesting -> Promoting: the load-test Job (Locust) against the preview
  promote           Promoting -> Promoted: the switch of the active Service and @champion

    .venv/bin/python benchmarks/gitops.py            # one run (about 3 minutes warm)
    .venv/bin/python benchmarks/gitops.py --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PARTS = ("merge to synced", "evaluate and gate", "preview", "load test", "promote")
TOTAL = "merge to Promoted"


def one_run(directory: Path) -> dict[str, float]:
    timings = directory / "timings.json"
    done = subprocess.run(
        [
            sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
            "tests/test_gitops_flow.py::test_a_promotion_committed_on_staging_is_promoted_in_staging_from_that_commit",
            "tests/test_gitops_flow.py::test_staging_commits_the_production_record_a_reviewer_can_act_on",
            "tests/test_gitops_flow.py::test_merging_staging_into_main_promotes_exactly_that_version_and_image_in_production",
        ],
        cwd=REPO,
        env={**os.environ, "PROMOTER_GITOPS_TIMINGS": str(timings)},
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    if done.returncode != 0 or not timings.exists():
        raise SystemExit(f"the GitOps flow failed (exit {done.returncode}):\n{done.stdout[-4000:]}")
    measured: dict[str, float] = json.loads(timings.read_text())
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument(
        "--runs", type=int, default=1, help="whole flows to run (each starts a fresh test bed)"
    )
    runs = parser.parse_args().runs
    results = []
    for run in range(1, runs + 1):
        with tempfile.TemporaryDirectory(prefix="promoter-gitops-bench-") as scratch:
            print(f"run {run}/{runs}: staging promotes, then the merge ...", flush=True)
            results.append(one_run(Path(scratch)))
    print(
        f"\n{'from the merge':<20}"
        + "".join(f"{'run ' + str(i + 1):>10}" for i in range(runs))
        + f"{'median':>10}{'share':>8}"
    )
    total = statistics.median(r[TOTAL] for r in results)
    for part in (*PARTS, TOTAL):
        values = [r[part] for r in results]
        median = statistics.median(values)
        cells = "".join(f"{v:>9.1f}s" for v in values)
        print(f"{part:<20}{cells}{median:>9.1f}s{median / total:>8.0%}")
    rest = total - sum(statistics.median(r[p] for r in results) for p in PARTS)
    print(f"{'(between the parts)':<20}{'':>{10 * runs}}{rest:>9.1f}s{rest / total:>8.0%}")
    sync = statistics.median(r["merge to synced"] for r in results)
    print(f"\nsync / merge-to-Promoted: {sync / total:.2f} (git and Argo CD's share of a promotion)")


if __name__ == "__main__":
    main()
