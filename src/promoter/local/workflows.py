"""Workflows on one machine: the Hera-rendered DAG (train -> evaluate, or evaluate only for a
registered version), each step a local subprocess.

`run` advances the workflow by one step and returns, so the driver sees (and records) Training and
Evaluating as separate phases; a step that already succeeded is never run again.
"""

from __future__ import annotations

import json
from pathlib import Path

from promoter.local.identities import TRAINER, child_env
from promoter.pipelines.local_executor import WorkflowError, recorded_results, run_workflow
from promoter.pipelines.steps import WORKDIR_ENV
from promoter.pipelines.tracking import TRACKING_ENV
from promoter.pipelines.workflow import build_workflow
from promoter.promotion.engine import WorkflowObservation
from promoter.promotion.spec import ModelPromotion

_FAILURE_FILE = "failed.json"


class LocalWorkflows:
    def __init__(self, workdir: Path, tracking_uri: str) -> None:
        self.workdir = workdir
        self.tracking_uri = tracking_uri

    def directory(self, name: str) -> Path:
        return self.workdir / "workflows" / name

    def run(self, promotion: ModelPromotion, name: str) -> None:
        directory = self.directory(name)
        if (directory / _FAILURE_FILE).exists():
            return
        directory.mkdir(parents=True, exist_ok=True)
        env = child_env(TRAINER, {TRACKING_ENV: self.tracking_uri, WORKDIR_ENV: str(self.workdir)})
        try:
            run_workflow(
                build_workflow(promotion).to_dict(), directory, env=env, max_new_tasks=1, inherit=False
            )
        except WorkflowError as exc:
            (directory / _FAILURE_FILE).write_text(json.dumps({"message": str(exc)}))

    def observe(self, promotion: ModelPromotion, name: str) -> WorkflowObservation | None:
        directory = self.directory(name)
        if not directory.is_dir():
            return None
        failure = directory / _FAILURE_FILE
        if failure.exists():
            return WorkflowObservation("Failed", message=json.loads(failure.read_text())["message"])
        results = recorded_results(directory)
        outputs = {
            f"{task}.{key}": value
            for task, result in results.items()
            for key, value in result.outputs.items()
        }
        tasks = build_workflow(promotion).to_dict()["spec"]["templates"]
        dag = next(t for t in tasks if "dag" in t)["dag"]["tasks"]
        finished = all(task["name"] in results for task in dag)
        return WorkflowObservation("Succeeded" if finished else "Running", outputs)
