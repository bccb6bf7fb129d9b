"""The operator (`promoter operator`, a real kopf process) against the real test bed: kube-apiserver,
controller-manager, scheduler, kwok nodes and the real Argo Rollouts controller. What cannot run
here (workflow pods, inference pods, load-test pods) is played by tests/cluster_stand_ins.py.

MLflow is a real `promoter tracking-server` (MLflow's basic-auth app, SQLite store and served
artifacts) and the secrets are in a real OpenBao whose Kubernetes auth method checks logins with
this API server's TokenReview. The operator, the pipeline steps and the servers each reach MLflow
as their own user, with the password each reads from its own Vault path after logging in with a
token the API server minted for its service account; the stand-ins take the VAULT_* variables from
the pod specs the operator (Workflows, Jobs) and the Rollout (inference pods) wrote. The last test
looks for every planted canary and every MLflow password in everything the module left behind."""

from __future__ import annotations

import collections
import contextlib
import json
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from promoter.crd import GROUP, PLURAL, VERSION
from promoter.local.rollout import free_port
from promoter.operator.argo_rollouts import MODEL_URI_ENV
from promoter.operator.metrics import PHASES
from promoter.pipelines.digits import load_digits_v1
from promoter.pipelines.tracking import store_client
from promoter.vault_setup import (
    ADMIN_PASSWORD_KEY,
    ADMIN_USERNAME_KEY,
    MLFLOW_PASSWORD_KEY,
    MLFLOW_USERNAME_KEY,
    VaultLayout,
    load_layout,
)

from .chart import crds as chart_crds
from .chart import find, render
from .cluster_stand_ins import (
    ArgoController,
    LoadTestKubelet,
    PodLogins,
    ServiceAnswers,
    clean_env,
    selected_pods,
    wait_for,
)
from .conftest import EXAMPLES, PROMOTER, register_digits_champion
from .kube import TOKEN_REVIEWER as REVIEWER
from .kube import bind_token_reviewer, create_unless_present, ensure_service_account
from .openbao import REPO, bao_dev_server
from .prometheus import Prometheus, assert_lint_clean, dashboard_queries
from .tracking import TrackingServer, start_tracking_server, stop_tracking_server

pytestmark = pytest.mark.slow

NAMESPACE = "promoter-e2e"
ROLLOUT = "digits"
ROLLOUTS = ("argoproj.io", "v1alpha1")
DIGITS = load_digits_v1()


@dataclass(frozen=True)
class ClusterVault:
    addr: str
    layout: VaultLayout  # manifests/vault with its roles bound to the test namespace's accounts
    logins: PodLogins
    canaries: dict[str, str]  # component -> the value planted in its Vault path
    passwords: dict[str, str]  # MLflow user -> its password (every component's and the admin's)

    def identity(self, component: str) -> dict[str, str]:
        """The VAULT_* variables of a pod of `component` as the chart gives them (`VaultLayout.pod`),
        with a token the API server minted for its service account."""
        pod = self.layout.pod(component, self.addr)
        spec = {"serviceAccountName": pod.service_account, "volumes": list(pod.volumes)}
        env = [{"name": k, "value": v} for k, v in pod.env.items()]
        return self.logins.process_env(spec, {"env": env, "volumeMounts": list(pod.volume_mounts)})


@pytest.fixture(scope="module")
def cluster_vault(
    kube: Any, control_plane: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ClusterVault]:
    """An OpenBao of this module's own (the session's `vault` binds its roles to namespace
    `promoter`): manifests/vault with `namespace: promoter-e2e`, applied by `promoter vault-setup`
    with the Kubernetes auth method against the test bed's API server (a reviewer account bound to
    system:auth-delegator, as the chart ships) and `--mlflow-users`; a canary in every path."""
    from kubernetes import client

    directory = tmp_path_factory.mktemp("cluster-vault")
    layout_directory = directory / "layout"
    shutil.copytree(REPO / "manifests" / "vault", layout_directory)
    roles = yaml.safe_load((layout_directory / "roles.yaml").read_text())
    (layout_directory / "roles.yaml").write_text(yaml.safe_dump(roles | {"namespace": NAMESPACE}))
    layout = load_layout(layout_directory)
    core: Any = client.CoreV1Api(kube)
    core.create_namespace({"metadata": {"name": NAMESPACE}})
    for account in {c.service_account for c in layout.components} | {REVIEWER}:
        ensure_service_account(core, NAMESPACE, account)
    bind_token_reviewer(kube, NAMESPACE, REVIEWER)
    logins = PodLogins(kube, NAMESPACE, directory / "tokens")
    with bao_dev_server(directory / "bao.log") as addr:
        import hvac

        setup = subprocess.run(
            [
                str(PROMOTER), "vault-setup", "--directory", str(layout_directory), "--mlflow-users",
                "--kubernetes-host", control_plane.server, "--kubernetes-ca-file", str(control_plane.ca_file),
                "--kubernetes-reviewer-jwt-file", str(logins.token_file(REVIEWER, None)),
            ],
            capture_output=True,
            text=True,
            env={**clean_env(), "VAULT_ADDR": addr, "VAULT_TOKEN": "root"},
            timeout=120,
            check=False,
        )  # fmt: skip
        assert setup.returncode == 0, setup.stdout + setup.stderr
        admin = hvac.Client(url=addr, token="root")
        canaries, passwords = {}, {}
        for component in layout.components:
            canaries[component.name] = f"canary-{component.name}-{uuid.uuid4().hex}"
            values = _read_kv(admin, layout, component.secret_path)
            values["mlflow_tracking_token"] = canaries[component.name]
            admin.secrets.kv.v2.create_or_update_secret(
                component.secret_path, values, mount_point=layout.kv_mount
            )
            for user, password in (
                (MLFLOW_USERNAME_KEY, MLFLOW_PASSWORD_KEY),
                (ADMIN_USERNAME_KEY, ADMIN_PASSWORD_KEY),
            ):
                if password in values:
                    passwords[values[user]] = values[password]
        assert {"promoter-operator", "promoter-trainer", "promoter-server"} < set(passwords), set(passwords)
        yield ClusterVault(addr, layout, logins, canaries, passwords)


def _read_kv(admin: Any, layout: VaultLayout, path: str) -> dict[str, str]:
    """The keys at `path` (none yet: an empty dict)."""
    import hvac

    try:
        answer = admin.secrets.kv.v2.read_secret_version(
            path, mount_point=layout.kv_mount, raise_on_deleted_version=True
        )
    except hvac.exceptions.InvalidPath:
        return {}
    return dict(answer["data"]["data"])


def _rollout(version: str, vault: ClusterVault, tracking: str) -> dict[str, Any]:
    """The serving Rollout as the chart makes it: the server's account, Vault login and tracking URI."""
    pod = vault.layout.pod("server", vault.addr)
    env = {**pod.env, "MLFLOW_TRACKING_URI": tracking, MODEL_URI_ENV: f"models:/digits/{version}"}
    server = {
        "name": "server",
        "image": "promoter:test",
        "args": ["serve", "--port", "8080"],
        "env": [{"name": k, "value": v} for k, v in env.items()],
        "volumeMounts": list(pod.volume_mounts),
    }
    spec = {"serviceAccountName": pod.service_account, "containers": [server], "volumes": list(pod.volumes)}
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": ROLLOUT},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": ROLLOUT}},
            "template": {"metadata": {"labels": {"app": ROLLOUT}}, "spec": spec},
            "strategy": {
                "blueGreen": {
                    "activeService": f"{ROLLOUT}-active",
                    "previewService": f"{ROLLOUT}-preview",
                    "autoPromotionEnabled": False,
                    "scaleDownDelaySeconds": 600,  # the previous champion stays hot for a rollback
                }
            },
        },
    }


class OperatorProcess:
    def __init__(
        self,
        kubeconfig: Path,
        workdir: Path,
        service_url: str,
        tracking: str,
        identity: dict[str, str],
        log_name: str = "operator.log",
    ) -> None:
        """`identity`: the operator's VAULT_* variables (its MLflow login comes from Vault)."""
        self.log_path = workdir / log_name
        self.liveness, self.metrics = free_port(), free_port()
        self.env = {
            **clean_env(),
            **identity,
            "KUBECONFIG": str(kubeconfig),
            "MLFLOW_TRACKING_URI": tracking,
            "PROMOTER_OPERATOR_SERVICE_URL": service_url,
            "PROMOTER_OPERATOR_RECONCILE_SECONDS": "0.5",
            "PROMOTER_OPERATOR_IMAGE": "promoter:test",
            "PROMOTER_OPERATOR_PEERING_LIFETIME": "3",
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *options: str) -> None:
        log = self.log_path.open("a")
        self.process = subprocess.Popen(
            [
                str(PROMOTER), "operator", "--namespace", NAMESPACE, "--host", "127.0.0.1",
                "--liveness-port", str(self.liveness), "--metrics-port", str(self.metrics), *options,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
        )  # fmt: skip
        wait_for("the operator's liveness probe", lambda: self.get("liveness", "/healthz"), 120)

    def get(self, which: str, path: str) -> str | None:
        port = self.liveness if which == "liveness" else self.metrics
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as answer:
                return str(answer.read().decode())
        except OSError:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"operator exited: {self.log_path.read_text()[-3000:]}") from None
            return None

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)  # kopf can take longer; its state is safe anyway
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class Cluster:
    api: Any
    workdir: Path
    operator: OperatorProcess
    argo: ArgoController
    kubelet: LoadTestKubelet
    vault: ClusterVault
    tracking: TrackingServer

    @property
    def objects(self) -> Any:
        from kubernetes import client

        return client.CustomObjectsApi(self.api)

    @property
    def core(self) -> Any:
        from kubernetes import client

        return client.CoreV1Api(self.api)

    def apply(
        self, name: str, version: str | None = None, params: dict[str, Any] | None = None, **budgets: float
    ) -> dict[str, Any]:
        """The example promotion, in the test namespace, with a short load test; `version`: promote
        that registered version instead of training; `params`: train with these changed."""
        document = yaml.safe_load((EXAMPLES / "digits" / "promotion.yaml").read_text())
        document["metadata"] = {"name": name, "namespace": NAMESPACE}
        load_test = {"users": 4, "spawnRate": 4, "duration": "3s", "maxP95Ms": 500, "maxErrorRate": 0.01}
        document["spec"]["rollout"] = {"name": ROLLOUT, "loadTest": load_test | budgets}
        if version is not None:
            document["spec"]["source"] = {"modelVersion": version}
        if params is not None:
            document["spec"]["source"]["train"]["params"] |= params
        created: dict[str, Any] = self.objects.create_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, PLURAL, document
        )
        return created

    def promotion(self, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self.objects.get_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, PLURAL, name
        )
        return found

    def status(self, name: str) -> dict[str, Any]:
        return self.promotion(name).get("status") or {}

    def settled(
        self, name: str, timeout: float = 600, phases: tuple[str, ...] = ("Promoted", "Rejected", "Failed")
    ) -> dict[str, Any]:
        def phase() -> dict[str, Any] | None:
            status = self.status(name)
            return status if status.get("phase") in phases else None

        try:
            return dict(wait_for(f"{name} to settle", phase, timeout, self.argo, self.kubelet))
        except TimeoutError:
            raise AssertionError(
                f"{name}: {self.status(name)}\noperator log:\n{self.operator.log_path.read_text()[-4000:]}"
            ) from None

    def rollout(self) -> dict[str, Any]:
        found: dict[str, Any] = self.objects.get_namespaced_custom_object(
            *ROLLOUTS, NAMESPACE, "rollouts", ROLLOUT
        )
        return found

    def active_selector(self) -> str:
        return str(
            self.core.read_namespaced_service(f"{ROLLOUT}-active", NAMESPACE).spec.selector[
                "rollouts-pod-template-hash"
            ]
        )

    def version_of_hash(self, pod_hash: str) -> str:
        pods = self.core.list_namespaced_pod(
            NAMESPACE, label_selector=f"rollouts-pod-template-hash={pod_hash}"
        )
        env = {e.name: e.value for e in pods.items[0].spec.containers[0].env}
        return str(env[MODEL_URI_ENV].rsplit("/", 1)[1])

    def events(self, name: str) -> list[Any]:
        listed = self.core.list_namespaced_event(NAMESPACE, field_selector=f"involvedObject.name={name}")
        return sorted(
            (e for e in listed.items if e.source.component == "promoter-operator"),
            key=lambda e: e.metadata.name,
        )


def _install_peering(api: Any) -> None:
    """What the chart installs for peering: kopf's CRD (crds/), then the KopfPeering object in our
    namespace."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    [crd] = [c for c in chart_crds() if c["spec"]["group"] == "kopf.dev"]
    peering = find(render(), "KopfPeering", "promoter")
    create_unless_present(api, crd)
    objects: Any = client.CustomObjectsApi(api)
    peering["metadata"]["namespace"] = NAMESPACE
    group, version = peering["apiVersion"].split("/")

    def created() -> bool:
        try:
            objects.create_namespaced_custom_object(group, version, NAMESPACE, "kopfpeerings", peering)
        except ApiException as exc:
            return bool(exc.status == 409)  # 404: the CRD is not served yet
        return True

    wait_for("the KopfPeering object", created, 30)


@pytest.fixture(scope="module")
def cluster(
    kube: Any, control_plane: Any, cluster_vault: ClusterVault, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:

    tracking = start_tracking_server(
        None, tmp_path_factory.mktemp("cluster-tracking"), identity=cluster_vault.identity("tracking")
    )
    admin = pytest.MonkeyPatch()  # this process (the test's own MLflow client) is the admin
    admin.setenv("MLFLOW_TRACKING_USERNAME", "promoter-admin")
    admin.setenv("MLFLOW_TRACKING_PASSWORD", cluster_vault.passwords["promoter-admin"])
    try:
        workdir = register_digits_champion(tmp_path_factory.mktemp("cluster-registry"), tracking.uri)
        with _cluster(kube, control_plane, cluster_vault, tracking, workdir) as state:
            yield state
    finally:
        admin.undo()
        stop_tracking_server(tracking)


@contextlib.contextmanager
def _cluster(
    kube: Any, control_plane: Any, vault: ClusterVault, tracking: TrackingServer, workdir: Path
) -> Iterator[Cluster]:
    from kubernetes import client

    core: Any = client.CoreV1Api(kube)
    objects: Any = client.CustomObjectsApi(kube)
    _install_peering(kube)
    for side in ("active", "preview"):
        service = {"selector": {"app": ROLLOUT}, "ports": [{"port": 8080}]}
        core.create_namespaced_service(
            NAMESPACE, {"metadata": {"name": f"{ROLLOUT}-{side}"}, "spec": service}
        )
    objects.create_namespaced_custom_object(
        *ROLLOUTS, NAMESPACE, "rollouts", _rollout("1", vault, tracking.uri)
    )
    answers = ServiceAnswers(kube)
    argo = ArgoController(kube, NAMESPACE, workdir, vault.logins)
    kubelet = LoadTestKubelet(kube, NAMESPACE, workdir, vault.logins)
    operator = OperatorProcess(
        control_plane.kubeconfig, workdir, answers.url_template, tracking.uri, vault.identity("operator")
    )
    state = Cluster(kube, workdir, operator, argo, kubelet, vault, tracking)
    wait_for(
        "the champion's Rollout to be Healthy",
        lambda: (state.rollout().get("status") or {}).get("phase") == "Healthy",
        120,
    )
    argo.start()
    kubelet.start()
    operator.start()
    try:
        yield state
    finally:
        operator.stop()
        argo.stop()
        kubelet.stop()
        answers.close()


def test_a_trained_candidate_goes_end_to_end(cluster: Cluster) -> None:
    created = cluster.apply("digits-e2e")
    status = cluster.settled("digits-e2e")

    assert status["phase"] == "Promoted", status
    assert (status["modelVersion"], status["previousChampion"]) == ("2", "1")
    phases = [entry["phase"] for entry in status["history"]]
    assert phases == ["Training", "Evaluating", "Gating", "Deploying", "LoadTesting", "Promoting", "Promoted"]
    # the real Rollouts controller switched the active Service to the candidate's ReplicaSet
    rollout = cluster.rollout()
    assert cluster.active_selector() == rollout["status"]["stableRS"] == rollout["status"]["currentPodHash"]
    assert cluster.version_of_hash(cluster.active_selector()) == "2"
    # what the operator created is labelled with the promotion and owned by it
    owner = created["metadata"]["uid"]
    workflow = cluster.objects.get_namespaced_custom_object(
        "argoproj.io", "v1alpha1", NAMESPACE, "workflows", "digits-e2e-train"
    )
    from kubernetes import client

    job: Any = client.BatchV1Api(cluster.api).read_namespaced_job("digits-e2e-v2-loadtest", NAMESPACE)
    assert workflow["metadata"]["ownerReferences"][0]["uid"] == owner
    assert job.metadata.owner_references[0].uid == owner
    assert job.metadata.labels["mlops.promoter.dev/promotion"] == "digits-e2e"
    # one Event per transition, with its reason
    events = cluster.events("digits-e2e")
    assert [e.reason for e in events] == [entry["reason"] for entry in status["history"]]
    # the operator's own metrics
    metrics = cluster.operator.get("metrics", "/metrics") or ""
    assert 'promoter_promotions_finished_total{outcome="Promoted"} 1.0' in metrics
    assert 'promoter_phase_duration_seconds_count{phase="LoadTesting"} 1.0' in metrics


def _mlflow(cluster: Cluster) -> Any:
    """The test's own client of the tracking server, as the MLflow admin."""
    return store_client(cluster.tracking.uri)


def _champion(cluster: Cluster) -> str:
    return str(_mlflow(cluster).get_model_version_by_alias("digits", "champion").version)


def _register_again(cluster: Cluster, version: str) -> str:
    """Another registry version of an existing model: a candidate that skips training."""
    mlflow = _mlflow(cluster)
    existing = mlflow.get_model_version("digits", version)
    # over REST a `models:/m-...` source must come with its logged model's id (the server checks it)
    logged = existing.model_id or existing.source.removeprefix("models:/")
    again = mlflow.create_model_version("digits", existing.source, run_id=existing.run_id, model_id=logged)
    return str(again.version)


def test_a_load_test_over_budget_rejects_and_leaves_the_active_side_untouched(cluster: Cluster) -> None:
    candidate = _register_again(cluster, "1")
    active = cluster.active_selector()
    champion = _champion(cluster)

    cluster.apply("digits-too-slow", version=candidate, maxP95Ms=0.01)  # no real server answers in 10 µs
    status = cluster.settled("digits-too-slow")

    assert (status["phase"], status["reason"]) == ("Rejected", "LoadTestGatesFailed"), status
    assert "loadTest.p95Ms" in status["message"] and status["loadTest"]["requests"] > 0
    assert cluster.rollout()["status"]["abort"] is True  # the preview was aborted...
    assert cluster.active_selector() == active  # ...and production never moved
    assert cluster.version_of_hash(active) == champion == _champion(cluster)
    assert cluster.events("digits-too-slow")[-1].type == "Warning"


def test_a_candidate_with_one_degraded_class_is_rejected_by_its_paired_gate(cluster: Cluster) -> None:
    """The example's paired gate, in the cluster: class 3 trained on mostly wrong labels is
    significantly worse than @champion on the same held-out rows; nothing is registered or deployed."""
    active = cluster.active_selector()
    champion = _champion(cluster)
    cluster.apply("digits-degraded", params={"label_noise": 0.8, "noisy_class": 3})
    status = cluster.settled("digits-degraded")

    assert (status["phase"], status["reason"]) == ("Rejected", "GatesFailed"), status
    failures = {g["name"]: g for g in status["gates"]["failures"]}
    assert "paired.recall[3]" in failures, failures
    assert failures["paired.recall[3]"]["statistics"]["pHolm"] < 0.05
    assert "modelVersion" not in status
    assert cluster.active_selector() == active and _champion(cluster) == champion
    assert cluster.events("digits-degraded")[-1].reason == "GatesFailed"


def test_a_crashed_load_test_is_a_failure_never_a_pass(cluster: Cluster) -> None:
    """argoproj/argo-rollouts#3724: a pre-promotion Job whose pod crashed was taken as a success."""
    candidate = _register_again(cluster, "1")
    active = cluster.active_selector()
    cluster.kubelet.crash = True
    try:
        cluster.apply("digits-crashed", version=candidate)
        status = cluster.settled("digits-crashed")
    finally:
        cluster.kubelet.crash = False

    assert (status["phase"], status["reason"]) == ("Failed", "LoadTestFailed"), status
    assert "digits-crashed-v" in status["message"] and "failed" in status["message"]
    assert cluster.rollout()["status"]["abort"] is True
    assert cluster.active_selector() == active


def test_the_operator_killed_in_every_phase_finishes_without_duplicates(cluster: Cluster) -> None:
    from kubernetes import client

    from promoter.registry import MlflowRegistry

    registry = MlflowRegistry(_mlflow(cluster), "test")

    def champion_moves() -> int:
        return sum(move.alias == "champion" for move in registry.alias_history("digits"))

    moves_before = champion_moves()
    versions_before = len(_mlflow(cluster).search_model_versions("name='digits'"))
    cluster.apply("digits-resilient")

    killed: list[str] = []

    def kill_on_each_new_phase() -> dict[str, Any] | None:
        status = cluster.status("digits-resilient")
        phase = status.get("phase")
        if phase in ("Promoted", "Rejected", "Failed"):
            return status
        if phase and phase not in killed:
            killed.append(phase)
            cluster.operator.kill()  # SIGKILL: no cleanup, no goodbye to its peers
            cluster.operator.start()
        return None

    status = wait_for("the promotion, with kills", kill_on_each_new_phase, 900, cluster.argo, cluster.kubelet)

    assert status["phase"] == "Promoted", status
    assert {"Training", "Evaluating", "Deploying", "LoadTesting"} <= set(killed), killed
    history = [entry["phase"] for entry in status["history"]]
    assert len(history) == len(set(history)), history  # no phase entered twice
    label = "mlops.promoter.dev/promotion=digits-resilient"
    workflows = cluster.objects.list_namespaced_custom_object(
        "argoproj.io", "v1alpha1", NAMESPACE, "workflows", label_selector=label
    )
    jobs = client.BatchV1Api(cluster.api).list_namespaced_job(NAMESPACE, label_selector=label)
    assert len(workflows["items"]) == 1 and len(jobs.items) == 1
    assert len(_mlflow(cluster).search_model_versions("name='digits'")) == versions_before + 1
    assert champion_moves() == moves_before + 1
    assert [e.reason for e in cluster.events("digits-resilient")] == [e["reason"] for e in status["history"]]
    assert cluster.version_of_hash(cluster.active_selector()) == status["modelVersion"] == _champion(cluster)


def test_a_rollback_returns_to_the_previous_champion_kept_hot(cluster: Cluster) -> None:
    before = cluster.status("digits-resilient")
    previous = before["previousChampion"]
    hot = {rs["metadata"]["name"] for rs in _replica_sets(cluster) if rs["status"].get("readyReplicas")}

    cluster.objects.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        NAMESPACE,
        PLURAL,
        "digits-resilient",
        {"metadata": {"annotations": {"mlops.promoter.dev/rollback-requested-by": "alice"}}},
    )
    status = cluster.settled("digits-resilient", timeout=300, phases=("RolledBack", "Failed"))

    assert status["phase"] == "RolledBack" and "alice" in status["message"], status
    assert cluster.version_of_hash(cluster.active_selector()) == previous == _champion(cluster)
    active_rs = next(
        rs for rs in _replica_sets(cluster)
        if rs["metadata"]["labels"]["rollouts-pod-template-hash"] == cluster.active_selector()
    )  # fmt: skip
    assert active_rs["metadata"]["name"] in hot  # the same ReplicaSet, still running: no cold start


def _replica_sets(cluster: Cluster) -> list[dict[str, Any]]:
    from kubernetes import client

    listed = client.AppsV1Api(cluster.api).list_namespaced_replica_set(
        NAMESPACE, label_selector=f"app={ROLLOUT}"
    )
    return [cluster.api.sanitize_for_serialization(rs) for rs in listed.items]


def test_deleting_a_promotion_removes_what_it_created(cluster: Cluster) -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    label = "mlops.promoter.dev/promotion=digits-e2e"
    batch = client.BatchV1Api(cluster.api)
    assert batch.list_namespaced_job(NAMESPACE, label_selector=label).items

    cluster.objects.delete_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, "digits-e2e")

    def gone() -> bool:
        try:
            cluster.promotion("digits-e2e")
        except ApiException as exc:
            return bool(exc.status == 404)
        return False

    wait_for("the promotion to be deleted", gone, 60)
    assert not cluster.objects.list_namespaced_custom_object(
        "argoproj.io", "v1alpha1", NAMESPACE, "workflows", label_selector=label
    )["items"]
    wait_for(
        "its Job to go", lambda: not batch.list_namespaced_job(NAMESPACE, label_selector=label).items, 60
    )


def test_a_second_replica_waits_while_the_first_is_alive_and_takes_over_when_it_dies(
    cluster: Cluster,
) -> None:
    kubeconfig = Path(cluster.operator.env["KUBECONFIG"])
    url = cluster.operator.env["PROMOTER_OPERATOR_SERVICE_URL"]
    tracking = cluster.tracking.uri
    identity = cluster.vault.identity("operator")
    standby = OperatorProcess(kubeconfig, cluster.workdir, url, tracking, identity, log_name="standby.log")

    def peers() -> dict[str, Any]:
        peering = cluster.objects.get_namespaced_custom_object(
            "kopf.dev", "v1", NAMESPACE, "kopfpeerings", "promoter"
        )
        return dict(peering.get("status") or {})

    standby.start("--priority", "-1")
    try:
        wait_for("both replicas in the KopfPeering", lambda: len(peers()) >= 2, 30)
        time.sleep(4)  # longer than a peer's lifetime here: time enough to resume if it were going to
        assert "Resuming operations" not in standby.log_path.read_text()  # paused: the first acts

        cluster.operator.kill()
        wait_for(
            "the standby to take over", lambda: "Resuming operations" in standby.log_path.read_text(), 60
        )
    finally:
        standby.stop()
    for line in cluster.operator.log_path.read_text().splitlines():
        json.loads(line)  # every line the operator wrote is one JSON object


def test_every_dashboard_query_returns_series_during_a_promotion(
    cluster: Cluster, prometheus: Prometheus
) -> None:
    """A real Prometheus scrapes the real operator and real inference servers while a promotion runs:
    the load test's server of the candidate (behind `digits-preview`, started by the load-test
    stand-in) and a server of the active version (behind `digits-active`; no kwok pod runs one, so the
    test starts it and sends it steady traffic, as production would). Then every panel's query of
    every committed dashboard must return at least one series over the promotion's time range."""
    cluster.operator.stop()  # a fresh process (the peering test leaves it killed anyway)...
    cluster.operator.start()
    wait_for("the phase gauge of a restarted operator", lambda: _phase_gauge_is_right(cluster), 30)
    operator = f"127.0.0.1:{cluster.operator.metrics}"
    prometheus.add_target(
        operator, namespace=NAMESPACE, pod="promoter-operator-0", service="promoter-operator"
    )
    champion = _champion(cluster)
    # a server as the active pod runs it: that pod's environment and service account's token
    active = cluster.kubelet.serve(
        selected_pods(cluster.core, NAMESPACE, f"{ROLLOUT}-active")[champion], champion
    )
    served: list[str] = []

    @contextlib.contextmanager
    def scraped(server: Any, namespace: str, service: str) -> Iterator[None]:
        address = f"127.0.0.1:{server.port}"
        prometheus.add_target(address, namespace=namespace, service=service, pod=f"{service}-{server.port}")
        wait_for(f"Prometheus to scrape {service}", lambda: prometheus.scraped_up(address), 30)
        served.append(service)
        try:
            yield
        finally:
            time.sleep(2.5)  # two more scrapes: what the load test left in the counters
            prometheus.remove_target(address)

    stop_traffic = threading.Event()

    def production_traffic() -> None:
        inputs = {"inputs": DIGITS.features[:8].tolist()}
        while not stop_traffic.wait(0.2):
            active.client.post("/predict", json=inputs)

    traffic = threading.Thread(target=production_traffic, daemon=True)
    start = time.time()
    try:
        active.wait_ready()
        with scraped(active, NAMESPACE, f"{ROLLOUT}-active"):
            traffic.start()
            cluster.kubelet.serving = scraped
            cluster.apply("digits-dashboards", version=_register_again(cluster, champion))
            status = cluster.settled("digits-dashboards")
            stop_traffic.set()
            traffic.join(timeout=10)
    finally:
        stop_traffic.set()
        cluster.kubelet.serving = lambda *_: contextlib.nullcontext()
        assert active.stop()
    assert status["phase"] == "Promoted", status
    assert served == [f"{ROLLOUT}-active", f"{ROLLOUT}-preview"]
    end = time.time()

    empty = [str(q) for q in dashboard_queries() if not prometheus.query_range(q.promql, start, end)]
    assert not empty, "queries with no series:\n" + "\n".join(empty)
    wait_for("the phase gauge after the promotion", lambda: _phase_gauge_is_right(cluster), 30)
    # the check can fail: a misspelled metric parses, and returns nothing
    assert not prometheus.query_range("sum(rate(promoter_predictions_totl[1m]))", start, end)
    # the operator's real port, after a whole module of promotions, passes Prometheus' linter
    assert_lint_clean((cluster.operator.get("metrics", "/metrics") or "").encode())


def _phase_gauge_is_right(cluster: Cluster) -> bool:
    """promoter_promotions{phase} says how many promotions the cluster has in each phase."""
    listed = cluster.objects.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL)["items"]
    truth = collections.Counter((item.get("status") or {}).get("phase", "Pending") for item in listed)
    text = cluster.operator.get("metrics", "/metrics") or ""
    gauge = {
        line.split('"')[1]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("promoter_promotions{")
    }
    return set(gauge) == set(PHASES) and gauge == {p: float(truth[p]) for p in PHASES}


def test_each_component_logged_in_to_vault_as_itself(cluster: Cluster) -> None:
    """The operator, every pipeline step, every server and every load test logged in with its own
    role and read its own path (each process's log says so, key names only); each then reached MLflow
    with the password from there: the tracking server grants nothing to an unknown or anonymous user."""
    operator_log = cluster.operator.log_path.read_text()
    assert "from secret/promoter/operator as role promoter-operator" in operator_log
    assert "mlflow_tracking_token" in operator_log  # the key of its canary: read, never printed
    steps = [path.read_text() for path in (cluster.workdir / "argo").rglob("log.txt")]
    assert len(steps) >= 4  # train and evaluate, of several promotions
    assert all("from secret/promoter/trainer as role promoter-trainer" in log for log in steps)
    # every server loaded its model from the tracking server; the only login it had came from Vault:
    # its pod's template (the operator rewrote only the model URI) names the server's role, no password
    servers = [path.read_text() for path in cluster.workdir.glob("serve-*.log")]
    assert len(servers) >= 3 and all("serving models:/digits/" in log for log in servers)
    assert all("from secret/promoter/server as role promoter-server" in log for log in servers)
    # the stand-in writes each load test's output under its Job pod's name
    load_tests = [path.read_text() for path in cluster.workdir.glob("*-loadtest-*.log")]
    assert load_tests and all(
        "from secret/promoter/loadtester as role promoter-loadtester" in log for log in load_tests
    )
    container = cluster.rollout()["spec"]["template"]["spec"]["containers"][0]
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert (env["VAULT_ROLE"], env["VAULT_SECRET_PATH"]) == ("promoter-server", "promoter/server")
    assert not any(name.startswith("MLFLOW_TRACKING_") and name != "MLFLOW_TRACKING_URI" for name in env)
    import requests

    anonymous = requests.get(f"{cluster.tracking.uri}/api/2.0/mlflow/registered-models/get?name=digits")
    assert anonymous.status_code == 401


def _cluster_objects(cluster: Cluster) -> dict[str, str]:
    """Every API object of the namespace the leak test reads, as JSON, by kind and name."""
    from kubernetes import client

    def each(kind: str, items: list[Any]) -> dict[str, str]:
        dumped = (cluster.api.sanitize_for_serialization(item) for item in items)
        return {f"{kind}/{item['metadata']['name']}": json.dumps(item) for item in dumped}

    def custom(group: str, version: str, plural: str) -> list[Any]:
        return list(cluster.objects.list_namespaced_custom_object(group, version, NAMESPACE, plural)["items"])

    batch = client.BatchV1Api(cluster.api)
    return {
        **each("ModelPromotion", custom(GROUP, VERSION, PLURAL)),
        **each("Workflow", custom("argoproj.io", "v1alpha1", "workflows")),
        **each("Rollout", custom(*ROLLOUTS, "rollouts")),
        **each("Job", batch.list_namespaced_job(NAMESPACE).items),
        **each("Pod", cluster.core.list_namespaced_pod(NAMESPACE).items),
        **each("Event", cluster.core.list_namespaced_event(NAMESPACE).items),
    }


# Where MLflow's basic-auth app must read the admin's password: the ini `promoter tracking-server`
# writes (mode 0600) into its run directory, a memory emptyDir in the chart.
AUTH_INI = "run/basic_auth.ini"


def _leaks(cluster: Cluster, secrets: dict[str, str]) -> dict[str, list[str]]:
    """Where each secret (name -> value) appears: the namespace's objects; the workdir (operator,
    standby, server, load-test and step logs, step outputs); the tracking server's directory (its
    log, the SQLite store of runs and the registry, the served artifacts, the auth database)."""
    found: dict[str, list[str]] = {}
    for where, text in _cluster_objects(cluster).items():
        hits = [name for name, value in secrets.items() if value in text]
        if hits:
            found[where] = hits
    for root in (cluster.workdir, cluster.tracking.backend.parent):
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                data = path.read_bytes()
                exempt = {"promoter-admin"} if path == cluster.tracking.backend.parent / AUTH_INI else set()
                hits = [n for n, v in secrets.items() if n not in exempt and v.encode() in data]
                if hits:
                    found[str(path)] = hits
    return found


def test_no_canary_and_no_mlflow_password_anywhere_after_the_promotions(cluster: Cluster) -> None:
    """After the module's promotions (Promoted, Rejected, Failed, killed, rolled back, deleted): every
    canary planted in a component's Vault path was read by its processes and every password was
    used, yet none is in a promotion's status, an Event, a Workflow, Job, Pod or
    Rollout, a log, or the MLflow store. The admin's password is allowed in one file only (AUTH_INI)."""
    canaries = {f"canary of {name}": value for name, value in cluster.vault.canaries.items()}
    secrets = canaries | {f"password of {user}": value for user, value in cluster.vault.passwords.items()}
    secrets["promoter-admin"] = secrets.pop("password of promoter-admin")
    assert (cluster.tracking.backend.parent / AUTH_INI).exists()  # the exemption names a real file
    assert len(_cluster_objects(cluster)) > 20 and cluster.tracking.backend.stat().st_size > 0

    assert _leaks(cluster, secrets) == {}

    # positive control: a value planted in an Event and in a served artifact is found in both
    planted = cluster.vault.canaries["trainer"]
    artifact = cluster.tracking.artifacts / "planted.txt"
    artifact.write_text(f"left by mistake: {planted}")
    event = {
        "metadata": {"name": "planted-canary"},
        "involvedObject": {"kind": "ModelPromotion", "name": "digits-dashboards", "namespace": NAMESPACE},
        "reason": "Planted",
        "message": f"left by mistake: {planted}",
        "type": "Normal",
    }
    cluster.core.create_namespaced_event(NAMESPACE, event)
    try:
        found = _leaks(cluster, secrets)
    finally:
        artifact.unlink()
        cluster.core.delete_namespaced_event("planted-canary", NAMESPACE)
    assert found == {"Event/planted-canary": ["canary of trainer"], str(artifact): ["canary of trainer"]}
