"""A ModelPromotion object as the driver's status store: read fresh, written before any action.

The status is written with the resourceVersion it was read at, so a second writer (a replica that
should not be acting, or a person editing the status) makes the write fail instead of being lost.
Humans approve or ask for a rollback with annotations; the admission webhook (admission.py) writes
the record annotations below with the name the API server authenticated. They are folded into the
status on load, so the engine sees them exactly as it sees `promoter approve` locally.
"""

from __future__ import annotations

from typing import Any

from kubernetes import client

from promoter.crd import GROUP, PLURAL, VERSION
from promoter.operator.cluster import PromotionRef
from promoter.promotion.spec import ModelPromotion, parse_promotion
from promoter.promotion.status import PromotionStatus
from promoter.validation import validate_promotion

# What a user sets to ask (the webhook checks the custom RBAC verb and replaces it with the record)...
APPROVE_ANNOTATION = "mlops.promoter.dev/approve"
ROLLBACK_REQUEST_ANNOTATION = "mlops.promoter.dev/rollback"
# ...and the record the operator reads: written by the webhook only, never by hand.
APPROVED_BY_ANNOTATION = "mlops.promoter.dev/approved-by"
ROLLBACK_ANNOTATION = "mlops.promoter.dev/rollback-requested-by"
# The operator's own bookkeeping: how many history entries have been logged and posted as Events.
EVENTS_ANNOTATION = "promoter.kopf.dev/events-recorded"


def promotion_document(resource: dict[str, Any]) -> dict[str, Any]:
    """What the spec model reads of a stored object: what the user wrote, without the API
    server's bookkeeping (uid, managedFields, status)."""
    metadata = resource.get("metadata") or {}
    return {
        "apiVersion": resource.get("apiVersion"),
        "kind": resource.get("kind"),
        "metadata": {"name": metadata.get("name"), "namespace": metadata.get("namespace")},
        "spec": resource.get("spec"),
    }


def origin_of(resource: dict[str, Any]) -> str:
    """NAMESPACE/NAME, as error messages name a promotion."""
    metadata = resource.get("metadata") or {}
    return f"{metadata.get('namespace')}/{metadata.get('name') or metadata.get('generateName')}"


def promotion_of(resource: dict[str, Any]) -> ModelPromotion:
    """The spec as the engine knows it (raises SpecError naming each bad field).

    A promotion that has not started yet gets the whole of `promoter.validation`, so a bad one fails
    (InvalidSpec) before a Workflow is created. One under way was checked when it started and is only
    parsed: what it pinned (a revision, a data version) may since have moved on with a new operator
    image, and failing it half-way would strand its preview."""
    promotion = parse_promotion(promotion_document(resource), origin=origin_of(resource))
    if status_of(resource).phase != "Pending":
        return promotion
    return validate_promotion(promotion, origin=origin_of(resource))


def status_of(resource: dict[str, Any]) -> PromotionStatus:
    status = PromotionStatus.model_validate(resource.get("status") or {})
    annotations = (resource.get("metadata") or {}).get("annotations") or {}
    approver = annotations.get(APPROVED_BY_ANNOTATION)
    if approver and status.phase == "AwaitingApproval" and status.approved_by is None:
        status.approved_by = approver
    requester = annotations.get(ROLLBACK_ANNOTATION)
    if requester and status.phase == "Promoted" and status.rollback_requested_by is None:
        status.rollback_requested_by = requester
    return status


class PromotionResource:
    def __init__(self, api: client.ApiClient, ref: PromotionRef) -> None:
        self.objects: Any = client.CustomObjectsApi(api)
        self.ref = ref
        self.current: dict[str, Any] | None = None  # as last read or written, this round

    @property
    def resource_version(self) -> str | None:
        return None if self.current is None else str(self.current["metadata"]["resourceVersion"])

    @property
    def events_recorded(self) -> int:
        annotations = (self.current or {}).get("metadata", {}).get("annotations") or {}
        return int(annotations.get(EVENTS_ANNOTATION, 0))

    def read(self) -> dict[str, Any]:
        self.current = self.objects.get_namespaced_custom_object(
            GROUP, VERSION, self.ref.namespace, PLURAL, self.ref.name
        )
        assert self.current is not None
        return self.current

    def load(self) -> PromotionStatus:
        """The status as read at the start of this round (one GET per round, not one per use)."""
        return status_of(self.current if self.current is not None else self.read())

    def save(self, status: PromotionStatus) -> None:
        # Nones are sent as nulls: a merge patch removes what the status no longer has.
        document = status.model_dump(mode="json", by_alias=True)
        patch = {"metadata": {"resourceVersion": self.resource_version}, "status": document}
        self.current = self.objects.patch_namespaced_custom_object_status(
            GROUP, VERSION, self.ref.namespace, PLURAL, self.ref.name, patch
        )

    def mark_events_recorded(self, count: int) -> None:
        patch = {"metadata": {"annotations": {EVENTS_ANNOTATION: str(count)}}}
        self.current = self.objects.patch_namespaced_custom_object(
            GROUP, VERSION, self.ref.namespace, PLURAL, self.ref.name, patch
        )
