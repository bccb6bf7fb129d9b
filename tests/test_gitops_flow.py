"""Promotion is a merge, end to end: a real Argo CD syncs staging from `staging` and production from
`main` of a real git remote (a bare repository on this machine), into two namespaces of the real
test bed (kube-apiserver, controller-manager, kwok nodes, the Argo Rollouts controller); each
environment runs its own real operator (`promoter operator`) against one real MLflow server.

The repository is what `promoter gitops init` writes, with the test bed's few differences (no pods
run here, so no in-cluster tracking server, webhook or Vault hook; one cluster, so the CRDs are
installed once, by the test bed). What cannot run here is played by tests/cluster_stand_ins.py:
Argo Workflows' controller (it runs each step for real), the inference pods behind a Service and the
load-test pods (a real Locust against a real `promoter serve`). MLflow here is `mlflow server`
without its auth app: logins and Vault are tests/test_operator_cluster.py's subject.

The tests run in order, as a user would: commit on staging, review the record staging commits,
merge, see production promote exactly that; then what GitOps refuses; then revert the merge.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from promoter.crd import GROUP, PLURAL, VERSION
from promoter.operator.argo_rollouts import MODEL_URI_ENV
from promoter.pipelines.tracking import store_client
from promoter.registry import MlflowRegistry

from .chart import crds as chart_crds
from .chart import find, render
from .cluster_stand_ins import ArgoController, LoadTestKubelet, PodLogins, ServiceAnswers, clean_env, wait_for
from .conftest import EXAMPLES, PROMOTER, register_digits_champion
from .gitops import Applications, GitRemote
from .kube import create_unless_present
from .tracking import TrackingServer, start_mlflow_server, stop_tracking_server

pytestmark = pytest.mark.slow

ENVIRONMENTS = ("staging", "production")
ROLLOUT, MODEL = "digits-serving", "digits"
CANDIDATE = "digits-candidate"  # the staging promotion, and the production record of it
RECORDS = "environments/production/promotions"
# The image production runs before the merge, and the build under test in staging: digests only.
PRODUCTION_IMAGE = "ghcr.io/promoter/promoter@sha256:" + "1" * 64
STAGING_IMAGE = "ghcr.io/promoter/promoter@sha256:" + "2" * 64
TIMINGS_ENV = "PROMOTER_GITOPS_TIMINGS"  # where to write what the merge took (benchmarks/gitops.py)
OTHER_IMAGE = "ghcr.io/promoter/promoter@sha256:" + "3" * 64  # built, never proven anywhere


class Operator:
    """One environment's `promoter operator`: its namespace, its Application, its alias."""

    def __init__(self, environment: str, kubeconfig: Path, workdir: Path, env: dict[str, str]) -> None:
        self.environment, self.log_path = environment, workdir / f"operator-{environment}.log"
        self.env = {**clean_env(), "KUBECONFIG": str(kubeconfig), **env}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        from promoter.local.rollout import free_port

        with self.log_path.open("a") as log:
            self.process = subprocess.Popen(
                [
                    str(PROMOTER), "operator", "--namespace", self.environment, "--peering", "",
                    "--host", "127.0.0.1", "--liveness-port", str(free_port()),
                    "--metrics-port", str(free_port()),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
            )  # fmt: skip

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


@dataclass
class Platform:
    api: Any
    remote: GitRemote
    applications: Applications
    tracking: TrackingServer
    operators: dict[str, Operator]
    loops: list[Any]
    timings: dict[str, float] = field(default_factory=dict)
    merge: str = ""  # the merge commit of staging into main

    @property
    def objects(self) -> Any:
        from kubernetes import client

        return client.CustomObjectsApi(self.api)

    def promotion(self, environment: str, name: str = CANDIDATE) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException

        try:
            found: dict[str, Any] = self.objects.get_namespaced_custom_object(
                GROUP, VERSION, environment, PLURAL, name
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return found

    def status(self, environment: str, name: str = CANDIDATE) -> dict[str, Any]:
        return (self.promotion(environment, name) or {}).get("status") or {}

    def settled(
        self,
        environment: str,
        name: str = CANDIDATE,
        timeout: float = 600,
        done: Callable[[dict[str, Any]], bool] = lambda s: (
            s.get("phase") in ("Promoted", "Rejected", "Failed")
        ),
    ) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            status = self.status(environment, name)
            return status if done(status) else None

        try:
            return dict(wait_for(f"{environment}/{name}", check, timeout, *self.loops))
        except TimeoutError:
            status, log = self.status(environment, name), self.operators[environment].tail()
            raise AssertionError(f"{environment}/{name}: {status}\n{log}") from None

    def rollout(self, environment: str) -> dict[str, Any]:
        found: dict[str, Any] = self.objects.get_namespaced_custom_object(
            "argoproj.io", "v1alpha1", environment, "rollouts", ROLLOUT
        )
        return found

    def server(self, environment: str) -> dict[str, Any]:
        containers = self.rollout(environment)["spec"]["template"]["spec"]["containers"]
        return dict(next(c for c in containers if c["name"] == "server"))

    def template_uri(self, environment: str) -> str:
        return str(next(e["value"] for e in self.server(environment)["env"] if e["name"] == MODEL_URI_ENV))

    def registry(self, alias: str = "champion") -> MlflowRegistry:
        return MlflowRegistry(store_client(self.tracking.uri), "test", alias)

    def events(self, environment: str, name: str = CANDIDATE) -> list[Any]:
        from kubernetes import client

        listed: Any = client.CoreV1Api(self.api).list_namespaced_event(
            environment, field_selector=f"involvedObject.name={name}"
        )
        ours = [e for e in listed.items if e.source.component == "promoter-operator"]
        return sorted(ours, key=lambda e: e.metadata.name)

    def push_and_sync(self, environment: str, sha: str) -> float:
        """What the git webhook does after a push, then wait for Argo CD to have synced `sha`."""
        self.applications.refresh(environment)
        return self.applications.wait_synced(environment, sha, timeout=120)


def _scaffold(directory: Path, remote_url: str, tracking: str) -> dict[str, str]:
    """`promoter gitops init`, as a user runs it; every file, path -> text."""
    made = subprocess.run(
        [
            str(PROMOTER), "gitops", "init", str(directory), "--repo-url", remote_url, "--model", MODEL,
            "--image", PRODUCTION_IMAGE, "--tracking-uri", tracking,
        ],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    assert made.returncode == 0, made.stdout + made.stderr
    return {
        str(path.relative_to(directory)): path.read_text() for path in directory.rglob("*") if path.is_file()
    }


def _on_testbed(values_text: str, image: str) -> str:
    """An environment's values with the test bed's differences: no pod runs here, so no webhook
    (nothing would answer the API server) and one replica; the first version served is pinned."""
    values = yaml.safe_load(values_text)
    values["image"]["digest"] = image.split("@", 1)[1]
    values["operator"]["webhook"] = {"enabled": False}
    values["models"] = [{"name": MODEL, "modelUri": f"models:/{MODEL}/1"}]
    values["serving"] = {"replicas": 1}
    return yaml.safe_dump(values, sort_keys=False)


def _application_on_testbed(text: str) -> dict[str, Any]:
    """The scaffold's Application on this one-cluster test bed: the CRDs are the test bed's (other
    modules of the session use them), so neither Application applies them."""
    application: dict[str, Any] = yaml.safe_load(text)
    for source in application["spec"]["sources"]:
        if "helm" in source:
            source["helm"]["skipCrds"] = True
    return application


def _operator_settings(chart: Path, values: Path, environment: str) -> dict[str, str]:
    """PROMOTER_OPERATOR_* as the chart gives them to the environment's operator Deployment."""
    deployment = find(
        render(chart=chart, values_files=(values,), namespace=environment), "Deployment", "promoter-operator"
    )
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return {
        e["name"]: e["value"]
        for e in container.get("env") or []
        if e["name"].startswith("PROMOTER_OPERATOR_") and "value" in e
    }


@pytest.fixture(scope="module")
def platform(
    kube: Any,
    control_plane: Any,
    argocd: Any,
    applications: Applications,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Platform]:
    workdir = tmp_path_factory.mktemp("gitops-flow")
    tracking = start_mlflow_server(workdir / "mlflow")
    answers = ServiceAnswers(kube)
    loops: list[Any] = []
    operators: dict[str, Operator] = {}
    try:
        register_digits_champion(workdir / "registry", tracking.uri)  # version 1, @champion
        remote = GitRemote.create(workdir / "git")
        scaffold = _scaffold(workdir / "scaffold", remote.url, tracking.uri)
        for environment in ENVIRONMENTS:
            name = f"environments/{environment}/values.yaml"
            scaffold[name] = _on_testbed(scaffold[name], PRODUCTION_IMAGE)
        main = remote.commit("main", scaffold, "promoter gitops init")
        staging_values = "environments/staging/values.yaml"
        staging = remote.commit(
            "staging",
            {staging_values: _on_testbed(scaffold[staging_values], STAGING_IMAGE)},
            "staging: build 2",
        )
        for crd in chart_crds():  # the test bed's, as _application_on_testbed says
            create_unless_present(kube, crd)
        started = time.monotonic()
        for environment in ENVIRONMENTS:
            applications.apply(_application_on_testbed(scaffold[f"applications/{environment}.yaml"]))
        applications.wait_synced("staging", staging, timeout=180)
        applications.wait_synced("production", main, timeout=180)
        print(f"both environments synced from git and Healthy in {time.monotonic() - started:.1f} s")

        checkout = workdir / "checkout"
        for path, text in {**scaffold, staging_values: remote.read("staging", staging_values)}.items():
            (checkout / path).parent.mkdir(parents=True, exist_ok=True)
            (checkout / path).write_text(text)
        common = {
            "MLFLOW_TRACKING_URI": tracking.uri,
            "PROMOTER_OPERATOR_SERVICE_URL": answers.url_template,
            "PROMOTER_OPERATOR_RECONCILE_SECONDS": "0.5",
            "PROMOTER_OPERATOR_IMAGE": STAGING_IMAGE,
        }
        for environment in ENVIRONMENTS:
            settings = _operator_settings(
                checkout / "charts" / "promoter",
                checkout / "environments" / environment / "values.yaml",
                environment,
            )
            operators[environment] = Operator(
                environment, control_plane.kubeconfig, workdir, settings | common
            )
            logins = PodLogins(kube, environment, workdir / f"tokens-{environment}")
            loops += [
                ArgoController(kube, environment, workdir, logins),
                LoadTestKubelet(kube, environment, workdir, logins),
            ]
        for loop in loops:
            loop.start()
        for operator in operators.values():
            operator.start()
        yield Platform(kube, remote, applications, tracking, operators, loops)
    finally:
        for operator in operators.values():
            operator.stop()
        for loop in loops:
            loop.stop()
        answers.close()
        stop_tracking_server(tracking)


def _candidate() -> str:
    """The example digits promotion, with a short load test: what a data scientist commits."""
    document = yaml.safe_load((EXAMPLES / "digits" / "promotion.yaml").read_text())
    document["metadata"] = {"name": CANDIDATE}
    document["spec"]["rollout"] = {
        "name": ROLLOUT,
        "loadTest": {"users": 4, "spawnRate": 4, "duration": "3s", "maxP95Ms": 500, "maxErrorRate": 0.01},
    }
    return yaml.safe_dump(document, sort_keys=False)


def _recorded_or_over(status: dict[str, Any]) -> bool:
    """Staging is done once its production record is committed (or it did not promote)."""
    return bool((status.get("record") or {}).get("commit")) or status.get("phase") in ("Rejected", "Failed")


def _seconds_between(status: dict[str, Any], first: str, then: str) -> float:
    entered = {entry["phase"]: datetime.fromisoformat(entry["at"]) for entry in status["history"]}
    return (entered[then] - entered[first]).total_seconds()


# --- staging -------------------------------------------------------------------------------------


def test_a_promotion_committed_on_staging_is_promoted_in_staging_from_that_commit(platform: Platform) -> None:
    commit = platform.remote.commit(
        "staging",
        {f"environments/staging/promotions/{CANDIDATE}.yaml": _candidate()},
        "train a digits candidate",
    )
    platform.push_and_sync("staging", commit)
    status = platform.settled("staging", done=_recorded_or_over)

    assert status["phase"] == "Promoted", status
    assert status["gitCommit"] == commit
    phases = [entry["phase"] for entry in status["history"]]
    assert phases == ["Training", "Evaluating", "Gating", "Deploying", "LoadTesting", "Promoting", "Promoted"]
    assert all(f"[git {commit}]" in event.message for event in platform.events("staging"))
    # staging moves its own alias; production's @champion is untouched
    version = status["modelVersion"]
    assert platform.registry("staging").champion(MODEL) == version == "2"
    assert platform.registry().champion(MODEL) == "1"
    move = platform.registry("staging").alias_history(MODEL)[-1]
    assert (move.alias, move.to_version) == ("staging", "2") and commit in move.why
    # the preview ran the staging build: that image is what the version is proven with
    assert platform.server("staging")["image"] == STAGING_IMAGE
    assert platform.registry().proven_image(MODEL, "2") == STAGING_IMAGE


def test_staging_commits_the_production_record_a_reviewer_can_act_on(platform: Platform) -> None:
    status = platform.status("staging")
    record_commit = status["record"]["commit"]
    assert platform.remote.head("staging") == record_commit
    subject = platform.remote.message(record_commit).splitlines()[0]
    assert subject == f"promote {MODEL} version 2 to production"

    record = yaml.safe_load(platform.remote.read("staging", f"{RECORDS}/{CANDIDATE}.yaml"))
    assert record["spec"]["source"] == {"modelVersion": "2"}  # no second training
    assert record["spec"]["rollout"]["image"] == STAGING_IMAGE  # no second build
    assert record["metadata"]["annotations"]["mlops.promoter.dev/proven-by"] == f"staging/{CANDIDATE}"
    assert f"{RECORDS}/{CANDIDATE}.yaml" not in platform.remote.files("main")  # not in production yet


# --- production ----------------------------------------------------------------------------------


def test_merging_staging_into_main_promotes_exactly_that_version_and_image_in_production(
    platform: Platform,
) -> None:
    versions_before = len(store_client(platform.tracking.uri).search_model_versions(f"name='{MODEL}'"))
    merged_at = time.monotonic()
    platform.merge = platform.remote.merge("staging", "main")
    sync_seconds = platform.push_and_sync("production", platform.merge)
    status = platform.settled("production")
    platform.timings |= {
        "merge to synced": sync_seconds,
        "merge to Promoted": time.monotonic() - merged_at,
        "evaluate and gate": _seconds_between(status, "Evaluating", "Deploying"),
        "preview": _seconds_between(status, "Deploying", "LoadTesting"),
        "load test": _seconds_between(status, "LoadTesting", "Promoting"),
        "promote": _seconds_between(status, "Promoting", "Promoted"),
    }
    print("production, from the merge:", {k: round(v, 1) for k, v in platform.timings.items()})
    if os.environ.get(TIMINGS_ENV):  # benchmarks/gitops.py reads them
        Path(os.environ[TIMINGS_ENV]).write_text(json.dumps(platform.timings))

    assert status["phase"] == "Promoted", status
    assert status["gitCommit"] == platform.merge
    assert [e["phase"] for e in status["history"]] == [
        "Evaluating", "Gating", "Deploying", "LoadTesting", "Promoting", "Promoted"
    ]  # fmt: skip
    assert platform.registry().champion(MODEL) == "2"
    assert (
        len(store_client(platform.tracking.uri).search_model_versions(f"name='{MODEL}'")) == versions_before
    )
    assert platform.server("production")["image"] == STAGING_IMAGE
    assert platform.template_uri("production") == f"models:/{MODEL}/2"
    move = platform.registry().alias_history(MODEL)[-1]
    assert (move.alias, move.from_version, move.to_version) == ("champion", "1", "2")
    assert platform.merge in move.why
    assert all(f"[git {platform.merge}]" in event.message for event in platform.events("production"))
    # Argo CD leaves what the operator owns alone: still Synced, the Rollout still on version 2
    platform.applications.refresh("production")
    platform.applications.wait_synced("production", platform.merge)
    assert platform.template_uri("production") == f"models:/{MODEL}/2"


def test_a_promotion_applied_by_hand_in_production_is_refused_and_says_why(platform: Platform) -> None:
    document = yaml.safe_load(platform.remote.read("main", f"{RECORDS}/{CANDIDATE}.yaml"))
    document["metadata"] = {"name": "digits-by-hand"}
    platform.objects.create_namespaced_custom_object(GROUP, VERSION, "production", PLURAL, document)
    status = platform.settled("production", "digits-by-hand", timeout=60)

    assert (status["phase"], status["reason"]) == ("Failed", "NotFromGit"), status
    assert "applied by hand" in status["message"] and "argocd/production" in status["message"]
    assert platform.template_uri("production") == f"models:/{MODEL}/2"  # nothing deployed
    platform.objects.delete_namespaced_custom_object(GROUP, VERSION, "production", PLURAL, "digits-by-hand")


def test_a_hand_edit_of_a_synced_promotion_is_undone_by_self_heal(platform: Platform) -> None:
    patch = {"metadata": {"labels": {"mlops.promoter.dev/model": "someone-else"}}}
    platform.objects.patch_namespaced_custom_object(GROUP, VERSION, "production", PLURAL, CANDIDATE, patch)

    def healed() -> bool:
        labels = (platform.promotion("production") or {}).get("metadata", {}).get("labels") or {}
        return labels.get("mlops.promoter.dev/model") == MODEL

    wait_for("Argo CD's self-heal", healed, 60)


def test_a_record_pinning_another_digest_or_an_unregistered_version_is_refused_in_production(
    platform: Platform,
) -> None:
    record = yaml.safe_load(platform.remote.read("main", f"{RECORDS}/{CANDIDATE}.yaml"))
    other_digest = {**record, "metadata": {"name": "digits-other-digest"}}
    other_digest["spec"] = {**record["spec"], "rollout": {**record["spec"]["rollout"], "image": OTHER_IMAGE}}
    unregistered = {**record, "metadata": {"name": "digits-unregistered"}}
    unregistered["spec"] = {**record["spec"], "source": {"modelVersion": "99"}}
    commit = platform.remote.commit(
        "main",
        {
            f"{RECORDS}/digits-other-digest.yaml": yaml.safe_dump(other_digest),
            f"{RECORDS}/digits-unregistered.yaml": yaml.safe_dump(unregistered),
        },
        "hand-edited records",
    )
    platform.push_and_sync("production", commit)

    digest = platform.settled("production", "digits-other-digest", timeout=120)
    assert (digest["phase"], digest["reason"]) == ("Failed", "ImageNotProven"), digest
    assert STAGING_IMAGE in digest["message"]
    version = platform.settled("production", "digits-unregistered", timeout=120)
    assert version["phase"] == "Failed" and version["reason"] in ("ImageNotProven", "UnknownModelVersion"), (
        version
    )
    assert platform.template_uri("production") == f"models:/{MODEL}/2"
    assert platform.server("production")["image"] == STAGING_IMAGE
    platform.remote.commit(  # Argo CD prunes them; Failed, they leave nothing to undo
        "main",
        {f"{RECORDS}/digits-other-digest.yaml": None, f"{RECORDS}/digits-unregistered.yaml": None},
        "drop the hand-edited records",
    )


def test_reverting_the_merge_rolls_production_back_to_the_previous_champion_kept_hot(
    platform: Platform,
) -> None:
    hot = _ready_replica_sets(platform, "production")
    revert = platform.remote.revert(platform.merge, "main")
    platform.applications.refresh("production")

    def gone() -> bool:
        return platform.promotion("production") is None

    wait_for("the reverted promotion to be rolled back and pruned", gone, 180, *platform.loops)
    assert platform.registry().champion(MODEL) == "1"
    assert platform.template_uri("production") == f"models:/{MODEL}/1"
    assert platform.server("production")["image"] == PRODUCTION_IMAGE  # the image version 1 ran in
    active = _active_replica_set(platform, "production")
    assert active in hot  # the same ReplicaSet, still running: no cold start
    moves = platform.registry().alias_history(MODEL)
    assert (moves[-1].alias, moves[-1].from_version, moves[-1].to_version) == ("champion", "2", "1")
    assert "git revert" in moves[-1].why and revert in moves[-1].why
    platform.applications.wait_synced("production", revert, timeout=120)


def _ready_replica_sets(platform: Platform, environment: str) -> set[str]:
    from kubernetes import client

    listed: Any = client.AppsV1Api(platform.api).list_namespaced_replica_set(environment)
    return {str(rs.metadata.name) for rs in listed.items if rs.status.ready_replicas}


def _active_replica_set(platform: Platform, environment: str) -> str:
    from kubernetes import client

    service: Any = client.CoreV1Api(platform.api).read_namespaced_service(f"{MODEL}-active", environment)
    pod_hash = service.spec.selector["rollouts-pod-template-hash"]
    return f"{ROLLOUT}-{pod_hash}"
