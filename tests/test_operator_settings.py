"""What the operator hands the pods it starts: each its own component's Vault role, never the operator's.

The operator runs with its own VAULT_ROLE and VAULT_SECRET_PATH (its Deployment in charts/promoter);
a Workflow step that inherited them would log in as the operator and read its secrets. Here the
operator's settings come from exactly the environment its Deployment sets, the Workflow steps are
checked against a real OpenBao with manifests/vault applied, and the load-test Job is created in a
real API server.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from promoter.crd import GROUP, PLURAL, VERSION
from promoter.operator.argo_rollouts import ArgoRollouts, HttpServiceProbe
from promoter.operator.argo_workflows import ArgoWorkflows
from promoter.operator.cluster import PromotionRef
from promoter.operator.load_test_jobs import JobLoadTests
from promoter.operator.settings import DEFAULT_SERVICE_URL, OperatorSettings
from promoter.promotion.spec import load_promotion
from promoter.secrets import SecretStore, VaultDenied
from promoter.vault_setup import packaged_layout_directory

from .chart import find, render
from .conftest import EXAMPLES, REPO, run_cli
from .openbao import Vault, service_account_token

ROLES = yaml.safe_load((REPO / "manifests" / "vault" / "roles.yaml").read_text())["components"]
VAULT_ADDR = "http://vault.vault.svc:8200"
NAMESPACE = "settings-check"


def deployment_env() -> dict[str, str]:
    """The operator container's environment, as the chart's Deployment sets it (with a Vault)."""
    deployment = find(render({"vault": {"addr": VAULT_ADDR}}), "Deployment", "promoter-operator")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return {item["name"]: item["value"] for item in container["env"]}


@pytest.fixture
def operator_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """This process's environment made the operator's: its Deployment's variables, nothing else."""
    for name in list(os.environ):
        if name.startswith(("VAULT_", "PROMOTER_OPERATOR_")):
            monkeypatch.delenv(name)
    env = deployment_env()
    assert env["VAULT_ROLE"] == "promoter-operator" and env["VAULT_SECRET_PATH"] == "promoter/operator"
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def workflow_manifest() -> dict[str, Any]:
    settings = OperatorSettings.load()
    workflows = ArgoWorkflows(_offline_api(), PromotionRef(NAMESPACE, "digits", "uid-1"), settings.workflows)
    return workflows.manifest(load_promotion(EXAMPLES / "digits" / "promotion.yaml"), "digits-train")


def _offline_api() -> Any:
    from kubernetes import client

    return client.ApiClient()  # building a manifest sends nothing


def step_env(workflow: dict[str, Any], step: str) -> dict[str, str]:
    [template] = [t for t in workflow["spec"]["templates"] if t["name"] == step]
    return {item["name"]: item["value"] for item in template["script"]["env"]}


def assert_vault_token_is_projected(
    credential_file: str, volumes: list[dict[str, Any]], container: dict[str, Any]
) -> None:
    """The file the pod logs in with is a service-account token for Vault's audience (roles.yaml):
    the default token's audience is the API server, which Vault's roles refuse."""
    audience = yaml.safe_load((REPO / "manifests" / "vault" / "roles.yaml").read_text())["audience"]
    [mount] = [m for m in container["volumeMounts"] if credential_file.startswith(m["mountPath"])]
    [volume] = [v for v in volumes if v["name"] == mount["name"]]
    [source] = volume["projected"]["sources"]
    token = source["serviceAccountToken"]
    assert token["audience"] == audience
    assert credential_file == f"{mount['mountPath']}/{token['path']}"


def test_workflow_steps_get_the_trainers_role_and_path_and_nothing_of_the_operators(
    operator_env: dict[str, str],
) -> None:
    workflow = workflow_manifest()

    rendered = yaml.safe_dump(workflow)
    assert operator_env["VAULT_ROLE"] not in rendered
    assert operator_env["VAULT_SECRET_PATH"] not in rendered
    assert workflow["spec"]["serviceAccountName"] == ROLES["trainer"]["serviceAccount"]
    for step in ("train", "evaluate"):
        env = step_env(workflow, step)
        assert env["VAULT_ROLE"] == "promoter-trainer"
        assert env["VAULT_SECRET_PATH"] == ROLES["trainer"]["secretPath"]
        assert env["VAULT_ADDR"] == operator_env["VAULT_ADDR"]
        assert env["VAULT_AUTH_METHOD"] == "kubernetes"
        [template] = [t for t in workflow["spec"]["templates"] if t["name"] == step]
        assert_vault_token_is_projected(
            env["VAULT_CREDENTIAL_FILE"], workflow["spec"]["volumes"], template["script"]
        )


def test_an_operator_without_vault_gives_its_pods_no_vault_variables(
    operator_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VAULT_ADDR")
    assert not any(name.startswith("VAULT_") for name in step_env(workflow_manifest(), "train"))


def test_a_step_logging_in_with_the_workflows_env_reads_the_trainers_secret_and_no_other(
    operator_env: dict[str, str], vault: Vault, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kubernetes auth needs a kubelet: the step logs in through the JWT method instead, its
    projected token file replaced by a token for the service account the Workflow runs under, as
    the API server would issue it."""
    monkeypatch.setenv("VAULT_ADDR", vault.addr)  # the operator's Vault: here, the test's OpenBao
    workflow = workflow_manifest()
    token = service_account_token(vault, workflow["spec"]["serviceAccountName"], tmp_path / "token")
    for name in list(operator_env):
        monkeypatch.delenv(name)  # the step's process has the step's environment, not the operator's
    for name, value in step_env(workflow, "train").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("VAULT_AUTH_METHOD", "jwt")
    monkeypatch.setenv("VAULT_CREDENTIAL_FILE", str(token))

    step = SecretStore.from_env()
    assert step.get("mlflow_tracking_token") == vault.canaries["trainer"]
    for other in ("operator", "server"):
        elsewhere = step.settings.model_copy(update={"secret_path": ROLES[other]["secretPath"]})
        with pytest.raises(VaultDenied, match=f"may not read secret/promoter/{other}"):
            SecretStore(elsewhere).read()
        as_other = step.settings.model_copy(update={"role": f"promoter-{other}"})
        with pytest.raises(VaultDenied, match=f"login as role 'promoter-{other}' was refused"):
            SecretStore(as_other).read()


def test_the_load_test_job_runs_as_the_load_tester(operator_env: dict[str, str], kube: Any) -> None:
    """Created through a real API server, and read back from it."""
    from kubernetes import client

    core: Any = client.CoreV1Api(kube)
    core.create_namespace({"metadata": {"name": NAMESPACE}})
    core.create_namespaced_service(
        NAMESPACE,
        {
            "metadata": {"name": "digits-preview"},
            "spec": {"selector": {"app": "digits"}, "ports": [{"port": 8080}]},
        },
    )
    rollout = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "digits"},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "digits"}},
            "template": {
                "metadata": {"labels": {"app": "digits"}},
                "spec": {"containers": [{"name": "server", "image": "promoter:test"}]},
            },
            "strategy": {"blueGreen": {"activeService": "digits-active", "previewService": "digits-preview"}},
        },
    }
    objects: Any = client.CustomObjectsApi(kube)
    objects.create_namespaced_custom_object("argoproj.io", "v1alpha1", NAMESPACE, "rollouts", rollout)
    settings = OperatorSettings.load()
    promotion = load_promotion(EXAMPLES / "digits" / "promotion.yaml")
    # A real owner: the test bed's garbage collector deletes a Job whose owner does not exist (with
    # a made-up uid the Job vanished before it was read back whenever the collector was quick).
    manifest = promotion.to_manifest()
    manifest["metadata"] = {"name": "digits", "namespace": NAMESPACE}
    created = objects.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, manifest)
    owner = PromotionRef(NAMESPACE, "digits", created["metadata"]["uid"])
    rollouts = ArgoRollouts(kube, NAMESPACE, HttpServiceProbe(kube, DEFAULT_SERVICE_URL))
    jobs = JobLoadTests(kube, owner, settings.image, settings.load_test_pod, rollouts)
    assert promotion.spec.rollout is not None
    jobs.run("digits-1", "digits", promotion.spec.rollout.load_test)

    job = kube.sanitize_for_serialization(
        client.BatchV1Api(kube).read_namespaced_job("digits-1-loadtest", NAMESPACE)
    )
    pod = job["spec"]["template"]["spec"]
    env = {item["name"]: item["value"] for item in pod["containers"][0]["env"]}
    assert pod["serviceAccountName"] == ROLES["loadtester"]["serviceAccount"]
    assert env["VAULT_ROLE"] == "promoter-loadtester"
    assert env["VAULT_SECRET_PATH"] == ROLES["loadtester"]["secretPath"]
    assert (env["VAULT_ADDR"], env["VAULT_AUTH_METHOD"]) == (operator_env["VAULT_ADDR"], "kubernetes")
    assert operator_env["VAULT_ROLE"] not in str(job) and operator_env["VAULT_SECRET_PATH"] not in str(job)
    assert_vault_token_is_projected(env["VAULT_CREDENTIAL_FILE"], pod["volumes"], pod["containers"][0])


@pytest.mark.parametrize(
    ("variable", "value", "complaint"),
    [
        ("PROMOTER_OPERATOR_RECONCILE_SECONDS", "soon", "Input should be a valid number"),
        ("PROMOTER_OPERATOR_RECONCILE_SECONDS", "0", "Input should be greater than 0"),
        ("PROMOTER_OPERATOR_VAULT_LAYOUT", "/no/such/layout", "no usable Vault layout in /no/such/layout"),
    ],
)
def test_the_operator_refuses_a_bad_setting_by_its_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, complaint: str
) -> None:
    monkeypatch.setenv(variable, value)
    result = run_cli("operator", "--namespace", NAMESPACE)
    assert result.returncode == 2, result.stderr
    assert f"{variable}: " in result.stderr and complaint in result.stderr
    assert "Traceback" not in result.stderr


def test_the_operator_refuses_an_incomplete_vault_configuration_of_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in list(os.environ):
        if name.startswith("VAULT_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("VAULT_ADDR", "http://127.0.0.1:9")
    result = run_cli("operator", "--namespace", NAMESPACE)
    assert result.returncode == 2, result.stderr
    assert "VAULT_ROLE is not set; VAULT_SECRET_PATH is not set" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_layout_without_the_trainer_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "policies").mkdir()
    layout = yaml.safe_load((REPO / "manifests" / "vault" / "roles.yaml").read_text())
    del layout["components"]["trainer"]
    (tmp_path / "roles.yaml").write_text(yaml.safe_dump(layout))
    for name in layout["components"]:
        (tmp_path / "policies" / f"{name}.hcl").write_text("")
    monkeypatch.setenv("PROMOTER_OPERATOR_VAULT_LAYOUT", str(tmp_path))
    result = run_cli("operator", "--namespace", NAMESPACE)
    assert result.returncode == 2 and "roles.yaml has no component 'trainer'" in result.stderr


def test_the_package_ships_manifests_vault_as_it_is() -> None:
    """One source of truth: the installed package carries manifests/vault's files (package data)."""
    packaged = packaged_layout_directory()
    for name in ("roles.yaml", *(f"policies/{c}.hcl" for c in ROLES)):
        assert (packaged / name).read_text() == (REPO / "manifests" / "vault" / name).read_text()
