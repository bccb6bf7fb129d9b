"""The operator's RBAC, as the chart (charts/promoter) renders it, judged by the real API server:
requests made while impersonating the operator's ServiceAccount are allowed for its job and refused
beyond it; and people's: an editor of promotions cannot approve them, an approver's approval names
the approver."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import yaml

from promoter.crd import GROUP, PLURAL, VERSION

from .admission_webhook import Webhook
from .chart import render
from .conftest import EXAMPLES
from .kube import impersonating

OPERATOR = "system:serviceaccount:promoter:promoter-operator"
NAMESPACE = "promoter"
RBAC_KINDS = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}


@pytest.fixture(scope="module")
def operator(kube: Any) -> Any:
    """Clients for the admin and for the operator, with the RBAC applied and one promotion created."""
    from kubernetes import client, utils
    from kubernetes.client.exceptions import ApiException

    core: Any = client.CoreV1Api(kube)
    if not core.list_namespace(field_selector=f"metadata.name={NAMESPACE}").items:
        core.create_namespace({"metadata": {"name": NAMESPACE}})
    for document in render(release="promoter", namespace=NAMESPACE):
        if document["kind"] not in RBAC_KINDS:
            continue
        try:
            utils.create_from_dict(kube, document)  # type: ignore[no-untyped-call]
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
        self.authorization: Any = client.AuthorizationV1Api(api)


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
    "ask whether a user may approve (admission)": lambda c: c.authorization.create_subject_access_review(
        {
            "spec": {
                "user": "alice",
                "resourceAttributes": {"group": GROUP, "resource": PLURAL, "verb": "approve"},
            }
        }
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


# --- people: approving is a verb of its own, and the record names who the API server authenticated

EDITOR, APPROVER = "eve", "alice"


@pytest.fixture(scope="module")
def people(kube: Any, operator: Any, admission_webhook: Webhook) -> Webhook:
    """EDITOR holds promoter-editor and APPROVER promoter-approver in NAMESPACE; the webhook runs."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    rbac: Any = client.RbacAuthorizationV1Api(kube)
    for user, role in ((EDITOR, "promoter-editor"), (APPROVER, "promoter-approver")):
        binding = {
            "metadata": {"name": f"{role}-{user}"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
        }
        try:
            rbac.create_namespaced_role_binding(NAMESPACE, binding)
        except ApiException as exc:
            if exc.status != 409:
                raise
    return admission_webhook


def _annotations(kube: Any, name: str) -> dict[str, str]:
    from kubernetes import client

    objects: Any = client.CustomObjectsApi(kube)
    found = objects.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, name)
    return dict(found["metadata"].get("annotations") or {})


def _fresh_promotion(kube: Any, name: str) -> str:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    objects: Any = client.CustomObjectsApi(kube)
    try:
        objects.delete_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, name)
    except ApiException as exc:
        if exc.status != 404:
            raise
    document = _promotion()
    document["metadata"]["name"] = name
    objects.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, document)
    return name


DECISIONS = [
    ("approve", "mlops.promoter.dev/approve", "mlops.promoter.dev/approved-by"),
    ("rollback", "mlops.promoter.dev/rollback", "mlops.promoter.dev/rollback-requested-by"),
]


@pytest.mark.parametrize(("verb", "request_annotation", "record"), DECISIONS, ids=[d[0] for d in DECISIONS])
def test_an_editor_cannot_approve_or_roll_back(
    kube: Any, people: Webhook, verb: str, request_annotation: str, record: str
) -> None:
    name = _fresh_promotion(kube, f"editor-{verb}")
    relabelled = people.kubectl("-n", NAMESPACE, "--as", EDITOR, "label", "mp", name, "team=vision")
    assert relabelled.returncode == 0, relabelled.stderr  # an editor edits...
    asked = people.kubectl(
        "-n", NAMESPACE, "--as", EDITOR, "annotate", "mp", name, f"{request_annotation}=yes"
    )
    assert asked.returncode != 0  # ...but does not decide
    assert f"{EDITOR} may not {verb}" in asked.stderr and f"verb '{verb}'" in asked.stderr, asked.stderr
    annotations = _annotations(kube, name)
    assert request_annotation not in annotations and record not in annotations


@pytest.mark.parametrize(("verb", "request_annotation", "record"), DECISIONS, ids=[d[0] for d in DECISIONS])
def test_an_approvers_decision_is_recorded_with_the_name_the_api_server_authenticated(
    kube: Any, people: Webhook, verb: str, request_annotation: str, record: str
) -> None:
    name = _fresh_promotion(kube, f"approver-{verb}")
    asked = people.kubectl(
        "-n", NAMESPACE, "--as", APPROVER, "annotate", "mp", name, f"{request_annotation}=yes"
    )
    assert asked.returncode == 0, asked.stderr
    annotations = _annotations(kube, name)
    assert annotations[record] == APPROVER
    assert request_annotation not in annotations  # the request is consumed: only the record stays
    again = people.kubectl("-n", NAMESPACE, "annotate", "mp", name, f"{request_annotation}=yes")
    assert again.returncode == 0 and f"by {APPROVER}: the record is kept" in again.stderr
    assert _annotations(kube, name)[record] == APPROVER


@pytest.mark.parametrize("user", [APPROVER, "admin"])
@pytest.mark.parametrize(("verb", "request_annotation", "record"), DECISIONS, ids=[d[0] for d in DECISIONS])
def test_nobody_writes_or_edits_a_record_by_hand(
    kube: Any, people: Webhook, user: str, verb: str, request_annotation: str, record: str
) -> None:
    """Not an approver, not even the cluster admin (the test bed's `admin`, in system:masters)."""
    name = _fresh_promotion(kube, f"forged-{verb}")
    as_user = ["--as", user] if user != "admin" else []
    forged = people.kubectl("-n", NAMESPACE, *as_user, "annotate", "mp", name, f"{record}={user}")
    assert forged.returncode != 0
    assert f"set {request_annotation} instead" in forged.stderr, forged.stderr
    assert record not in _annotations(kube, name)
    recorded = people.kubectl(
        "-n", NAMESPACE, "--as", APPROVER, "annotate", "mp", name, f"{request_annotation}=yes"
    )
    assert recorded.returncode == 0, recorded.stderr
    removed = people.kubectl("-n", NAMESPACE, *as_user, "annotate", "mp", name, f"{record}-")
    assert removed.returncode != 0 and _annotations(kube, name)[record] == APPROVER
