"""The GitOps test bed itself, before anything of promoter's runs on it: git pushes reach the cluster
through a real Argo CD.

Real: the API server (dev/testbed.py, with the ModelPromotion CRD), Argo CD v3.6.1's
application-controller and repo-server (built from Go modules) with their redis, helm v4 on the
repo-server's PATH, and git (a bare repository on this machine, `file://`, fetched by the
repo-server as from any remote). Stand-ins: the Git webhook is the refresh annotation
(`Applications.refresh`, what argocd-server does on a push), and the two clusters are two namespaces
of one API server. No operator runs: a ModelPromotion is only an object here.

Each Application is multi-source like the ones `promoter gitops init` writes: a helm chart whose
values come from a file of the environment, and a plain directory of records. These tests use
their own names (`smoke-*`), so the GitOps end-to-end test keeps `staging` and `production`."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from promoter.crd import GROUP, PLURAL, VERSION

from .conftest import EXAMPLES
from .gitops import Applications, GitRemote, application

pytestmark = pytest.mark.slow

ENVIRONMENTS = ("staging", "production")
BRANCHES = {"staging": "staging", "production": "main"}
LABEL = "smoke.promoter.dev/source"
PROMOTION = "digits-smoke"
SETTINGS = "smoke-settings"  # from the chart
RECORD = "smoke-record"  # from the directory
CHART = {
    "smoke/chart/Chart.yaml": "apiVersion: v2\nname: smoke\nversion: 0.1.0\n",
    "smoke/chart/templates/settings.yaml": (
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n"
        f"  name: {SETTINGS}\n"
        "data:\n  environment: {{ .Values.environment | quote }}\n"
    ),
    "smoke/promotions/.gitkeep": "",
    **{f"smoke/environments/{env}/values.yaml": f"environment: {env}\n" for env in ENVIRONMENTS},
}


def namespace(environment: str) -> str:
    return f"gitops-smoke-{environment}"


def app_name(environment: str) -> str:
    return f"smoke-{environment}"


def smoke_application(environment: str, url: str) -> dict[str, Any]:
    sources = [
        {
            "path": "smoke/chart",
            "helm": {
                "releaseName": "smoke",
                # outside the chart's directory, inside the repository: as `promoter gitops init` does
                "valueFiles": [f"../environments/{environment}/values.yaml"],
            },
        },
        {"path": "smoke/promotions", "directory": {}},
    ]
    return application(app_name(environment), url, BRANCHES[environment], sources, namespace(environment))


def promotion_document() -> str:
    """examples/digits/promotion.yaml under this module's name."""
    document = yaml.safe_load((EXAMPLES / "digits" / "promotion.yaml").read_text())
    document["metadata"] = {"name": PROMOTION}
    return yaml.safe_dump(document, sort_keys=False)


RECORD_FILES = {
    "smoke/promotions/record.yaml": yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": RECORD, "labels": {LABEL: "git"}},
            "data": {"promotion": PROMOTION},
        }
    ),
    f"smoke/promotions/{PROMOTION}.yaml": promotion_document(),
}


@dataclass
class Smoke:
    remote: GitRemote
    applications: Applications
    core: Any
    objects: Any
    merge: str = ""

    def sync(self, environment: str, sha: str) -> float:
        """Refresh (the webhook) and wait until `environment`'s Application has synced `sha`."""
        self.applications.refresh(app_name(environment))
        return self.applications.wait_synced(app_name(environment), sha)

    def record(self, environment: str) -> Any:
        """The directory's ConfigMap in `environment`, or None."""
        return _or_none(lambda: self.core.read_namespaced_config_map(RECORD, namespace(environment)))

    def promotion(self, environment: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = _or_none(
            lambda: self.objects.get_namespaced_custom_object(
                GROUP, VERSION, namespace(environment), PLURAL, PROMOTION
            )
        )
        return found


def _or_none(read: Callable[[], Any]) -> Any:
    from kubernetes.client.exceptions import ApiException

    try:
        return read()
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _until(what: str, check: Callable[[], bool], timeout: float = 30) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.25)
    return time.monotonic() - started


@pytest.fixture(scope="module")
def smoke(applications: Applications, kube: Any, tmp_path_factory: pytest.TempPathFactory) -> Smoke:
    """A remote whose `main` (and `staging`, branched from it) hold the chart, each environment's
    values and an empty records directory, and both Applications synced to it."""
    from kubernetes import client

    remote = GitRemote.create(tmp_path_factory.mktemp("gitops-smoke"), CHART)
    remote.commit("staging", {"smoke/README.md": "staging's own change\n"}, "open staging")
    smoke = Smoke(remote, applications, client.CoreV1Api(kube), client.CustomObjectsApi(kube))
    for environment in ENVIRONMENTS:
        started = time.monotonic()
        applications.apply(smoke_application(environment, remote.url))
        applications.wait_synced(app_name(environment), remote.head(BRANCHES[environment]))
        print(f"{app_name(environment)}: first sync {time.monotonic() - started:.1f} s after apply")
    return smoke


def test_a_commit_on_staging_syncs_into_staging_only(smoke: Smoke) -> None:
    sha = smoke.remote.commit("staging", RECORD_FILES, "promote digits-smoke in staging")
    seconds = smoke.sync("staging", sha)
    print(f"staging: push to synced {seconds:.1f} s")

    assert smoke.record("staging").data == {"promotion": PROMOTION}
    promotion = smoke.promotion("staging")
    assert promotion is not None
    in_git = yaml.safe_load(RECORD_FILES[f"smoke/promotions/{PROMOTION}.yaml"])["spec"]
    # the CRD's defaults add fields (`enforce`): what git says must be there as it says
    assert {key: promotion["spec"][key] for key in ("model", "source")} == {
        key: in_git[key] for key in ("model", "source")
    }
    settings = smoke.core.read_namespaced_config_map(SETTINGS, namespace("staging"))
    assert settings.data == {"environment": "staging"}  # the chart, with staging's values file
    # main did not move: production keeps what it had
    assert smoke.record("production") is None
    assert smoke.promotion("production") is None


def test_merging_staging_into_main_syncs_production_within_a_minute(smoke: Smoke) -> None:
    started = time.monotonic()
    smoke.merge = smoke.remote.merge("staging", "main", "Merge staging: promote digits-smoke")
    smoke.sync("production", smoke.merge)
    seconds = time.monotonic() - started
    print(f"production: merge pushed to synced {seconds:.1f} s")

    assert seconds < 60
    assert smoke.record("production").data == {"promotion": PROMOTION}
    assert smoke.promotion("production") is not None
    settings = smoke.core.read_namespaced_config_map(SETTINGS, namespace("production"))
    assert settings.data == {"environment": "production"}


def test_a_hand_edit_is_undone_by_self_heal(smoke: Smoke) -> None:
    edit = {"metadata": {"labels": {LABEL: "hand-edited"}}}
    smoke.core.patch_namespaced_config_map(RECORD, namespace("production"), edit)
    seconds = _until(
        "self-heal to restore the label git says",
        lambda: smoke.record("production").metadata.labels.get(LABEL) == "git",
    )
    print(f"production: hand edit undone in {seconds:.1f} s")


def test_reverting_the_merge_prunes_what_it_added(smoke: Smoke) -> None:
    assert smoke.merge, "runs after the merge test"
    sha = smoke.remote.revert(smoke.merge, "main")
    assert not {f"smoke/promotions/{PROMOTION}.yaml", "smoke/promotions/record.yaml"} & set(
        smoke.remote.files("main")
    )
    seconds = smoke.sync("production", sha)

    # pruning deletes in the background: the sync can succeed a moment before they are gone
    gone = _until(
        "the reverted objects to be pruned",
        lambda: smoke.record("production") is None and smoke.promotion("production") is None,
    )
    print(f"production: revert pushed to synced {seconds:.1f} s, pruned {gone:.1f} s later")
    settings = smoke.core.read_namespaced_config_map(SETTINGS, namespace("production"))
    assert settings.data == {"environment": "production"}  # what the merge did not add stays
    assert smoke.record("staging") is not None  # staging's branch still has them
    assert smoke.promotion("staging") is not None
