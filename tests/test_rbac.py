"""The operator's RBAC (manifests/operator/rbac.yaml), judged by the real API server: requests made
while impersonating the operator's ServiceAccount are allowed for its job and refused beyond it."""

from __future__ import annotations

import copy
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


def _allowed(operator: Any) -> dict[str, Callable[[], object]]:
    from kubernetes import client

    objects: Any = client.CustomObjectsApi(operator)
    core: Any = client.CoreV1Api(operator)
    batch: Any = client.BatchV1Api(operator)
    status = {"status": {"phase": "Training"}}
    return {
        "list promotions": lambda: objects.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL),
        "patch a promotion's status": lambda: objects.patch_namespaced_custom_object_status(
            GROUP, VERSION, NAMESPACE, PLURAL, "rbac-check", status
        ),
        "record an event": lambda: core.create_namespaced_event(NAMESPACE, _event(NAMESPACE), dry_run="All"),
        "read services": lambda: core.list_namespaced_service(NAMESPACE),
        "start a load-test job": lambda: batch.create_namespaced_job(NAMESPACE, _job(), dry_run="All"),
        "delete a deleted promotion's jobs": lambda: batch.delete_collection_namespaced_job(
            NAMESPACE, label_selector="mlops.promoter.dev/promotion=rbac-check", dry_run="All"
        ),
    }


def _refused(operator: Any) -> dict[str, Callable[[], object]]:
    from kubernetes import client

    objects: Any = client.CustomObjectsApi(operator)
    core: Any = client.CoreV1Api(operator)
    rbac: Any = client.RbacAuthorizationV1Api(operator)
    apps: Any = client.AppsV1Api(operator)
    document = yaml.safe_load((EXAMPLES / "digits" / "promotion.yaml").read_text())
    binding = {
        "metadata": {"name": "escalate"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": "promoter-operator", "namespace": NAMESPACE}],
    }
    return {
        "read secrets": lambda: core.list_namespaced_secret(NAMESPACE),
        "create promotions": lambda: objects.create_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, PLURAL, copy.deepcopy(document), dry_run="All"
        ),
        "delete promotions": lambda: objects.delete_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, PLURAL, "rbac-check", dry_run="All"
        ),
        "promotions in another namespace": lambda: objects.list_namespaced_custom_object(
            GROUP, VERSION, "default", PLURAL
        ),
        "events in another namespace": lambda: core.create_namespaced_event(
            "default", _event("default"), dry_run="All"
        ),
        "delete pods": lambda: core.delete_collection_namespaced_pod(NAMESPACE, dry_run="All"),
        "change deployments": lambda: apps.list_namespaced_deployment(NAMESPACE),
        "grant itself cluster-admin": lambda: rbac.create_cluster_role_binding(binding, dry_run="All"),
    }


@pytest.mark.parametrize(
    "action",
    [
        "list promotions",
        "patch a promotion's status",
        "record an event",
        "read services",
        "start a load-test job",
        "delete a deleted promotion's jobs",
    ],
)
def test_the_operator_may_do_its_job(operator: Any, action: str) -> None:
    assert _status_code(_allowed(operator)[action]) == 200


@pytest.mark.parametrize(
    "action",
    [
        "read secrets",
        "create promotions",
        "delete promotions",
        "promotions in another namespace",
        "events in another namespace",
        "delete pods",
        "change deployments",
        "grant itself cluster-admin",
    ],
)
def test_the_operator_is_refused_what_it_does_not_need(operator: Any, action: str) -> None:
    assert _status_code(_refused(operator)[action]) == 403


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
