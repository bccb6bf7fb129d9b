"""Whole promotions on one machine, end to end: real training, MLflow, `promoter serve` processes
behind a loopback blue/green switch, and Locust in its own process. Nothing here is mocked.

The module shares one workdir whose first promotion makes version 1 the champion; every test leaves
version 1 as champion and active again, so the tests do not depend on each other's order.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from promoter.local.rollout import LocalRollouts, RolloutState
from promoter.local.store import promotions_dir
from promoter.pipelines.tracking import configure_tracking, tracking_uri
from promoter.promotion.names import PROMOTION_TAG
from promoter.promotion.status import PromotionStatus, load_status
from promoter.registry import MlflowRegistry
from promoter.serving.client import served_version

from .conftest import PROMOTER, run_cli

pytestmark = pytest.mark.slow

ROLLOUT = "digits-serving"
EVERY_PHASE_OF_A_PROMOTION = [
    "Training",
    "Evaluating",
    "Gating",
    "Deploying",
    "LoadTesting",
    "Promoting",
    "Promoted",
]
GOOD_PARAMS = {"epochs": 2, "lr": 0.002, "seed": 7}
# Trains fine, cannot pass: most labels are wrong and it sees a quarter of the data.
BAD_PARAMS = {"epochs": 1, "lr": 0.002, "seed": 7, "label_noise": 0.6, "train_fraction": 0.25}


def write_promotion(
    directory: Path, name: str, params: dict[str, Any], load_test: dict[str, Any] | None = None
) -> Path:
    document = {
        "apiVersion": "mlops.promoter.dev/v1alpha1",
        "kind": "ModelPromotion",
        "metadata": {"name": name},
        "spec": {
            "model": "digits",
            "source": {"train": {"pipeline": "digits", "data": {"version": "v1"}, "params": params}},
            "gates": {
                "absolute": {"accuracy": 0.8},
                "perClass": {"f1": 0.5},
                "regression": {"metric": "accuracy", "maxDrop": 0.1},
            },
            "rollout": {
                "name": ROLLOUT,
                "loadTest": {
                    "users": 5,
                    "spawnRate": 5,
                    "duration": "3s",
                    "maxP95Ms": 150,
                    "maxErrorRate": 0.01,
                    "minRps": 5,
                }
                | (load_test or {}),
            },
        },
    }
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


@dataclass(frozen=True)
class Platform:
    workdir: Path

    def run(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, "--workdir", self.workdir)

    def status(self, name: str) -> PromotionStatus:
        return load_status(promotions_dir(self.workdir) / name / "status.json")

    @property
    def registry(self) -> MlflowRegistry:
        return MlflowRegistry(configure_tracking(self.workdir), actor="test")

    def rollout(self) -> RolloutState:
        return LocalRollouts(self.workdir, tracking_uri(self.workdir)).describe(ROLLOUT)

    def active_version(self) -> str | None:
        proxy = self.rollout().proxy
        return served_version(proxy.address) if proxy else None


def promote(
    platform: Platform, spec: Path, *extra: str
) -> tuple[subprocess.CompletedProcess[str], PromotionStatus]:
    completed = platform.run("run", spec, "--json", *extra)
    assert completed.stdout, completed.stderr
    return completed, PromotionStatus.model_validate(json.loads(completed.stdout))


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """A workdir where the first promotion made version 1 the champion, served on the active address."""
    workdir = tmp_path_factory.mktemp("platform")
    platform = Platform(workdir)
    try:
        completed, status = promote(platform, write_promotion(workdir, "first", GOOD_PARAMS))
        assert completed.returncode == 0, completed.stderr
        assert status.phase == "Promoted" and status.model_version == "1"
        yield platform
    finally:
        run_cli("down", "--workdir", workdir)


def test_a_good_candidate_goes_all_the_way_and_its_story_is_recorded(platform: Platform) -> None:
    status = platform.status("first")
    assert [t.phase for t in status.history] == EVERY_PHASE_OF_A_PROMOTION
    assert status.previous_champion is None  # the first champion
    assert status.gates is not None and status.gates.passed
    assert status.load_test is not None and status.load_test.requests > 0
    assert {g.name: g.verdict for g in status.load_test_gates} == {
        "loadTest.p95Ms": "pass",
        "loadTest.errorRate": "pass",
        "loadTest.rps": "pass",
    }
    assert platform.registry.champion("digits") == "1"
    assert platform.active_version() == "1"
    events = (promotions_dir(platform.workdir) / "first" / "events.jsonl").read_text().splitlines()
    assert [json.loads(line)["phase"] for line in events] == [t.phase for t in status.history]

    shown = platform.run("status", "first")
    assert shown.returncode == 0 and "Promoted" in shown.stdout


def test_a_bad_candidate_is_rejected_and_production_is_untouched(platform: Platform) -> None:
    before = platform.rollout()
    completed, status = promote(platform, write_promotion(platform.workdir, "bad", BAD_PARAMS))

    assert completed.returncode == 3, completed.stderr
    assert status.phase == "Rejected" and status.reason == "GatesFailed"
    assert "absolute.accuracy" in status.message
    assert status.model_version is None  # never registered
    assert platform.registry.champion("digits") == "1"
    assert platform.active_version() == "1"
    after = platform.rollout()
    assert after.preview is None and after.servers.keys() == before.servers.keys()


def test_a_slow_candidate_passes_offline_gates_but_the_load_test_rejects_it(platform: Platform) -> None:
    spec = write_promotion(platform.workdir, "slow", {**GOOD_PARAMS, "seed": 8})
    completed, status = promote(platform, spec, "--serve-args", "--inject-latency-ms 400")

    assert completed.returncode == 3, completed.stderr
    assert status.phase == "Rejected" and status.reason == "LoadTestGatesFailed"
    assert status.gates is not None and status.gates.passed  # offline, it was fine
    assert status.load_test is not None and status.load_test.p95_ms >= 400
    assert "loadTest.p95Ms" in status.message
    assert platform.registry.champion("digits") == "1"
    assert platform.active_version() == "1"
    rollout = platform.rollout()
    assert rollout.preview is None and status.model_version not in rollout.servers  # preview torn down


def test_rollback_puts_the_previous_champion_back_from_its_hot_server(platform: Platform) -> None:
    v1_server = platform.rollout().servers["1"]
    completed, status = promote(
        platform, write_promotion(platform.workdir, "second", {**GOOD_PARAMS, "seed": 9})
    )
    assert completed.returncode == 0, completed.stderr
    new = status.model_version
    assert new is not None and new != "1"
    assert status.previous_champion == "1"
    assert platform.registry.champion("digits") == new
    assert platform.active_version() == new
    assert platform.rollout().servers["1"] == v1_server  # the old side is kept hot

    rolled = platform.run("rollback", "digits", "--json")
    assert rolled.returncode == 0, rolled.stderr
    assert json.loads(rolled.stdout)["phase"] == "RolledBack"
    assert platform.registry.champion("digits") == "1"
    assert platform.active_version() == "1"
    assert platform.rollout().servers["1"] == v1_server  # same process: no cold start
    moves = [(m.alias, m.from_version, m.to_version) for m in platform.registry.alias_history("digits")]
    assert moves[-1] == ("champion", new, "1")
    assert "rollback" in platform.registry.alias_history("digits")[-1].why


def test_rolling_back_the_first_champion_is_refused(tmp_path: Path) -> None:
    completed = run_cli("rollback", "digits", "--workdir", tmp_path)
    assert completed.returncode == 2
    assert "nothing to roll back" in completed.stderr


def _wait_for_phase(
    status_file: Path, phase: str, process: subprocess.Popen[str], timeout: float = 300
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if status_file.exists() and load_status(status_file).phase == phase:
            return
        if process.poll() is not None:
            raise AssertionError(f"the run ended (exit {process.returncode}) before reaching {phase}")
        time.sleep(0.1)
    raise AssertionError(f"{phase} not reached in {timeout}s")


def test_a_run_killed_in_each_phase_resumes_without_training_or_registering_twice(tmp_path: Path) -> None:
    platform = Platform(tmp_path / "work")
    spec = write_promotion(tmp_path, "crashy", GOOD_PARAMS)
    status_file = promotions_dir(platform.workdir) / "crashy" / "status.json"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    command = [str(PROMOTER), "run", str(spec), "--workdir", str(platform.workdir)]
    try:
        # how long into each phase to pull the plug: mid-step, not at its boundary
        for phase, delay in (
            ("Training", 4.0),
            ("Evaluating", 4.0),
            ("Deploying", 2.0),
            ("LoadTesting", 1.5),
        ):
            process = subprocess.Popen(
                command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True
            )
            _wait_for_phase(status_file, phase, process)
            time.sleep(delay)
            assert process.poll() is None, f"the run finished {phase} before it could be killed"
            process.send_signal(signal.SIGKILL)
            process.wait()

        completed, status = promote(platform, spec)
        assert completed.returncode == 0, completed.stderr
        assert [t.phase for t in status.history] == EVERY_PHASE_OF_A_PROMOTION
        registry = platform.registry
        experiment = registry.client.get_experiment_by_name("digits")
        assert experiment is not None
        runs = registry.client.search_runs(
            [experiment.experiment_id],
            filter_string=f"tags.`{PROMOTION_TAG}` = 'crashy'",
        )
        assert [r.info.status for r in runs].count("FINISHED") == 1  # trained once
        assert all(r.info.status in ("FINISHED", "KILLED") for r in runs)  # the killed attempt says so
        assert len(registry.client.search_model_versions("name='digits'")) == 1  # registered once
        assert [m.alias for m in registry.alias_history("digits")] == ["champion"]  # promoted once
        assert platform.active_version() == "1"
    finally:
        run_cli("down", "--workdir", platform.workdir)
