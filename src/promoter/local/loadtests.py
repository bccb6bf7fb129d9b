"""Load tests on one machine: Locust against the rollout's preview address; results kept on disk."""

from __future__ import annotations

import json
from pathlib import Path

from promoter.loadtest.runner import LoadTestError, run_locust
from promoter.local.identities import LOADTESTER, child_env
from promoter.local.rollout import LocalRollouts
from promoter.promotion.engine import LoadTestObservation
from promoter.promotion.spec import LoadTest
from promoter.promotion.status import LoadTestResult

_RESULT_FILE = "result.json"


class LocalLoadTests:
    def __init__(self, workdir: Path, rollouts: LocalRollouts) -> None:
        self.workdir = workdir
        self.rollouts = rollouts

    def directory(self, key: str) -> Path:
        return self.workdir / "loadtests" / key

    def run(self, key: str, rollout: str, profile: LoadTest) -> None:
        directory = self.directory(key)
        if (directory / _RESULT_FILE).exists():
            return
        state = self.rollouts.describe(rollout)
        preview = state.servers.get(state.preview) if state.preview else None
        outcome: dict[str, object]
        if preview is None:
            outcome = {"error": f"rollout {rollout} has no preview to load-test"}
        else:
            try:
                env = child_env(LOADTESTER)
                outcome = {"result": run_locust(preview.address, profile, directory, env).to_document()}
            except LoadTestError as exc:
                outcome = {"error": str(exc)}
        directory.mkdir(parents=True, exist_ok=True)
        (directory / _RESULT_FILE).write_text(json.dumps(outcome, indent=2))

    def observe(self, key: str) -> LoadTestObservation | None:
        path = self.directory(key) / _RESULT_FILE
        if not path.exists():
            return None
        outcome = json.loads(path.read_text())
        if "result" in outcome:
            return LoadTestObservation(LoadTestResult.model_validate(outcome["result"]))
        return LoadTestObservation(None, error=str(outcome.get("error", "no result")))
