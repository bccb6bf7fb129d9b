"""The rendered Argo Workflow: what a cluster would run, checked structurally, and admitted by the
real API server of the test bed (Argo's Workflow CRD) where that is what is checked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from promoter.pipelines.local_executor import WorkflowError, run_workflow
from promoter.pipelines.workflow import ClusterSettings, build_workflow
from promoter.promotion.spec import load_promotion, parse_promotion

from .conftest import EXAMPLES, REPO, run_cli


def rendered(
    changes: dict[str, Any] | None = None, settings: ClusterSettings | None = None
) -> dict[str, Any]:
    promotion = load_promotion(EXAMPLES / "digits" / "promotion.yaml")
    if changes:
        manifest = promotion.to_manifest()
        manifest["spec"]["source"]["train"].update(changes)
        promotion = parse_promotion(manifest)
    return build_workflow(promotion, settings).to_dict()  # type: ignore[no-any-return]


def templates(workflow: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in workflow["spec"]["templates"]}


def test_dag_runs_evaluate_after_train_and_passes_the_run_id() -> None:
    workflow = rendered()
    dag = templates(workflow)[workflow["spec"]["entrypoint"]]["dag"]["tasks"]
    tasks = {t["name"]: t for t in dag}
    assert set(tasks) == {"train", "evaluate"}
    assert tasks["evaluate"]["depends"] == "train"
    arguments = {p["name"]: p["value"] for p in tasks["evaluate"]["arguments"]["parameters"]}
    assert arguments["run_id"] == "{{tasks.train.outputs.parameters.run-id}}"
    assert templates(workflow)["train"]["outputs"]["parameters"][0]["name"] == "run-id"


def test_steps_run_the_packaged_code_through_heras_runner() -> None:
    for name in ("train", "evaluate"):
        script = templates(rendered())[name]["script"]
        assert script["command"] == ["python"]
        assert script["args"] == ["-m", "hera.workflows.runner", "-e", f"promoter.pipelines.steps:{name}"]
        assert script["source"] == "{{inputs.parameters}}"


def test_the_train_step_asks_for_the_spec_gpus_and_placement() -> None:
    workflow = rendered(
        {
            "resources": {
                "gpu": 2,
                "memory": "8Gi",
                "nodeSelector": {"accelerator": "h100"},
                "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            },
        }
    )
    train = templates(workflow)["train"]
    assert train["script"]["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert train["script"]["resources"]["requests"]["memory"] == "8Gi"
    assert train["nodeSelector"] == {"accelerator": "h100"}
    assert train["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert "resources" not in templates(workflow)["evaluate"]["script"]  # only training needs the GPU


def test_a_cpu_promotion_asks_for_no_gpu() -> None:
    train = templates(rendered({"resources": {"gpu": 0}}))["train"]
    assert "resources" not in train["script"] and "nodeSelector" not in train


def test_name_labels_and_parameters_identify_the_promotion() -> None:
    workflow = rendered(settings=ClusterSettings(namespace="ml", env={"VAULT_ROLE": "trainer"}))
    assert workflow["metadata"]["name"] == "digits-2026-11-23-train"
    assert workflow["metadata"]["namespace"] == "ml"
    assert workflow["metadata"]["labels"] == {
        "mlops.promoter.dev/promotion": "digits-2026-11-23",
        "mlops.promoter.dev/model": "digits",
    }
    [parameter] = workflow["spec"]["arguments"]["parameters"]
    assert parse_promotion(json.loads(parameter["value"])) == load_promotion(
        EXAMPLES / "digits" / "promotion.yaml"
    )
    env = {e["name"]: e["value"] for e in templates(workflow)["train"]["script"]["env"]}
    assert env["VAULT_ROLE"] == "trainer" and "MLFLOW_TRACKING_URI" in env


def test_render_command_prints_the_same_workflow_as_yaml() -> None:
    result = run_cli(
        "render", EXAMPLES / "digits" / "promotion.yaml", "--image", "registry.local/promoter:dev"
    )
    assert result.returncode == 0, result.stderr
    workflow = yaml.safe_load(result.stdout)
    assert workflow["kind"] == "Workflow"
    assert templates(workflow)["train"]["script"]["image"] == "registry.local/promoter:dev"


def registered_version_spec(directory: Path) -> Path:
    manifest = load_promotion(EXAMPLES / "digits" / "promotion.yaml").to_manifest()
    manifest["spec"]["source"] = {"modelVersion": "3"}
    path = directory / "again.yaml"
    path.write_text(yaml.safe_dump(manifest))
    return path


def test_a_registered_version_gets_the_same_dag_with_only_its_evaluate_step(tmp_path: Path) -> None:
    promotion = load_promotion(registered_version_spec(tmp_path))
    workflow = build_workflow(promotion).to_dict()
    assert workflow["metadata"]["name"] == "digits-2026-11-23-evaluate"
    assert workflow["metadata"]["labels"]["mlops.promoter.dev/promotion"] == "digits-2026-11-23"
    dag = templates(workflow)[workflow["spec"]["entrypoint"]]["dag"]["tasks"]
    assert [(t["name"], t.get("depends")) for t in dag] == [("evaluate", None)]  # no train step
    arguments = {p["name"]: p["value"] for p in dag[0]["arguments"]["parameters"]}
    assert arguments == {"promotion": "{{workflow.parameters.promotion}}"}  # the version is in it
    [parameter] = workflow["spec"]["arguments"]["parameters"]
    assert parse_promotion(json.loads(parameter["value"])).spec.source.model_version == "3"

    evaluate = templates(workflow)[dag[0]["template"]]
    assert evaluate["script"]["args"][-1] == "promoter.pipelines.steps:evaluate_version"
    assert [p["name"] for p in evaluate["inputs"]["parameters"]] == ["promotion"]
    # the decision, and the run its gate report is in (what the engine reads as evaluate.run-id)
    assert [p["name"] for p in evaluate["outputs"]["parameters"]] == ["decision", "run-id"]
    assert "resources" not in evaluate["script"]


def test_render_prints_the_evaluate_only_workflow_of_a_registered_version(tmp_path: Path) -> None:
    result = run_cli("render", registered_version_spec(tmp_path))
    assert result.returncode == 0, result.stderr
    workflow = yaml.safe_load(result.stdout)
    assert workflow["metadata"]["name"].endswith("-evaluate")
    assert set(templates(workflow)) == {"promote", "evaluate-version"}


@pytest.mark.parametrize("source", ["train", "modelVersion"])
def test_the_api_server_accepts_both_rendered_workflows(kube: Any, tmp_path: Path, source: str) -> None:
    """What the operator creates, as the real API server (Argo's Workflow CRD) admits it."""
    from kubernetes import client

    spec = (
        registered_version_spec(tmp_path)
        if source == "modelVersion"
        else EXAMPLES / "digits" / "promotion.yaml"
    )
    workflow = build_workflow(load_promotion(spec), ClusterSettings(namespace="default")).to_dict()
    objects: Any = client.CustomObjectsApi(kube)
    created = objects.create_namespaced_custom_object(
        "argoproj.io", "v1alpha1", "default", "workflows", workflow, dry_run="All", field_validation="Strict"
    )
    assert created["metadata"]["name"] == workflow["metadata"]["name"]
    assert created["spec"] == workflow["spec"]


def test_render_runs_the_steps_as_the_trainer_of_the_vault_layout() -> None:
    """The same roles.yaml the operator and `promoter vault-setup` read: one place to change them."""
    trainer = yaml.safe_load((REPO / "manifests" / "vault" / "roles.yaml").read_text())["components"][
        "trainer"
    ]
    result = run_cli("render", EXAMPLES / "digits" / "promotion.yaml")
    assert result.returncode == 0, result.stderr
    workflow = yaml.safe_load(result.stdout)
    assert workflow["spec"]["serviceAccountName"] == trainer["serviceAccount"]
    for step in ("train", "evaluate"):
        env = {e["name"]: e["value"] for e in templates(workflow)[step]["script"]["env"]}
        assert env["VAULT_ROLE"] == "promoter-trainer"
        assert env["VAULT_SECRET_PATH"] == trainer["secretPath"]
        assert env["VAULT_AUTH_METHOD"] == "kubernetes"


def minimal_manifest(tasks: list[dict[str, Any]]) -> dict[str, Any]:
    return {"spec": {"entrypoint": "main", "templates": [{"name": "main", "dag": {"tasks": tasks}}]}}


@pytest.mark.parametrize(
    ("tasks", "message"),
    [
        (
            [{"name": "a", "template": "t", "depends": "b"}, {"name": "b", "template": "t", "depends": "a"}],
            "cycle",
        ),
        ([{"name": "a", "template": "t", "depends": "b || c"}], "not supported locally"),
    ],
)
def test_the_local_executor_refuses_dags_it_cannot_run_faithfully(
    tasks: list[dict[str, Any]], message: str, tmp_path: Any
) -> None:
    with pytest.raises(WorkflowError, match=message):
        run_workflow(minimal_manifest(tasks), tmp_path)
