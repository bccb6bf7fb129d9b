"""Run a rendered Argo Workflow's DAG on this machine, each step a subprocess.

It executes the manifest Argo would receive (same templates, same runner command, same parameter
passing), so the local substrate and the cluster cannot drift apart. It covers what our workflows
use: a DAG of script templates with `depends: a && b`, workflow and task-output parameters.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from graphlib import CycleError, TopologicalSorter
from pathlib import Path
from typing import Any

from promoter.processes import bound_to_parent

_REFERENCE = re.compile(
    r"\{\{\s*(workflow\.parameters\.[\w-]+|tasks\.[\w-]+\.outputs\.parameters\.[\w-]+)\s*\}\}"
)
_OUTPUTS_ENV = "hera__outputs_directory"
_LOG_TAIL_LINES = 30
_RESULT_FILE = "result.json"


class WorkflowError(RuntimeError):
    pass


class StepFailed(WorkflowError):
    def __init__(self, task: str, returncode: int, log_path: Path) -> None:
        lines = log_path.read_text(errors="replace").splitlines()[-_LOG_TAIL_LINES:]
        super().__init__(
            f"step {task!r} exited with {returncode}; log: {log_path}\n"
            + "\n".join(f"  | {line}" for line in lines)
        )
        self.task = task
        self.returncode = returncode
        self.log_path = log_path


@dataclass(frozen=True)
class TaskResult:
    name: str
    outputs: dict[str, str]
    seconds: float
    log_path: Path


def _dependencies(task: Mapping[str, Any]) -> list[str]:
    if "dependencies" in task:
        return list(task["dependencies"])
    expression = str(task.get("depends", "")).strip()
    if not expression:
        return []
    names = []
    for term in expression.split("&&"):
        name = term.strip().removesuffix(".Succeeded")
        if not re.fullmatch(r"[\w-]+", name):
            raise WorkflowError(
                f"task {task['name']!r}: depends expression {expression!r} is not supported locally"
            )
        names.append(name)
    return names


def _substitute(value: str, workflow_params: Mapping[str, str], results: Mapping[str, TaskResult]) -> str:
    def replace(match: re.Match[str]) -> str:
        parts = match.group(1).split(".")
        if parts[0] == "workflow":
            if parts[2] not in workflow_params:
                raise WorkflowError(f"unknown workflow parameter {parts[2]!r}")
            return workflow_params[parts[2]]
        task, parameter = parts[1], parts[4]
        if task not in results or parameter not in results[task].outputs:
            raise WorkflowError(f"task {task!r} produced no output parameter {parameter!r}")
        return results[task].outputs[parameter]

    return _REFERENCE.sub(replace, value)


def run_workflow(
    manifest: Mapping[str, Any],
    workdir: Path,
    env: Mapping[str, str] | None = None,
    on_start: Callable[[str], None] | None = None,
    on_done: Callable[[TaskResult], None] | None = None,
    max_new_tasks: int | None = None,
    inherit: bool = True,
) -> dict[str, TaskResult]:
    """Run the tasks of the entrypoint DAG in dependency order; stop at the first failed step.

    A task that already succeeded in this workdir is not run again (its recorded outputs are used),
    so a run interrupted by a crash resumes where it stopped. `max_new_tasks` runs at most that many
    tasks that had not succeeded yet, which lets a caller observe the workflow between steps.
    With `inherit=False` a step's environment is `env` (and its template's) only, not this
    process's: a caller that acts as another component hands its steps their own identity.
    """
    spec = manifest["spec"]
    templates = {template["name"]: template for template in spec["templates"]}
    dag_tasks = {task["name"]: task for task in templates[spec["entrypoint"]]["dag"]["tasks"]}
    workflow_params = {
        p["name"]: str(p.get("value", "")) for p in spec.get("arguments", {}).get("parameters", [])
    }
    try:
        order = list(
            TopologicalSorter({name: _dependencies(t) for name, t in dag_tasks.items()}).static_order()
        )
    except CycleError as exc:
        raise WorkflowError(f"the DAG has a cycle: {exc.args[1]}") from None

    results: dict[str, TaskResult] = {}
    started = 0
    for name in order:
        step_dir = workdir / "steps" / name
        recorded = _recorded(name, step_dir)
        if recorded is not None:
            results[name] = recorded
            continue
        if max_new_tasks is not None and started >= max_new_tasks:
            break
        started += 1
        task = dag_tasks[name]
        if on_start is not None:
            on_start(name)
        arguments = {
            p["name"]: _substitute(str(p.get("value", "")), workflow_params, results)
            for p in task.get("arguments", {}).get("parameters", [])
        }
        results[name] = _run_script(
            name, templates[task["template"]], arguments, step_dir, env or {}, inherit=inherit
        )
        (step_dir / _RESULT_FILE).write_text(
            json.dumps({"outputs": results[name].outputs, "seconds": results[name].seconds})
        )
        if on_done is not None:
            on_done(results[name])
    return results


def recorded_results(workdir: Path) -> dict[str, TaskResult]:
    """The tasks that already succeeded in this workdir, by name."""
    steps = workdir / "steps"
    found = (_recorded(d.name, d) for d in sorted(steps.iterdir())) if steps.is_dir() else iter(())
    return {result.name: result for result in found if result is not None}


def _recorded(name: str, step_dir: Path) -> TaskResult | None:
    try:
        saved = json.loads((step_dir / _RESULT_FILE).read_text())
    except (OSError, ValueError):
        return None
    return TaskResult(name, dict(saved["outputs"]), float(saved["seconds"]), step_dir / "log.txt")


def _run_script(
    name: str,
    template: Mapping[str, Any],
    arguments: Mapping[str, str],
    step_dir: Path,
    env: Mapping[str, str],
    *,
    inherit: bool = True,
) -> TaskResult:
    script = template.get("script")
    if script is None:
        raise WorkflowError(f"template {template['name']!r} is not a script template")
    inputs = []
    for parameter in template.get("inputs", {}).get("parameters", []):
        value = arguments.get(parameter["name"], parameter.get("default"))
        if value is None:
            raise WorkflowError(f"task {name!r}: no value for input {parameter['name']!r}")
        inputs.append({"name": parameter["name"], "value": value})

    step_dir.mkdir(parents=True, exist_ok=True)
    outputs_dir = step_dir / "outputs"
    script_path = step_dir / "script"
    script_path.write_text(script["source"].replace("{{inputs.parameters}}", json.dumps(inputs)))
    template_env = {item["name"]: item.get("value", "") for item in script.get("env", [])}
    pod_outputs_dir = template_env.get(_OUTPUTS_ENV, "/tmp/hera-outputs")
    step_env = {**(os.environ if inherit else {}), **template_env, **env, _OUTPUTS_ENV: str(outputs_dir)}
    command = [sys.executable if part == "python" else part for part in script["command"]]

    log_path = step_dir / "log.txt"
    started = time.perf_counter()
    with log_path.open("w") as log:
        completed = subprocess.run(
            [*command, *script.get("args", []), str(script_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=step_env,
            cwd=step_dir,
            check=False,
            preexec_fn=bound_to_parent(),
        )
    if completed.returncode != 0:
        raise StepFailed(name, completed.returncode, log_path)

    outputs = {}
    for parameter in template.get("outputs", {}).get("parameters", []):
        path = Path(parameter["valueFrom"]["path"].replace(pod_outputs_dir, str(outputs_dir), 1))
        if not path.exists():
            raise WorkflowError(
                f"step {name!r} succeeded but wrote no output parameter {parameter['name']!r}"
            )
        outputs[parameter["name"]] = path.read_text()
    return TaskResult(name=name, outputs=outputs, seconds=time.perf_counter() - started, log_path=log_path)
