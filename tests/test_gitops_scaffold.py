"""`promoter gitops init`: the GitOps repository a user copies (promoter.gitops.scaffold).

What a user would notice: the layout is written, with the chart copied from the installed package (a
wheel too, not only a checkout); each environment's values render, with the real helm, the model's
Rollout on the pinned image and the operator settings of that environment; the two environments can
share one cluster without claiming the same object; Argo CD's own Application CRD (v3.6.1, on the
real API server, strict field validation) accepts both Applications; bad input is refused with
exit 2, the problem named, and nothing written.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from promoter.gitops.scaffold import (
    IN_CLUSTER,
    OPERATOR_OWNED_ROLLOUT_FIELDS,
    Repository,
    ScaffoldError,
    production,
    staging,
)

from .chart import CHART, find, render
from .conftest import REPO, run_cli
from .kube import load_testbed

DIGEST = "sha256:" + "0123456789abcdef" * 4
IMAGE = f"registry.example.com/ml/promoter@{DIGEST}"
REPO_URL = "https://git.example.com/ml/promotions.git"
# What each environment's operator is told (promoter.operator.settings), as the brief of the layout says.
OPERATOR_ENV = {
    "staging": {
        "PROMOTER_OPERATOR_CHAMPION_ALIAS": "staging",
        "PROMOTER_OPERATOR_GITOPS_APPLICATION": "staging",
        "PROMOTER_OPERATOR_GITOPS_NAMESPACE": "argocd",
        "PROMOTER_OPERATOR_RECORD_REPOSITORY": REPO_URL,
        "PROMOTER_OPERATOR_RECORD_BRANCH": "staging",
        "PROMOTER_OPERATOR_RECORD_DIRECTORY": "environments/production/promotions",
        "MLFLOW_TRACKING_URI": "http://promoter-tracking.production.svc:5000",
    },
    "production": {
        "PROMOTER_OPERATOR_CHAMPION_ALIAS": "champion",
        "PROMOTER_OPERATOR_GITOPS_APPLICATION": "production",
        "PROMOTER_OPERATOR_GITOPS_NAMESPACE": "argocd",
        "MLFLOW_TRACKING_URI": "http://promoter-tracking.production.svc:5000",
    },
}
BRANCH = {"staging": "staging", "production": "main"}


def _init(directory: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_cli("gitops", "init", directory, "--repo-url", REPO_URL, "--image", IMAGE, *extra)


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A repository written by the real command, and what it printed."""
    directory = tmp_path_factory.mktemp("gitops") / "promotions"
    done = _init(directory)
    assert done.returncode == 0, done.stderr
    return directory, done.stdout


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_init_writes_the_layout_with_the_chart_and_says_what_to_do_next(layout: tuple[Path, str]) -> None:
    directory, said = layout
    written = _files(directory)
    chart = {f"charts/promoter/{name}": data for name, data in _files(CHART).items()}
    assert {k: v for k, v in written.items() if k.startswith("charts/")} == chart  # the whole chart, as is
    assert set(written) - set(chart) == {
        "README.md",
        "applications/staging.yaml",
        "applications/production.yaml",
        "environments/staging/values.yaml",
        "environments/staging/promotions/.gitkeep",
        "environments/production/values.yaml",
        "environments/production/promotions/.gitkeep",
    }
    assert f"Wrote {len(written)} files to {directory}" in said
    for command in ("git push -u origin main staging", "kubectl apply -n argocd -f applications/"):
        assert command in said


def test_every_yaml_file_parses(layout: tuple[Path, str]) -> None:
    directory, _ = layout
    templates = directory / "charts" / "promoter" / "templates"  # Go templates, not YAML until rendered
    parsed = [
        list(yaml.safe_load_all(path.read_text()))
        for path in sorted(directory.rglob("*.yaml"))
        if templates not in path.parents
    ]
    assert len(parsed) >= 8  # 2 values, 2 Applications, Chart.yaml, values.yaml, 2 CRDs, the rules


def test_the_environments_differ_only_where_an_environment_must(layout: tuple[Path, str]) -> None:
    directory, _ = layout
    staging_values, production_values = (
        yaml.safe_load((directory / "environments" / env / "values.yaml").read_text())
        for env in ("staging", "production")
    )
    assert (
        staging_values["image"]
        == production_values["image"]
        == {
            "repository": "registry.example.com/ml/promoter",
            "digest": DIGEST,
        }
    )
    assert staging_values["models"] == production_values["models"] == [{"name": "digits"}]
    differing = {
        k
        for k in staging_values.keys() | production_values.keys()
        if staging_values.get(k) != production_values.get(k)
    }
    assert differing == {"operator", "gitops", "tracking"}


@pytest.mark.parametrize("environment", ["staging", "production"])
def test_each_environment_renders_its_rollout_on_the_pinned_image_and_its_operator_settings(
    layout: tuple[Path, str], environment: str
) -> None:
    directory, _ = layout
    objects = _render(directory, environment)
    rollout = find(objects, "Rollout", "digits-serving")
    assert rollout["metadata"]["namespace"] == environment
    [server] = rollout["spec"]["template"]["spec"]["containers"]
    assert server["image"] == IMAGE
    alias = OPERATOR_ENV[environment]["PROMOTER_OPERATOR_CHAMPION_ALIAS"]
    assert {"name": "PROMOTER_MODEL_URI", "value": f"models:/digits@{alias}"} in server["env"]
    deployment = find(objects, "Deployment", "promoter-operator")
    [operator] = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in operator["env"]}
    assert {k: env.get(k) for k in OPERATOR_ENV[environment]} == OPERATOR_ENV[environment]
    if environment == "production":  # production publishes nothing; it runs the one registry
        assert not {k for k in env if k.startswith("PROMOTER_OPERATOR_RECORD_")}
        find(objects, "Deployment", "promoter-tracking")
    else:
        assert not [
            o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "promoter-tracking"
        ]
    # it may read the Applications where Argo CD keeps them, and nothing else there
    role = find(objects, "Role", f"promoter-{environment}-operator-gitops")
    assert role["metadata"]["namespace"] == "argocd"
    assert role["rules"] == [
        {"apiGroups": ["argoproj.io"], "resources": ["applications"], "verbs": ["get", "list", "watch"]}
    ]
    binding = find(objects, "RoleBinding", f"promoter-{environment}-operator-gitops")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "promoter-operator", "namespace": environment}
    ]


def _render(directory: Path, environment: str) -> list[dict[str, Any]]:
    return render(
        release="promoter",
        namespace=environment,
        values_files=(directory / "environments" / environment / "values.yaml",),
        chart=directory / "charts" / "promoter",
    )


def test_the_two_environments_in_one_cluster_claim_no_object_in_common(layout: tuple[Path, str]) -> None:
    """Cluster-scoped objects (ClusterRoles, their bindings, webhook configurations) and the Roles both
    put in Argo CD's namespace: a name in common would be taken over by the last release synced."""
    directory, _ = layout
    claimed = {
        env: {
            (o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"])
            for o in _render(directory, env)
        }
        for env in ("staging", "production")
    }
    cluster_scoped = {kind for kind, namespace, _ in claimed["staging"] if namespace is None}
    assert {"ClusterRole", "ClusterRoleBinding", "ValidatingWebhookConfiguration"} <= cluster_scoped
    assert claimed["staging"] & claimed["production"] == set()


def test_the_documented_install_keeps_its_documented_cluster_role_names() -> None:
    """Release `promoter` in namespace `promoter` (README "Install on a cluster", "Admission")."""
    names = {o["metadata"]["name"] for o in render() if o["kind"] == "ClusterRole"}
    assert {"promoter-editor", "promoter-approver", "promoter-operator-cluster"} == names


def _applications(directory: Path) -> dict[str, dict[str, Any]]:
    found = {}
    for env in ("staging", "production"):
        [document] = yaml.safe_load_all((directory / "applications" / f"{env}.yaml").read_text())
        found[env] = document
    return found


def test_each_application_syncs_its_branch_and_leaves_the_operator_s_fields_alone(
    layout: tuple[Path, str],
) -> None:
    directory, _ = layout
    for env, application in _applications(directory).items():
        spec = application["spec"]
        assert application["metadata"] == {"name": env, "namespace": "argocd"}
        chart, promotions = spec["sources"]
        assert {s["repoURL"] for s in spec["sources"]} == {REPO_URL}
        assert {s["targetRevision"] for s in spec["sources"]} == {BRANCH[env]}
        assert chart["path"] == "charts/promoter"
        assert chart["helm"]["releaseName"] == "promoter"
        assert chart["helm"]["valueFiles"] == [f"../../environments/{env}/values.yaml"]
        assert (directory / chart["path"] / chart["helm"]["valueFiles"][0]).resolve().is_file()
        assert promotions["path"] == f"environments/{env}/promotions"
        assert spec["destination"] == {"server": IN_CLUSTER, "namespace": env}
        assert spec["syncPolicy"]["automated"] == {"prune": True, "selfHeal": True}
        assert spec["syncPolicy"]["syncOptions"] == [
            "CreateNamespace=true",
            "RespectIgnoreDifferences=true",
        ]
        assert spec["ignoreDifferences"] == [
            {
                "group": "argoproj.io",
                "kind": "Rollout",
                "jqPathExpressions": list(OPERATOR_OWNED_ROLLOUT_FIELDS),
            }
        ]
        # one cluster: the CRDs are production's to apply, or the two Applications would take turns
        assert chart["helm"].get("skipCrds", False) is (env == "staging")


def test_the_ignored_fields_are_the_ones_the_chart_renders_for_the_operator(layout: tuple[Path, str]) -> None:
    """Each jq path names something of the rendered Rollout: a path that matched nothing would leave
    the operator's writes to be reverted."""
    directory, _ = layout
    rollout = find(_render(directory, "production"), "Rollout", "digits-serving")
    image, model_uri = OPERATOR_OWNED_ROLLOUT_FIELDS
    [server] = [c for c in rollout["spec"]["template"]["spec"]["containers"] if c["name"] == "server"]
    assert image.endswith('select(.name == "server") | .image') and server["image"] == IMAGE
    assert 'select(.name == "PROMOTER_MODEL_URI")' in model_uri
    assert [e for e in server["env"] if e["name"] == "PROMOTER_MODEL_URI"]
    # only the Rollout is applied server-side (the Services' atomic selector must stay client-side)
    assert rollout["metadata"]["annotations"]["argocd.argoproj.io/sync-options"] == "ServerSideApply=true"
    service = find(_render(directory, "production"), "Service", "digits-active")
    assert "argocd.argoproj.io/sync-options" not in (service["metadata"].get("annotations") or {})


def _application_crd() -> Path:
    """Argo CD's Application CRD, as the test bed built it (the `control_plane` fixture builds it)."""
    crd: Path = load_testbed().argocd_crds()[0]
    return crd


@pytest.fixture(scope="module")
def argocd_api(control_plane: Any, kube: Any) -> Any:
    """A dynamic client for the test bed, with Argo CD's Application CRD and namespace."""
    from kubernetes import dynamic

    from .kube import create_unless_present

    load_testbed().install_crds(control_plane, [_application_crd()])
    create_unless_present(kube, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "argocd"}})
    return dynamic.DynamicClient(kube)  # type: ignore[no-untyped-call]


def _dry_run_create(api: Any, document: dict[str, Any]) -> None:
    """What the API server would store (OpenAPI schema of the CRD, strict fields), storing nothing."""
    resource = api.resources.get(api_version=document["apiVersion"], kind=document["kind"])
    resource.create(
        body=document,
        namespace=document["metadata"]["namespace"],
        dry_run="All",
        query_params=[("fieldValidation", "Strict")],
    )


def test_argo_cd_s_application_crd_accepts_both_applications(
    layout: tuple[Path, str], argocd_api: Any
) -> None:
    directory, _ = layout
    for application in _applications(directory).values():
        _dry_run_create(argocd_api, application)


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (lambda spec: spec["syncPolicy"]["automated"].update(prune="yes"), "spec.syncPolicy.automated.prune"),
        (
            lambda spec: spec["sources"][0]["helm"].update(valuesFile="x.yaml"),
            'unknown field "spec.sources[0].helm.valuesFile"',
        ),
    ],
    ids=["wrong-type", "unknown-field"],
)
def test_the_crd_check_refuses_what_argo_cd_would(
    layout: tuple[Path, str], argocd_api: Any, change: Any, complaint: str
) -> None:
    """The check above can fail: a wrong type and a misspelt field are refused by the same API server."""
    from kubernetes.client.exceptions import ApiException

    directory, _ = layout
    application = _applications(directory)["staging"]
    change(application["spec"])
    with pytest.raises(ApiException) as refused:
        _dry_run_create(argocd_api, application)
    assert complaint in json.loads(str(refused.value.body))["message"]


# --- refused: exit 2, the problem named, nothing written


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--model", "Digits!"], "model 'Digits!'"),
        (["--model", "digits_v2"], "Rollout digits_v2-serving"),  # a registry name, not a Kubernetes one
        (["--image", "registry.example.com/ml/promoter:0.1.0"], "must be pinned by digest"),
        (["--image", "registry.example.com/ml/promoter@sha256:abc"], "must be pinned by digest"),
        (["--production-server", "https://prod.example.com:6443"], "--tracking-uri"),
        (["--production-namespace", "staging"], "each environment needs its own"),
    ],
    ids=[
        "model",
        "model-not-a-kubernetes-name",
        "tag-only-image",
        "short-digest",
        "two-clusters",
        "one-namespace",
    ],
)
def test_bad_input_is_refused_with_nothing_written(tmp_path: Path, args: list[str], named: str) -> None:
    directory = tmp_path / "promotions"
    done = _init(directory, *args)
    assert done.returncode == 2, done.stdout
    assert named in done.stderr, done.stderr
    assert not directory.exists()


def test_a_directory_that_is_not_empty_is_left_as_it_was(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine\n")
    done = _init(tmp_path)
    assert done.returncode == 2, done.stdout
    assert "is not empty" in done.stderr and str(tmp_path) in done.stderr
    assert _files(tmp_path) == {"notes.txt": b"mine\n"}


def test_two_clusters_share_the_registry_they_are_given_and_each_installs_its_crds(tmp_path: Path) -> None:
    repository = Repository(
        repo_url=REPO_URL,
        image=IMAGE,
        staging=staging(server="https://staging.example.com:6443"),
        production=production(server="https://prod.example.com:6443"),
        tracking_uri="https://mlflow.example.com",
    )
    from promoter.gitops.scaffold import init

    init(tmp_path / "promotions", repository)
    for env in ("staging", "production"):
        values = yaml.safe_load((tmp_path / "promotions" / "environments" / env / "values.yaml").read_text())
        assert values["tracking"] == {"enabled": False, "externalUri": "https://mlflow.example.com"}
    for application in _applications(tmp_path / "promotions").values():
        assert "skipCrds" not in application["spec"]["sources"][0]["helm"]


def test_every_problem_is_named_at_once() -> None:
    with pytest.raises(ScaffoldError) as refused:
        Repository(repo_url="", image="promoter:latest", model="-").check()
    assert all(
        what in str(refused.value) for what in ("model '-'", "image 'promoter:latest'", "repository URL")
    )


# --- from a wheel


def test_init_works_from_an_installed_wheel(tmp_path: Path) -> None:
    """The chart is package data: a wheel built from the project holds it, and `promoter gitops init`
    run from that wheel (not the checkout) copies it whole."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("src", "operator", "pipelines", "serving", "loadtest", "manifests", "charts"):
        shutil.copytree(REPO / folder, source / folder, ignore=ignore)
    build = f"from setuptools import build_meta; print(build_meta.build_wheel({str(tmp_path)!r}))"
    built = subprocess.run(
        [sys.executable, "-c", build], cwd=source, capture_output=True, text=True, timeout=300, check=False
    )
    assert built.returncode == 0, built.stderr[-3000:]
    installed = tmp_path / "site"
    with zipfile.ZipFile(tmp_path / built.stdout.strip().splitlines()[-1]) as wheel:
        wheel.extractall(installed)  # a pure-Python wheel installed is its files on sys.path
    directory = tmp_path / "promotions"
    env = {**os.environ, "PYTHONPATH": str(installed)}  # before the editable install's path entry
    ran = subprocess.run(
        [sys.executable, "-c", "import promoter.gitops.scaffold as s; print(s.__file__, s.packaged_chart())"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    module, chart_data = ran.stdout.split(maxsplit=1)
    assert module.startswith(str(installed)) and str(installed / "promoter" / "chart") in chart_data, (
        ran.stdout
    )
    command = ["gitops", "init", str(directory), "--repo-url", REPO_URL, "--image", IMAGE]
    done = subprocess.run(
        [sys.executable, "-m", "promoter", *command], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    chart = {f"charts/promoter/{name}": data for name, data in _files(CHART).items()}
    assert {k: v for k, v in _files(directory).items() if k.startswith("charts/")} == chart
