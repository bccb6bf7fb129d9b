"""The operator's RBAC (manifests/operator/rbac.yaml), judged by the real API server: requests made
while impersonating the operator's ServiceAccount are allowed for its job and refused beyond it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import yaml

from promoter.crd import GROUP, PLURAL, VERSION

from .conftest import EXAMPLES, REPO
from .kube import impersonating

OPERATOR = "system:serviceaccount:promoter:promoter-operator"
NAMESPACE = "promoter"


@pytest.fixture(scope="module")
def operator(kube: Any) -> Any:
    """Clients for the admin and for the operator, with the RBAC applied and one promotion created."""
    from kubernetes import client, utils
    from kubernetes.client.exceptions import ApiException

    try:
        utils.create_from_yaml(kube, str(REPO / "manifests" / "operator" / "rbac.yaml"))  # type: ignore[no-untyped-call]
    except utils.FailToCreateError as exc:  # a second module run on the same server: already there
        if not all(isinstance(e, ApiException) and e.status == 409 for e in exc.api_exceptions):
            raise
    document = yaml.safe_load((EXAMPLES / "digits" / "promotion.yaml").read_text())
    document["metadata"]["name"] = "rbac-check"
    objects: Any = client.CustomObjectsApi(kube)
    objects.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, document)
    yield impersonating(kube, OPERATOR)
    objects.delete_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, "rbac-check")


def _status_code(request: Callable[[], object]) -> int:
    from kubernetes.client.exceptions import ApiException

    try:
        request()
    except ApiException as exc:
        return int(exc.status)
    return 200


def _event(namespace: str) -> dict[str, Any]:
    return {
        "metadata": {"generateName": "rbac-check-", "namespace": namespace},
        "involvedObject": {"kind": "ModelPromotion", "name": "rbac-check", "namespace": namespace},
        "reason": "Check",
        "message": "impersonated",
        "type": "Normal",
    }


def _job() -> dict[str, Any]:
    container = {"name": "locust", "image": "promoter:test", "command": ["true"]}
    return {
        "metadata": {"name": "rbac-check-loadtest"},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [container]}}},
    }


class Clients:
    """The API groups an action needs, all speaking as the impersonated operator."""

    def __init__(self, api: Any) -> None:
        from kubernetes import client

        self.objects: Any = client.CustomObjectsApi(api)
        self.core: Any = client.CoreV1Api(api)
        self.batch: Any = client.BatchV1Api(api)
        self.rbac: Any = client.RbacAuthorizationV1Api(api)
        self.apps: Any = client.AppsV1Api(api)


def _promotion() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((EXAMPLES / "digits" / "promotion.yaml").read_text())
    return document


_ESCALATION = {
    "metadata": {"name": "escalate"},
    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
    "subjects": [{"kind": "ServiceAccount", "name": "promoter-operator", "namespace": NAMESPACE}],
}

ALLOWED: dict[str, Callable[[Clients], object]] = {
    "list promotions": lambda c: c.objects.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL),
    "patch a promotion's status": lambda c: c.objects.patch_namespaced_custom_object_status(
        GROUP, VERSION, NAMESPACE, PLURAL, "rbac-check", {"status": {"phase": "Training"}}
    ),
    "record an event": lambda c: c.core.create_namespaced_event(NAMESPACE, _event(NAMESPACE), dry_run="All"),
    "read services": lambda c: c.core.list_namespaced_service(NAMESPACE),
    "start a load-test job": lambda c: c.batch.create_namespaced_job(NAMESPACE, _job(), dry_run="All"),
    "delete a deleted promotion's jobs": lambda c: c.batch.delete_collection_namespaced_job(
        NAMESPACE, label_selector="mlops.promoter.dev/promotion=rbac-check", dry_run="All"
    ),
}

REFUSED: dict[str, Callable[[Clients], object]] = {
    "read secrets": lambda c: c.core.list_namespaced_secret(NAMESPACE),
    "create promotions": lambda c: c.objects.create_namespaced_custom_object(
        GROUP, VERSION, NAMESPACE, PLURAL, _promotion(), dry_run="All"
    ),
    "delete promotions": lambda c: c.objects.delete_namespaced_custom_object(
        GROUP, VERSION, NAMESPACE, PLURAL, "rbac-check", dry_run="All"
    ),
    "promotions in another namespace": lambda c: c.objects.list_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL
    ),
    "events in another namespace": lambda c: c.core.create_namespaced_event(
        "default", _event("default"), dry_run="All"
    ),
    "delete pods": lambda c: c.core.delete_collection_namespaced_pod(NAMESPACE, dry_run="All"),
    "change deployments": lambda c: c.apps.list_namespaced_deployment(NAMESPACE),
    "grant itself cluster-admin": lambda c: c.rbac.create_cluster_role_binding(_ESCALATION, dry_run="All"),
}


@pytest.mark.parametrize("action", list(ALLOWED))
def test_the_operator_may_do_its_job(operator: Any, action: str) -> None:
    assert _status_code(lambda: ALLOWED[action](Clients(operator))) == 200


@pytest.mark.parametrize("action", list(REFUSED))
def test_the_operator_is_refused_what_it_does_not_need(operator: Any, action: str) -> None:
    assert _status_code(lambda: REFUSED[action](Clients(operator))) == 403


@pytest.mark.parametrize(
    ("verb", "resource", "subresource", "namespace", "allowed"),
    [
        ("create", "workflows", "", NAMESPACE, True),
        ("delete", "workflows", "", NAMESPACE, True),
        ("deletecollection", "workflows", "", NAMESPACE, True),
        ("patch", "rollouts", "", NAMESPACE, True),
        ("patch", "rollouts", "status", NAMESPACE, True),
        ("delete", "rollouts", "", NAMESPACE, False),
        ("create", "workflows", "", "default", False),
        ("create", "workflowtemplates", "", NAMESPACE, False),
    ],
)
def test_argo_permissions_as_the_api_server_authorizes_them(
    kube: Any, operator: Any, verb: str, resource: str, subresource: str, namespace: str, allowed: bool
) -> None:
    """Asked of the authorizer directly (SubjectAccessReview): nothing is created or deleted."""
    from kubernetes import client

    review: Any = {
        "spec": {
            "user": OPERATOR,
            "resourceAttributes": {
                "group": "argoproj.io",
                "resource": resource,
                "subresource": subresource,
                "verb": verb,
                "namespace": namespace,
            },
        }
    }
    answer: Any = client.AuthorizationV1Api(kube).create_subject_access_review(review)
    assert answer.status.allowed is allowed
