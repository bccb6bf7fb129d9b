"""The Helm chart (charts/promoter) with the real helm v4 binary and the real API server of the test bed.

What a user installing it would notice: `helm lint --strict` passes; a wrong value fails with the
field named; what it renders (with the defaults, and with every value set) is accepted by the API
server (server-side apply, dry run, strict field validation); `helm install` brings the operator,
the tracking server and a model's blue/green Rollout up (kwok makes pods Ready: no container runs);
`helm upgrade` changes what it should and keeps the model URI the operator set; `helm uninstall`
leaves nothing behind but the CRDs (and, by default, the tracking server's data).

Stand-ins, and why: kube-prometheus-stack and cert-manager do not run here, so the kinds their
CRDs define (ServiceMonitor, PrometheusRule, Certificate, Issuer) are registered with schema-less
stand-in CRDs before the dry run: the API server then checks their metadata, not their spec. The
vault-setup hook is a Job whose pod never runs on kwok (it would hold `helm install` until its
timeout), so it is off in the install test and rendered and dry-run-applied in the template test.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from .chart import CHART, crds, find, helm, render
from .conftest import REPO, run_cli
from .kube import create_unless_present, ensure_service_account, mint

EVERYTHING = REPO / "tests" / "chart_values" / "everything.yaml"
ROLES = yaml.safe_load((REPO / "manifests" / "vault" / "roles.yaml").read_text())
LABELS = ("name", "instance", "component", "part-of", "managed-by")
NAMESPACE, RELEASE = "chart-e2e", "e2e"

# Not defined in the test bed (their controllers do not run here): schema-less stand-ins.
STAND_IN_KINDS = {
    ("monitoring.coreos.com", "ServiceMonitor", "servicemonitors"),
    ("monitoring.coreos.com", "PrometheusRule", "prometheusrules"),
    ("cert-manager.io", "Certificate", "certificates"),
    ("cert-manager.io", "Issuer", "issuers"),
}


def _leaves(values: Any, prefix: str = "") -> set[str]:
    """Dotted paths of the values' leaves (an empty map or list is a leaf: a user fills it)."""
    if isinstance(values, dict) and values:
        return {leaf for key, value in values.items() for leaf in _leaves(value, f"{prefix}{key}.")}
    return {prefix.rstrip(".")}


def _chart_copy(tmp_path: Path, dashboards: dict[str, str], rules: str | None) -> Path:
    """The chart with the given generated inputs (dashboards/*.json, rules/promoter.rules.yaml) and
    no others: the repository's chart may hold other helpers' files."""
    chart = tmp_path / "promoter"
    shutil.copytree(CHART, chart, ignore=shutil.ignore_patterns("dashboards", "rules"))
    if dashboards:
        (chart / "dashboards").mkdir()
        for name, text in dashboards.items():
            (chart / "dashboards" / name).write_text(text)
    if rules is not None:
        (chart / "rules").mkdir()
        (chart / "rules" / "promoter.rules.yaml").write_text(rules)
    return chart


DASHBOARD = json.dumps({"title": "Promoter: promotions", "panels": [], "schemaVersion": 41})
RULES = """groups:
  - name: promoter.operator
    rules:
      - alert: PromoterReconcileErrors
        expr: sum(rate(promoter_reconcile_errors_total[5m])) > 0
        for: 10m
        labels: {severity: warning}
        annotations: {summary: "the operator fails to reconcile"}
"""


# --- without a cluster


@pytest.mark.parametrize("values", [(), (EVERYTHING,)], ids=["defaults", "everything"])
def test_helm_lint_strict_passes(values: tuple[Path, ...]) -> None:
    files = [arg for path in values for arg in ("--values", str(path))]
    done = helm("lint", "--strict", str(CHART), *files)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 chart(s) failed" in done.stdout


def test_the_everything_values_set_every_value() -> None:
    """Else a template branch could go unrendered, and so untested."""
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    everything = yaml.safe_load(EVERYTHING.read_text())
    missing = {leaf for leaf in _leaves(defaults) if not _set_in(everything, leaf)}
    assert not missing, f"not set in {EVERYTHING.name}: {sorted(missing)}"


def _set_in(values: dict[str, Any], dotted: str) -> bool:
    node: Any = values
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return True


@pytest.mark.parametrize(
    ("args", "field", "complaint"),
    [
        (["--set", "operator.replicas=two"], "/operator/replicas", "got string, want integer"),
        (["--set", "operator.replica=2"], "/operator", "additional properties 'replica' not allowed"),
        (["--set", "models[0].name=Digits,models[0].modelUri=models:/d/1"], "/models/0/name", "pattern"),
        (["--set", "models[0].name=digits,models[0].modelUri=digits"], "/models/0/modelUri", "pattern"),
        (["--set", "models[0].replicas=2"], "/models/0", "missing property 'name'"),
        (["--set", "operator.championAlias=prod/1"], "/operator/championAlias", "pattern"),
        (["--set", "gitops.record.branch="], "/gitops/record/branch", "minLength"),
        (["--set", "tracking.backend=mysql"], "/tracking/backend", "must be one of 'sqlite', 'postgresql'"),
        (["--set", "serving.gpu=-1"], "/serving/gpu", "minimum"),
        (["--set", "image.digest=latest"], "/image/digest", "pattern"),
    ],
    ids=[
        "type",
        "unknown-key",
        "model-name",
        "model-uri",
        "model-name-missing",
        "alias",
        "record-branch",
        "backend",
        "gpu",
        "digest",
    ],
)
@pytest.mark.parametrize("command", ["template", "install"])
def test_a_wrong_value_fails_with_the_field_named(
    command: str, args: list[str], field: str, complaint: str
) -> None:
    dry_run = ["--dry-run=client"] if command == "install" else []
    done = helm(command, "check", str(CHART), *dry_run, *args)
    assert done.returncode == 1, done.stdout
    assert f"at '{field}'" in done.stderr and complaint in done.stderr, done.stderr


def test_vault_is_refused_outside_the_namespace_its_roles_bind() -> None:
    done = helm("template", "check", str(CHART), "--namespace", "ml", "--set", "vault.addr=http://vault:8200")
    assert done.returncode == 1, done.stdout
    assert "vault.addr: Vault's roles (manifests/vault/roles.yaml) bind" in done.stderr, done.stderr
    assert "not ml: install with --namespace promoter" in done.stderr
    assert ROLES["namespace"] == "promoter"  # what the chart's check says


def test_the_vault_setup_hook_refuses_to_render_without_its_token_secret() -> None:
    done = helm(
        "template", "check", str(CHART), "--set", "vault.addr=http://vault:8200,vault.setup.enabled=true"
    )
    assert done.returncode == 1 and "vault.setup.tokenSecret.name" in done.stderr, done.stderr


@pytest.mark.parametrize("values", [(), (EVERYTHING,)], ids=["defaults", "everything"])
def test_every_object_carries_the_standard_labels(values: tuple[Path, ...]) -> None:
    objects = render(values_files=values, values={"models": [{"name": "m", "modelUri": "models:/m/1"}]})
    for document in objects:
        labels = document["metadata"].get("labels") or {}
        missing = [label for label in LABELS if f"app.kubernetes.io/{label}" not in labels]
        assert not missing, f"{document['kind']} {document['metadata']['name']} lacks {missing}"
        assert labels["app.kubernetes.io/part-of"] == "promoter"


def _pods(objects: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for document in objects:
        if document["kind"] in ("Deployment", "Rollout", "Job"):
            yield f"{document['kind']} {document['metadata']['name']}", document["spec"]["template"]["spec"]


def test_each_component_logs_in_to_vault_as_itself_with_the_account_vault_binds() -> None:
    """The chart's ServiceAccounts are exactly roles.yaml's; each pod's VAULT_ROLE and
    VAULT_SECRET_PATH are its own component's, and it runs under that component's account."""
    objects = render(values_files=(EVERYTHING,))
    components = ROLES["components"]
    accounts = {
        d["metadata"]["name"]
        for d in objects
        if d["kind"] == "ServiceAccount" and "helm.sh/hook" not in (d["metadata"].get("annotations") or {})
    }
    assert accounts == {c["serviceAccount"] for c in components.values()}
    seen = set()
    for where, pod in _pods(objects):
        env = {e["name"]: e.get("value") for c in pod["containers"] for e in c.get("env", [])}
        if "VAULT_ROLE" not in env:
            assert "VAULT_TOKEN" in env, f"{where} has no Vault identity"  # the admin hook, by token
            continue
        component = env["VAULT_ROLE"].removeprefix("promoter-")
        assert pod["serviceAccountName"] == components[component]["serviceAccount"], where
        assert env["VAULT_SECRET_PATH"] == components[component]["secretPath"], where
        assert env["VAULT_KV_MOUNT"] == "kv" and env["VAULT_ADDR"] == "http://vault.vault.svc:8200"
        [volume] = [v for v in pod["volumes"] if v["name"] == "vault-token"]
        token = volume["projected"]["sources"][0]["serviceAccountToken"]
        assert token["audience"] == "openbao" and env["VAULT_CREDENTIAL_FILE"].endswith(token["path"])
        seen.add(component)
    assert seen == {"operator", "server", "tracking"}  # trainer and load tester: pods the operator starts


def test_no_secret_value_is_a_value() -> None:
    """The admin token of the hook comes from a Secret by reference; nothing renders a literal one."""
    objects = render(values_files=(EVERYTHING,))
    job = find(objects, "Job", "promoter-vault-setup")
    [container] = job["spec"]["template"]["spec"]["containers"]
    [token] = [e for e in container["env"] if e["name"] == "VAULT_TOKEN"]
    assert token == {
        "name": "VAULT_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "vault-admin", "key": "root-token"}},
    }
    assert not [d for d in objects if d["kind"] == "Secret"]  # OpenBao in the cluster: no reviewer token


# Vault in namespace promoter with the setup hook, one model, and an audience other than the default:
# what each component's pod must say about who it is.
WIRED: dict[str, Any] = {
    "vault": {
        "addr": "https://openbao.example.com:8200",
        "audience": "bao-audience",
        "setup": {"enabled": True, "tokenSecret": {"name": "vault-admin"}},
    },
    "models": [{"name": "digits", "modelUri": "models:/digits@champion"}],
}
TRACKING_URI = "http://promoter-tracking.promoter.svc:5000"
VAULT_LOGIN = {"VAULT_ADDR", "VAULT_AUTH_METHOD", "VAULT_ROLE", "VAULT_SECRET_PATH", "VAULT_KV_MOUNT"}
VAULT_LOGIN |= {"VAULT_CREDENTIAL_FILE"}


def _container(objects: list[dict[str, Any]], kind: str, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    pod = find(objects, kind, name)["spec"]["template"]["spec"]
    [container] = pod["containers"]
    return pod, container


@pytest.mark.parametrize(
    ("kind", "name", "component", "own_env"),
    [
        ("Deployment", "promoter-operator", "operator",
         {"MLFLOW_TRACKING_URI": TRACKING_URI, "PROMOTER_OPERATOR_IMAGE": "ghcr.io/promoter/promoter:0.1.0",
          "PROMOTER_OPERATOR_RECONCILE_SECONDS": "5", "PROMOTER_OPERATOR_CHAMPION_ALIAS": "champion"}),
        ("Rollout", "digits-serving", "server",
         {"MLFLOW_TRACKING_URI": TRACKING_URI, "PROMOTER_MODEL_URI": "models:/digits@champion"}),
        ("Deployment", "promoter-tracking", "tracking",
         {"PROMOTER_TRACKING_RUN_DIR": "/run/mlflow", "HOME": "/tmp"}),
    ],
    ids=["operator", "serving", "tracking"],
)  # fmt: skip
def test_each_pod_names_exactly_its_own_vault_role_path_and_mlflow(
    kind: str, name: str, component: str, own_env: dict[str, str]
) -> None:
    """Each pod logs in to Vault as its own component (role, path, the account the role binds) with a
    projected token for the audience of values, and reaches MLflow at the tracking Service; no
    other variable, so nothing of another component's rides along."""
    pod, container = _container(render(WIRED), kind, name)
    env = {e["name"]: e["value"] for e in container["env"]}
    expected = ROLES["components"][component]
    assert env == {
        **own_env,
        "VAULT_ADDR": "https://openbao.example.com:8200",
        "VAULT_AUTH_METHOD": "kubernetes",
        "VAULT_ROLE": f"promoter-{component}",
        "VAULT_SECRET_PATH": expected["secretPath"],
        "VAULT_KV_MOUNT": "secret",
        "VAULT_CREDENTIAL_FILE": "/var/run/secrets/vault/token",
    }
    assert pod["serviceAccountName"] == expected["serviceAccount"]
    [volume] = [v for v in pod["volumes"] if v["name"] == "vault-token"]
    assert volume["projected"]["sources"] == [
        {"serviceAccountToken": {"audience": "bao-audience", "path": "token", "expirationSeconds": 3600}}
    ]
    assert {"name": "vault-token", "mountPath": "/var/run/secrets/vault", "readOnly": True} in container[
        "volumeMounts"
    ]
    if component == "tracking":  # the basic-auth ini (admin password) lives in memory only
        assert {"name": "run", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}} in pod["volumes"]
        assert {"name": "run", "mountPath": "/run/mlflow"} in container["volumeMounts"]


def test_by_default_the_chart_s_pods_log_in_like_the_pods_the_operator_starts() -> None:
    """Vault's roles accept one audience and the policies read one mount, both from
    manifests/vault/roles.yaml (what vault-setup applies and the operator gives its own pods): the
    chart's defaults must be the same, or its pods could not log in or read."""
    from promoter.vault_setup import TRAINER, load_layout

    trainer = load_layout(REPO / "manifests" / "vault").pod(TRAINER, "https://openbao.example.com:8200")
    default_audience = {key: value for key, value in WIRED["vault"].items() if key != "audience"}
    objects = render({**WIRED, "vault": default_audience})
    pod, container = _container(objects, "Deployment", "promoter-operator")
    env = {e["name"]: e["value"] for e in container["env"]}
    assert [v for v in pod["volumes"] if v["name"] == "vault-token"] == list(trainer.volumes)
    for name in ("VAULT_ADDR", "VAULT_AUTH_METHOD", "VAULT_KV_MOUNT", "VAULT_CREDENTIAL_FILE"):
        assert env[name] == trainer.env[name], name
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())["vault"]
    assert (defaults["audience"], defaults["kvMount"]) == (ROLES["audience"], ROLES["kvMount"])


def test_without_vault_no_pod_carries_a_vault_variable_or_token() -> None:
    objects = render({"models": WIRED["models"]})
    for where, pod in _pods(objects):
        names = {e["name"] for c in pod["containers"] for e in c.get("env", [])}
        assert not {n for n in names if n.startswith("VAULT_")}, where
        assert "vault-token" not in {v["name"] for v in pod.get("volumes", [])}, where


def test_the_operator_hands_its_steps_their_own_role_and_the_tracking_uri(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What the chart gives the operator becomes, through the operator's own settings, the Workflow
    steps' environment: the trainer's role, path and account, the tracking Service; and the load
    tester's. The operator's own role is on none of them."""
    from promoter.operator.settings import OperatorSettings
    from promoter.pipelines.workflow import build_workflow
    from promoter.promotion.spec import load_promotion

    from .conftest import EXAMPLES

    _, container = _container(render(WIRED), "Deployment", "promoter-operator")
    for variable in container["env"]:
        monkeypatch.setenv(variable["name"], variable["value"])
    settings = OperatorSettings.load()
    workflow = build_workflow(
        load_promotion(EXAMPLES / "digits" / "promotion.yaml"), settings.workflows
    ).to_dict()
    assert workflow["spec"]["serviceAccountName"] == ROLES["components"]["trainer"]["serviceAccount"]
    steps = [t for t in workflow["spec"]["templates"] if "script" in t]
    assert steps
    for step in steps:
        env = {e["name"]: e["value"] for e in step["script"]["env"]}
        assert env["MLFLOW_TRACKING_URI"] == TRACKING_URI, step["name"]
        assert (env["VAULT_ROLE"], env["VAULT_SECRET_PATH"]) == ("promoter-trainer", "promoter/trainer")
        assert env["VAULT_ADDR"] == "https://openbao.example.com:8200"
    load_test = settings.load_test_pod
    assert (load_test.env["VAULT_ROLE"], load_test.service_account) == (
        "promoter-loadtester",
        "promoter-loadtest",
    )
    assert "MLFLOW_TRACKING_URI" not in load_test.env  # the load tester needs nothing from MLflow


def test_the_tracking_server_accepts_its_service_names_as_host() -> None:
    """MLflow answers 403 to a Host header it does not list (tests/test_tracking_server.py): the
    URI the other components use must be among them, with its port."""
    objects = render({**WIRED, "tracking": {"allowedHosts": ["mlflow.example.com"]}})
    _, container = _container(objects, "Deployment", "promoter-tracking")
    [hosts] = [
        a.removeprefix("--allowed-hosts=") for a in container["args"] if a.startswith("--allowed-hosts=")
    ]
    allowed = hosts.split(",")
    assert TRACKING_URI.removeprefix("http://") in allowed
    assert {"promoter-tracking", "promoter-tracking:5000", "localhost:*", "mlflow.example.com"} <= set(
        allowed
    )
    bad = {"tracking": {"allowedHosts": ["a.example.com,b"]}}  # one flag: a comma would split it
    done = helm("template", "check", str(CHART), "--values", "-", values=bad)
    assert done.returncode == 1 and "at '/tracking/allowedHosts/0'" in done.stderr, done.stderr


def test_the_setup_hook_makes_mlflow_users_and_hands_openbao_the_reviewer_token() -> None:
    """OpenBao outside the cluster (the default): the chart's reviewer account, bound to
    system:auth-delegator, and its token Secret, which the hook mounts and names on its command line
    by file; inside the cluster: OpenBao's own account is bound, no token is made or mounted."""
    objects = render(WIRED)
    pod, container = _container(objects, "Job", "promoter-vault-setup")
    assert container["args"] == [
        "vault-setup",
        "--kubernetes-host=https://kubernetes.default.svc",
        "--kubernetes-ca-file=/var/run/secrets/kubernetes.io/serviceaccount/ca.crt",
        "--kubernetes-reviewer-jwt-file=/var/run/secrets/vault-reviewer/token",
        "--mlflow-users",
    ]
    assert {e["name"] for e in container["env"]} == {"VAULT_ADDR", "VAULT_TOKEN"}
    [volume] = [v for v in pod["volumes"] if v["name"] == "reviewer-token"]
    assert volume["secret"] == {
        "secretName": "promoter-vault-reviewer-token",
        "items": [{"key": "token", "path": "token"}],
    }
    secret = find(objects, "Secret", "promoter-vault-reviewer-token")
    assert secret["type"] == "kubernetes.io/service-account-token" and "data" not in secret
    assert (
        secret["metadata"]["annotations"]["kubernetes.io/service-account.name"] == "promoter-vault-reviewer"
    )
    assert find(objects, "ServiceAccount", "promoter-vault-reviewer")["automountServiceAccountToken"] is False
    binding = find(objects, "ClusterRoleBinding", "promoter-vault-reviewer-auth-delegator")
    assert binding["roleRef"]["name"] == "system:auth-delegator"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "promoter-vault-reviewer", "namespace": "promoter"}
    ]

    inside = render(values_files=(EVERYTHING,))
    pod, container = _container(inside, "Job", "promoter-vault-setup")
    assert not [a for a in container["args"] if "reviewer" in a] and "--mlflow-users" in container["args"]
    assert "reviewer-token" not in {v["name"] for v in pod["volumes"]}
    binding = find(inside, "ClusterRoleBinding", "promoter-vault-reviewer-auth-delegator")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "openbao", "namespace": "openbao"}]
    assert "promoter-vault-reviewer" not in {
        d["metadata"]["name"] for d in inside if d["kind"] == "ServiceAccount"
    }

    untracked = render({**WIRED, "tracking": {"enabled": False}})
    assert "--mlflow-users" not in _container(untracked, "Job", "promoter-vault-setup")[1]["args"]
    off = render({**WIRED, "vault": {**WIRED["vault"], "reviewer": {"enabled": False}}})
    assert not [d for d in off if "vault-reviewer" in d["metadata"]["name"]]
    done = helm("template", "check", str(CHART), "--namespace", "promoter", "--set",
                "vault.addr=http://v:8200,vault.reviewer.serviceAccount.name=openbao")  # fmt: skip
    assert done.returncode == 1 and "vault.reviewer.serviceAccount.namespace" in done.stderr, done.stderr


# What a secret looks like where it should never be: a credential-named variable with a literal
# value, a URI with a password, a private key or certificate, a long opaque string.
SECRET_NAME = re.compile(r"(PASSWORD|PASSWD|TOKEN|SECRET|API_KEY|PRIVATE_KEY|CREDENTIALS?)$", re.IGNORECASE)
SECRET_TEXT = [
    re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@", re.IGNORECASE),  # scheme://user:password@
    re.compile(r"-----BEGIN [A-Z ]+-----"),
    re.compile(
        r"(?<![A-Za-z0-9+/=_:-])(?=[A-Za-z0-9+/_=-]*\d)(?=[A-Za-z0-9+/_=-]*[A-Z])[A-Za-z0-9+/_=-]{32,}"
    ),
]


def _secret_looking(document: Any, where: str = "") -> list[str]:
    """Every place in a rendered object that holds what looks like a secret."""
    found = []
    if isinstance(document, dict):
        if (
            isinstance(document.get("name"), str)
            and "value" in document
            and SECRET_NAME.search(document["name"])
        ):
            found.append(f"{where}: {document['name']} has a literal value")
        if document.get("kind") == "Secret" and (
            document.get("type") != "kubernetes.io/service-account-token"
            or document.get("data")
            or document.get("stringData")
        ):
            found.append(f"{where}: a Secret with content")
        for key, value in document.items():
            found += _secret_looking(value, f"{where}.{key}")
    elif isinstance(document, list):
        for index, value in enumerate(document):
            found += _secret_looking(value, f"{where}[{index}]")
    elif isinstance(document, str):
        found += [f"{where}: {pattern.pattern}" for pattern in SECRET_TEXT if pattern.search(document)]
    return found


@pytest.mark.parametrize(
    "values",
    [{}, WIRED, {"values_files": (EVERYTHING,)}],
    ids=["defaults", "vault-outside", "everything"],
)
def test_no_rendered_object_holds_anything_that_looks_like_a_secret(values: dict[str, Any]) -> None:
    rest = {key: value for key, value in values.items() if key != "values_files"}
    objects = render(rest, values_files=values.get("values_files", ()))
    found = [f for d in objects for f in _secret_looking(d, f"{d['kind']} {d['metadata']['name']}")]
    assert not found, "\n".join(found)


def test_the_secret_check_finds_what_it_is_for() -> None:
    """Its positive control: each kind of leak, put where a user could put it, is found."""
    leaks = [
        {"name": "MLFLOW_TRACKING_PASSWORD", "value": "correct horse"},
        {"name": "PROMOTER_TRACKING_AUTH_DATABASE_URI", "value": "postgresql://mlflow:s3cret@db:5432/auth"},
        {"name": "SOME_FLAG", "value": "hvs.CAESIJ3kVvM1xQk9Zx7YpQ2wR4tU6iO8pAsD"},
    ]
    objects = render({"operator": {"extraEnv": leaks}})
    found = [f for d in objects for f in _secret_looking(d, d["kind"])]
    assert len(found) == 3, found
    assert not _secret_looking({"name": "X", "value": "sha256:" + "0123456789abcdef" * 4})


def test_the_prometheus_rule_carries_the_rule_file_s_groups_as_they_are() -> None:
    """The one source of the rules (charts/promoter/rules/promoter.rules.yaml), which promtool checks
    as it is (tests/test_alert_rules.py), is what the PrometheusRule carries: no rule lost or changed."""
    groups = yaml.safe_load((CHART / "rules" / "promoter.rules.yaml").read_text())["groups"]
    assert groups
    rule = find(render({"prometheusRule": {"enabled": True}}), "PrometheusRule", "promoter")
    assert rule["spec"]["groups"] == groups


def test_serving_is_blue_green_with_probes_and_no_root() -> None:
    objects = render(values_files=(EVERYTHING,))
    rollout = find(objects, "Rollout", "digits-serving")
    blue_green = rollout["spec"]["strategy"]["blueGreen"]
    assert blue_green == {
        "activeService": "digits-active",
        "previewService": "digits-preview",
        "autoPromotionEnabled": False,
        "scaleDownDelaySeconds": 600,
    }
    pod = rollout["spec"]["template"]["spec"]
    [server] = pod["containers"]
    assert server["name"] == "server" and rollout["spec"]["replicas"] == 4
    assert server["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert server["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert server["resources"]["limits"] == {"memory": "8Gi", "nvidia.com/gpu": 2}
    assert (
        server["securityContext"]["readOnlyRootFilesystem"] is True and pod["securityContext"]["runAsNonRoot"]
    )
    assert server["image"].endswith("@sha256:" + "0123456789abcdef" * 4)  # the digest wins over the tag
    fraud = find(objects, "Rollout", "fraud-serving")["spec"]["template"]["spec"]["containers"][0]
    assert fraud["resources"]["limits"] == {"memory": "4Gi", "nvidia.com/gpu": 1}  # serving's defaults
    for side in ("active", "preview"):
        assert find(objects, "Service", f"digits-{side}")["spec"]["ports"][0]["port"] == 8081


def test_the_tracking_server_by_backend() -> None:
    sqlite = find(render(), "Deployment", "promoter-tracking")["spec"]["template"]["spec"]
    [container] = sqlite["containers"]
    assert container["args"][:-1] == [
        "tracking-server",
        "--host=0.0.0.0",
        "--port=5000",
        "--backend-store-uri=sqlite:////var/lib/mlflow/mlflow.db",
        "--artifacts-destination=/var/lib/mlflow/artifacts",
    ]
    assert container["args"][-1].startswith("--allowed-hosts=")  # see the test of the Host names
    assert {"name": "run", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}} in sqlite["volumes"]
    postgres_objects = render(values_files=(EVERYTHING,))
    postgres = find(postgres_objects, "Deployment", "promoter-tracking")["spec"]["template"]["spec"]
    # the URI and its password come from Vault: not on the command line
    assert postgres["containers"][0]["args"][3:-1] == ["--artifacts-destination=s3://ml-artifacts/mlflow"]
    assert not [d for d in postgres_objects if d["kind"] == "PersistentVolumeClaim"]  # existingClaim
    operator = find(postgres_objects, "Deployment", "promoter-operator")["spec"]["template"]["spec"]
    env = {e["name"]: e["value"] for e in operator["containers"][0]["env"]}
    assert env["MLFLOW_TRACKING_URI"] == "http://promoter-tracking.promoter.svc:5001"
    untracked = render({"tracking": {"enabled": False, "externalUri": "https://mlflow.example.com"}})
    operator = find(untracked, "Deployment", "promoter-operator")["spec"]["template"]["spec"]
    env = {e["name"]: e["value"] for e in operator["containers"][0]["env"]}
    assert env["MLFLOW_TRACKING_URI"] == "https://mlflow.example.com"
    assert "promoter-tracking" not in {d["metadata"]["name"] for d in untracked}


def test_gitops_settings_and_the_argo_cd_role_come_only_with_an_application() -> None:
    """Off by default: the operator acts on whatever is applied, and reads nothing of Argo CD's. With
    gitops.application: its settings, and a read-only Role on Applications in Argo CD's namespace
    (named with the release's namespace: every environment puts one there)."""
    for values, expected in (({}, set()), ({"gitops": {"application": "staging"}}, {"argocd"})):
        objects = render(values, namespace="ml")
        _, operator = _container(objects, "Deployment", "promoter-operator")
        env = {e["name"] for e in operator["env"]}
        assert bool(
            {"PROMOTER_OPERATOR_GITOPS_APPLICATION", "PROMOTER_OPERATOR_GITOPS_NAMESPACE"} & env
        ) is bool(expected)
        assert not {n for n in env if n.startswith("PROMOTER_OPERATOR_RECORD_")}  # no record repository
        roles = {d["metadata"]["namespace"] for d in objects if d["kind"] == "Role"} - {"ml"}
        assert roles == expected
    find(objects, "Role", "promoter-ml-operator-gitops")


def test_the_webhook_admits_only_what_the_operator_watches() -> None:
    objects = render(values_files=(EVERYTHING,))
    for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        [webhook] = find(objects, kind, "promoter-promoter")["webhooks"]
        [expression] = webhook["namespaceSelector"]["matchExpressions"]
        assert expression["values"] == ["promoter", "team-a"]
        assert webhook["failurePolicy"] == "Ignore"
        annotations = find(objects, kind, "promoter-promoter")["metadata"]["annotations"]
        assert annotations == {"cert-manager.io/inject-ca-from": "promoter/promoter-webhook"}
    certificate = find(objects, "Certificate", "promoter-webhook")
    assert certificate["spec"]["issuerRef"] == {"kind": "ClusterIssuer", "name": "internal-ca"}
    assert "promoter-operator-webhook.promoter.svc" in certificate["spec"]["dnsNames"]
    for namespace in ("promoter", "team-a"):
        role = [d for d in objects if d["kind"] == "Role" and d["metadata"]["namespace"] == namespace]
        assert {r["metadata"]["name"] for r in role} == {"promoter-operator", "promoter-pipeline-executor"}
        # the pods the operator starts in a promotion's namespace run under these accounts there
        accounts = {
            d["metadata"]["name"]
            for d in objects
            if d["kind"] == "ServiceAccount" and d["metadata"]["namespace"] == namespace
        }
        assert {"promoter-pipeline", "promoter-loadtest"} <= accounts


def test_dashboards_and_rules_come_from_their_files_and_nothing_renders_without_them(tmp_path: Path) -> None:
    bare = _chart_copy(tmp_path / "bare", {}, None)
    objects = render({"prometheusRule": {"enabled": True}}, chart=bare)
    assert not [d for d in objects if d["kind"] in ("ConfigMap", "PrometheusRule")]

    full = _chart_copy(tmp_path / "full", {"promotions.json": DASHBOARD, "serving_health.json": "{}"}, RULES)
    objects = render({"prometheusRule": {"enabled": True, "labels": {"release": "kps"}}}, chart=full)
    maps = {d["metadata"]["name"]: d for d in objects if d["kind"] == "ConfigMap"}
    assert set(maps) == {"promoter-dashboard-promotions", "promoter-dashboard-serving-health"}
    assert maps["promoter-dashboard-promotions"]["data"] == {"promotions.json": DASHBOARD}
    assert all(m["metadata"]["labels"]["grafana_dashboard"] == "1" for m in maps.values())
    rule = find(objects, "PrometheusRule", "promoter")
    assert rule["spec"]["groups"] == yaml.safe_load(RULES)["groups"]
    assert rule["metadata"]["labels"]["release"] == "kps"
    assert not [d for d in render(chart=full) if d["kind"] == "PrometheusRule"]  # off by default


# --- against the real API server


def _stand_in_crd(group: str, kind: str, plural: str) -> dict[str, Any]:
    schema = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"kind": kind, "plural": plural, "singular": kind.lower()},
            "versions": [
                {"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": schema}}
            ],
        },
    }


def _wait(what: str, check: Callable[[], bool], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out after {seconds:.0f} s waiting for {what}")


def _ensure(kube: Any, documents: list[dict[str, Any]]) -> None:
    """Create what is missing (CRDs, namespaces), then wait until the API server serves the CRDs."""
    from kubernetes import client

    for document in documents:
        create_unless_present(kube, document)
    extensions: Any = client.ApiextensionsV1Api(kube)

    def established(name: str) -> Callable[[], bool]:
        def check() -> bool:
            crd = extensions.read_custom_resource_definition(name)
            return any(c.type == "Established" and c.status == "True" for c in crd.status.conditions or [])

        return check

    for document in documents:
        if document["kind"] == "CustomResourceDefinition":
            name = document["metadata"]["name"]
            _wait(f"CRD {name}", established(name))


@pytest.fixture(scope="module")
def bed(kube: Any) -> Any:
    """The chart's CRDs, stand-ins for the monitoring and cert-manager kinds, and the namespaces."""
    namespaces = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}}
        for n in ("promoter", "team-a", "gitops")  # gitops: everything.yaml's Argo CD namespace
    ]
    _ensure(kube, [*crds(), *(_stand_in_crd(*kind) for kind in sorted(STAND_IN_KINDS)), *namespaces])
    return kube


def _dry_run_apply(api: Any, document: dict[str, Any]) -> None:
    """Server-side apply, dry run, strict field validation: what the API server would store, or why
    not (an unknown field is an error here, not a silently dropped key)."""
    resource = api.resources.get(api_version=document["apiVersion"], kind=document["kind"])
    api.server_side_apply(
        resource,
        body=document,
        field_manager="chart-test",
        force_conflicts=True,
        dry_run="All",
        query_params=[("fieldValidation", "Strict")],
    )


@pytest.mark.parametrize(
    ("values", "extra"),
    [((), {"models": WIRED["models"]}), ((), WIRED), ((EVERYTHING,), {})],
    ids=["defaults", "vault-outside", "everything"],
)
def test_the_api_server_accepts_every_object_rendered(
    bed: Any, tmp_path: Path, values: tuple[Path, ...], extra: dict[str, Any]
) -> None:
    from kubernetes import dynamic
    from kubernetes.client.exceptions import ApiException

    api = dynamic.DynamicClient(bed)  # type: ignore[no-untyped-call]
    chart = _chart_copy(tmp_path, {"promotions.json": DASHBOARD}, RULES)
    objects = render(extra, values_files=values, chart=chart)
    kinds = {d["kind"] for d in objects}
    if values:
        assert {"Job", "ServiceMonitor", "PrometheusRule", "Certificate", "ConfigMap"} <= kinds
    assert {"Deployment", "Rollout", "KopfPeering", "ValidatingWebhookConfiguration"} <= kinds
    if extra.get("vault") or values:  # the reviewer's binding (and, outside, its account and token)
        find(objects, "ClusterRoleBinding", "promoter-vault-reviewer-auth-delegator")
    if extra.get("vault"):
        assert find(objects, "Secret", "promoter-vault-reviewer-token")["type"].endswith("-token")
    refused = []
    for document in objects:
        try:
            _dry_run_apply(api, document)
        except ApiException as exc:
            refused.append(f"{document['kind']} {document['metadata']['name']}: {exc.status} {exc.body}")
    assert not refused, "\n".join(refused)


def _bearer(kube: Any, token: str) -> Any:
    """An ApiClient that authenticates with `token` alone, as OpenBao would."""
    from kubernetes import client

    configuration = client.Configuration()
    configuration.host = kube.configuration.host
    configuration.ssl_ca_cert = kube.configuration.ssl_ca_cert
    configuration.api_key = {"authorization": token}
    configuration.api_key_prefix = {"authorization": "Bearer"}
    return client.ApiClient(configuration)


def test_the_reviewer_token_the_chart_makes_may_review_logins(bed: Any) -> None:
    """For real, not a dry run: the chart's reviewer account, binding and token Secret (OpenBao
    outside the cluster). The API server's token controller fills the Secret, and with that token,
    the call OpenBao makes for every login (TokenReview of a pod's projected token, audience vault)
    is allowed and names the pod's account; the same call with a token lacking the binding is
    refused. OpenBao itself is tested with such a reviewer in tests/test_vault_kubernetes_auth.py."""
    from kubernetes import client, dynamic
    from kubernetes.client.exceptions import ApiException

    objects = [
        d
        for d in render(WIRED, release="rev")  # the binding: rev-promoter-promoter-..., with the namespace
        if d["metadata"]["name"].startswith(
            ("rev-promoter-vault-reviewer", "rev-promoter-promoter-vault-reviewer")
        )
    ]
    order = ["ServiceAccount", "Secret", "ClusterRoleBinding"]  # a token Secret needs its account first
    objects.sort(key=lambda d: order.index(d["kind"]))
    assert [d["kind"] for d in objects] == order
    api = dynamic.DynamicClient(bed)  # type: ignore[no-untyped-call]
    core: Any = client.CoreV1Api(bed)
    for document in objects:
        resource = api.resources.get(api_version=document["apiVersion"], kind=document["kind"])
        resource.server_side_apply(body=document, field_manager="chart-test", force_conflicts=True)
    try:
        secret_name = "rev-promoter-vault-reviewer-token"
        _wait("the token controller", lambda: bool(core.read_namespaced_secret(secret_name, "promoter").data))
        reviewer = base64.b64decode(
            core.read_namespaced_secret(secret_name, "promoter").data["token"]
        ).decode()
        ensure_service_account(core, "promoter", "rev-login")
        login = mint(core, "promoter", "rev-login", ["vault"])
        review = client.V1TokenReview(spec=client.V1TokenReviewSpec(token=login, audiences=["vault"]))
        answer: Any = client.AuthenticationV1Api(_bearer(bed, reviewer)).create_token_review(review)
        assert answer.status.authenticated, answer.status.error
        assert answer.status.user.username == "system:serviceaccount:promoter:rev-login"
        unbound = mint(core, "promoter", "rev-login", None)  # an account without system:auth-delegator
        with pytest.raises(ApiException) as refused:
            client.AuthenticationV1Api(_bearer(bed, unbound)).create_token_review(review)
        assert refused.value.status == 403
    finally:
        for document in reversed(objects):  # the Secret before its account, whose deletion takes it along
            resource = api.resources.get(api_version=document["apiVersion"], kind=document["kind"])
            resource.delete(
                name=document["metadata"]["name"], namespace=document["metadata"].get("namespace")
            )
        core.delete_namespaced_service_account("rev-login", "promoter")


# --- install, upgrade, uninstall


def _webhook_secret(kube: Any, tmp_path: Path) -> bytes:
    """What a user without cert-manager does: `promoter webhook-cert`, then a Secret of its files."""
    from kubernetes import client

    host = f"{RELEASE}-promoter-operator-webhook.{NAMESPACE}.svc"
    done = run_cli("webhook-cert", "--host", host, "--out", str(tmp_path / "tls"))
    assert done.returncode == 0, done.stderr
    files = {name: (tmp_path / "tls" / name).read_bytes() for name in ("ca.crt", "tls.crt", "tls.key")}
    secret = {
        "metadata": {"name": "promoter-webhook-tls"},
        "data": {name: base64.b64encode(content).decode() for name, content in files.items()},
    }
    core: Any = client.CoreV1Api(kube)
    core.create_namespaced_secret(NAMESPACE, secret)
    return files["ca.crt"]


def _tracking_volume(kube: Any) -> None:
    """A PersistentVolume for the tracking server's claim: the test bed has no provisioner, so one
    is made by hand, as an administrator of such a cluster would (the controller-manager binds it)."""
    from kubernetes import client

    volume = {
        "metadata": {"name": "chart-e2e-tracking"},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": "chart-e2e",
            "hostPath": {"path": "/tmp/chart-e2e-tracking"},
        },
    }
    core: Any = client.CoreV1Api(kube)
    core.create_persistent_volume(volume)


def _helm_cluster(control_plane: Any, *args: str, values: dict[str, Any] | None = None) -> None:
    kubeconfig = ["--kubeconfig", str(control_plane.kubeconfig), "--namespace", NAMESPACE]
    done = helm(*args, *kubeconfig, *(["--values", "-"] if values is not None else []), values=values)
    assert done.returncode == 0, done.stdout + done.stderr


def _available(kube: Any, name: str, replicas: int) -> Callable[[], bool]:
    from kubernetes import client

    apps: Any = client.AppsV1Api(kube)

    def check() -> bool:
        status = apps.read_namespaced_deployment(name, NAMESPACE).status
        return bool(status.available_replicas == replicas and status.updated_replicas == replicas)

    return check


def _rollout(kube: Any, name: str) -> dict[str, Any]:
    from kubernetes import client

    objects: Any = client.CustomObjectsApi(kube)
    found: dict[str, Any] = objects.get_namespaced_custom_object(
        "argoproj.io", "v1alpha1", NAMESPACE, "rollouts", name
    )
    return found


def _healthy(kube: Any, name: str, replicas: int) -> Callable[[], bool]:
    def check() -> bool:
        rollout = _rollout(kube, name)
        status = rollout.get("status") or {}
        return bool(
            status.get("phase") == "Healthy"
            and str(status.get("observedGeneration")) == str(rollout["metadata"]["generation"])
            and status.get("availableReplicas") == replicas
        )

    return check


def _model_uri(rollout: dict[str, Any]) -> str:
    [server] = rollout["spec"]["template"]["spec"]["containers"]
    return str(next(e["value"] for e in server["env"] if e["name"] == "PROMOTER_MODEL_URI"))


VALUES: dict[str, Any] = {
    "image": {"repository": "promoter", "tag": "test"},
    "operator": {"replicas": 2},
    "serving": {"replicas": 2, "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}},
    "models": [{"name": "digits", "modelUri": "models:/digits@champion"}],
    # keepOnUninstall off: `helm uninstall` must then leave nothing but the CRDs
    "tracking": {"persistence": {"size": "1Gi", "storageClass": "chart-e2e", "keepOnUninstall": False}},
}

# Every namespaced kind the chart makes, and what controllers make from them, found by its label.
NAMESPACED = [
    ("v1", "ServiceAccount"),
    ("v1", "Service"),
    ("v1", "ConfigMap"),
    ("v1", "PersistentVolumeClaim"),
    ("v1", "Pod"),
    ("apps/v1", "Deployment"),
    ("apps/v1", "ReplicaSet"),
    ("argoproj.io/v1alpha1", "Rollout"),
    ("rbac.authorization.k8s.io/v1", "Role"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("kopf.dev/v1", "KopfPeering"),
    ("batch/v1", "Job"),
]
CLUSTER_WIDE = [
    ("rbac.authorization.k8s.io/v1", "ClusterRole"),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
    ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration"),
    ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration"),
]


def _left(kube: Any) -> list[str]:
    from kubernetes import dynamic

    api = dynamic.DynamicClient(kube)  # type: ignore[no-untyped-call]
    selector = f"app.kubernetes.io/instance={RELEASE}"
    found = []
    for kinds, namespace in ((NAMESPACED, NAMESPACE), (CLUSTER_WIDE, None)):
        for api_version, kind in kinds:
            resource = api.resources.get(api_version=api_version, kind=kind)
            listed = resource.get(namespace=namespace, label_selector=selector)
            # a Pod being deleted is on its way out: the rest is the kubelet's (kwok's, here) grace period
            found += [f"{kind} {i.metadata.name}" for i in listed.items if not i.metadata.deletionTimestamp]
    releases = api.resources.get(api_version="v1", kind="Secret").get(
        namespace=NAMESPACE, label_selector="owner=helm"
    )
    return found + [f"Secret {item.metadata.name}" for item in releases.items]


def test_install_upgrade_and_uninstall(bed: Any, control_plane: Any, tmp_path: Path) -> None:
    from kubernetes import client

    kube = bed
    core: Any = client.CoreV1Api(kube)
    core.create_namespace({"metadata": {"name": NAMESPACE}})
    ca = _webhook_secret(kube, tmp_path)
    _tracking_volume(kube)
    started = time.monotonic()
    _helm_cluster(control_plane, "install", RELEASE, str(CHART), values=VALUES)

    _wait("the operator", _available(kube, f"{RELEASE}-promoter-operator", 2))
    _wait("the tracking server", _available(kube, f"{RELEASE}-promoter-tracking", 1))
    _wait("the digits Rollout", _healthy(kube, "digits-serving", 2))
    installed = time.monotonic() - started
    for side in ("active", "preview"):
        assert core.read_namespaced_service(f"digits-{side}", NAMESPACE).spec.ports[0].port == 8080
    registration: Any = client.AdmissionregistrationV1Api(kube)
    webhook = registration.read_validating_webhook_configuration(f"{RELEASE}-promoter-{NAMESPACE}")
    assert base64.b64decode(webhook.webhooks[0].client_config.ca_bundle) == ca  # the Secret's ca.crt
    assert (
        core.read_namespaced_persistent_volume_claim(
            f"{RELEASE}-promoter-tracking-data", NAMESPACE
        ).status.phase
        == "Bound"
    )

    # the operator promotes digits/7: it writes the model URI into the live pod template
    rollout = _rollout(kube, "digits-serving")
    template = rollout["spec"]["template"]
    [server] = template["spec"]["containers"]
    for variable in server["env"]:
        if variable["name"] == "PROMOTER_MODEL_URI":
            variable["value"] = "models:/digits/7"
    client.CustomObjectsApi(kube).patch_namespaced_custom_object(
        "argoproj.io", "v1alpha1", NAMESPACE, "rollouts", "digits-serving", {"spec": {"template": template}}
    )
    promoted_generation = _rollout(kube, "digits-serving")["metadata"]["generation"]

    started = time.monotonic()
    upgraded = {
        **VALUES,
        "operator": {"replicas": 1},
        "serving": {**VALUES["serving"], "replicas": 3},
        "models": [*VALUES["models"], {"name": "fraud", "modelUri": "models:/fraud/1"}],
    }
    _helm_cluster(control_plane, "upgrade", RELEASE, str(CHART), values=upgraded)
    _wait("one operator", _available(kube, f"{RELEASE}-promoter-operator", 1))
    _wait("the fraud Rollout", _healthy(kube, "fraud-serving", 3))
    digits = _rollout(kube, "digits-serving")
    assert _model_uri(digits) == "models:/digits/7"  # not values' models:/digits@champion
    assert digits["spec"]["replicas"] == 3
    # replicas changed, the template did not: no new blue/green revision was started by the upgrade
    assert digits["metadata"]["generation"] == promoted_generation + 1
    # the Services still select what the Rollouts controller made them select (the preview: digits/7)
    blue_green = digits["status"]["blueGreen"]
    for side, selector in (("active", "activeSelector"), ("preview", "previewSelector")):
        service = core.read_namespaced_service(f"digits-{side}", NAMESPACE)
        assert service.spec.selector["rollouts-pod-template-hash"] == blue_green[selector]
    assert blue_green["activeSelector"] != blue_green["previewSelector"]
    assert _model_uri(_rollout(kube, "fraud-serving")) == "models:/fraud/1"
    core.read_namespaced_service("fraud-preview", NAMESPACE)
    upgraded_in = time.monotonic() - started

    started = time.monotonic()
    _helm_cluster(control_plane, "uninstall", RELEASE, "--wait", "--timeout", "60s")
    uninstalled = time.monotonic() - started
    _wait("the release's objects to go", lambda: _left(kube) == [])
    names = {c["metadata"]["name"] for c in crds()}
    extensions: Any = client.ApiextensionsV1Api(kube)
    assert names <= {c.metadata.name for c in extensions.list_custom_resource_definition().items}
    gone = time.monotonic() - started
    print(
        f"install to available {installed:.1f} s, upgrade {upgraded_in:.1f} s, "
        f"uninstall {uninstalled:.1f} s, all gone {gone:.1f} s"
    )


def test_the_tracking_data_outlives_an_uninstall_unless_told_otherwise() -> None:
    def policy(values: dict[str, Any]) -> str | None:
        claim = find(render(values), "PersistentVolumeClaim", "promoter-tracking-data")
        return (claim["metadata"].get("annotations") or {}).get("helm.sh/resource-policy")

    assert policy({}) == "keep"  # the runs, models and artifacts are not the release's to delete
    assert policy({"tracking": {"persistence": {"keepOnUninstall": False}}}) is None
