"""Argo CD as the only way into an environment: where a promotion came from, and the git commit.

Argo CD v3 marks what it applies with the annotation `argocd.argoproj.io/tracking-id`
(`<application>:<group>/<kind>:<namespace>/<name>`), and lists it in the Application's
`status.resources`. The annotation alone is not proof (anyone may write it); the Application's status
is Argo CD's own, and a promotion it lists but git does not hold is pruned by Argo CD itself. So a
promotion is traced when both agree; it is refused when it carries no annotation, or another
Application's; and it waits while Argo CD has not yet written its status (it lags its own writes).
"""

from __future__ import annotations

from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from promoter.crd import GROUP, PLURAL, VERSION
from promoter.operator.cluster import PromotionRef, not_found
from promoter.promotion.engine import ProvenanceObservation
from promoter.promotion.spec import KIND, ModelPromotion

TRACKING_ANNOTATION = "argocd.argoproj.io/tracking-id"
APPLICATIONS = ("argoproj.io", "v1alpha1", "applications")


def application_revision(application: dict[str, Any]) -> str | None:
    """The commit the Application's last comparison read."""
    return _revision((application.get("status") or {}).get("sync") or {})


def _revision(sync: dict[str, Any]) -> str | None:
    """A sync part's commit (a comparison's, or an operation's): `revision`, or for a multi-source
    Application (`revisions`, one per source) the one they all share."""
    if sync.get("revision"):
        return str(sync["revision"])
    revisions = {str(r) for r in sync.get("revisions") or [] if r}
    return revisions.pop() if len(revisions) == 1 else None


class ArgoCdProvenance:
    """The `Provenance` port: traces one promotion to the Application that synced it."""

    def __init__(self, api: client.ApiClient, ref: PromotionRef, application: str, namespace: str) -> None:
        self.objects: Any = client.CustomObjectsApi(api)
        self.ref, self.application, self.namespace = ref, application, namespace

    @property
    def where(self) -> str:
        return f"Argo CD Application {self.namespace}/{self.application}"

    def application_object(self) -> dict[str, Any] | None:
        group, version, plural = APPLICATIONS
        try:
            found: dict[str, Any] = self.objects.get_namespaced_custom_object(
                group, version, self.namespace, plural, self.application
            )
        except ApiException as exc:
            if not_found(exc):
                return None
            raise
        return found

    def trace(self, promotion: ModelPromotion) -> ProvenanceObservation:
        resource = self.objects.get_namespaced_custom_object(
            GROUP, VERSION, self.ref.namespace, PLURAL, self.ref.name
        )
        tracking = ((resource.get("metadata") or {}).get("annotations") or {}).get(TRACKING_ANNOTATION)
        if not tracking:
            return ProvenanceObservation(
                None,
                refusal=f"not synced from git: promotions here come only from git through {self.where} "
                f"(this one has no {TRACKING_ANNOTATION} annotation: it was applied by hand). Commit it "
                "to the branch that Application tracks instead",
            )
        owner = str(tracking).split(":", 1)[0]
        if owner != self.application:
            return ProvenanceObservation(
                None,
                refusal=f"synced by Argo CD Application {owner}; this environment acts only on {self.where}",
            )
        application = self.application_object()
        if application is None:
            return ProvenanceObservation(None, waiting=f"{self.where} not found")
        listed = any(
            item.get("group") == GROUP
            and item.get("kind") == KIND
            and item.get("namespace") == self.ref.namespace
            and item.get("name") == self.ref.name
            for item in (application.get("status") or {}).get("resources") or []
        )
        revision = application_revision(application)
        if not listed or revision is None:
            return ProvenanceObservation(None, waiting=f"waiting for {self.where} to list this promotion")
        return ProvenanceObservation(revision)

    def current_revision(self) -> str | None:
        """The commit Argo CD is syncing now (its latest operation's), else the last compared: what
        a prune it makes was decided from."""
        application = self.application_object()
        if application is None:
            return None
        operation = ((application.get("status") or {}).get("operationState") or {}).get("operation") or {}
        return _revision(operation.get("sync") or {}) or application_revision(application)
