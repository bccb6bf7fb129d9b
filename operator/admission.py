"""Admission for ModelPromotions: what the API server refuses before anything is stored.

Served by the operator (kopf's webhook server, HTTPS) when it runs with `--webhook-port`; the
API server is pointed at it by the chart's webhook configurations (charts/promoter/templates/webhook.yaml).

- **A valid spec**: a new promotion is checked by `promoter.validation.validate_document`, the one
  check every entry point runs, so `kubectl apply` of a bad spec fails at once with the field named
  instead of failing later, in the operator, after a `kubectl apply` that said "created".
- **An immutable spec**: the status, the Workflows, the registry records and the audit trail all
  describe the spec the promotion was created with; editing it halfway would make them lie. Another
  candidate is another ModelPromotion. Metadata and status still change (annotations, finalizers).
- **Who approved, as authenticated**: a user asks with an annotation (`mlops.promoter.dev/approve`
  or `.../rollback`); the mutating webhook checks with a SubjectAccessReview that the user holds
  the custom RBAC verb (`approve`, `rollback`) on modelpromotions, and replaces the request with
  the record the operator reads (`approved-by`, `rollback-requested-by`), holding the username the
  API server authenticated. Writing a record by hand is refused; the validating webhook also
  refuses any record that is not the requesting user's own, authorized, so a record cannot lie
  even where the mutating webhook is missing.
- **A warning, not a refusal, for a Rollout that does not exist yet**: GitOps may apply the
  promotion before the Rollout; the operator waits for it (status reason RolloutNotFound).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import kopf
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from promoter.crd import GROUP, PLURAL, VERSION
from promoter.operator.argo_rollouts import RolloutError, blue_green_rollout
from promoter.operator.promotion_resource import (
    APPROVE_ANNOTATION,
    APPROVED_BY_ANNOTATION,
    ROLLBACK_ANNOTATION,
    ROLLBACK_REQUEST_ANNOTATION,
    origin_of,
    promotion_document,
)
from promoter.promotion.ports import RolloutNotFound
from promoter.promotion.spec import SpecError
from promoter.validation import validate_document

# The handler ids are the webhooks' URL paths: https://HOST:PORT/validate and /mutate.
VALIDATE_PATH, MUTATE_PATH = "validate", "mutate"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HumanDecision:
    """A decision only some users may take: asked for with one annotation, recorded in another."""

    request: str  # the annotation a user sets to ask
    verb: str  # the custom RBAC verb on modelpromotions it needs
    record: str  # the annotation the webhook writes: the authenticated username
    done: str  # for messages: "approved"


DECISIONS = (
    HumanDecision(APPROVE_ANNOTATION, "approve", APPROVED_BY_ANNOTATION, "approved"),
    HumanDecision(ROLLBACK_REQUEST_ANNOTATION, "rollback", ROLLBACK_ANNOTATION, "rollback requested"),
)


def _field(annotation: str) -> str:
    return f"metadata.annotations[{annotation}]"


def _annotations(body: Any) -> dict[str, str]:
    return dict(((body or {}).get("metadata") or {}).get("annotations") or {})


def _spec_changes(diff: Any) -> list[str]:
    """The spec fields an UPDATE changes, as YAML paths (kopf's diff: (op, field, old, new))."""
    fields = {".".join(map(str, field)) or "spec" for _, field, _, _ in diff or () if field[:1] == ("spec",)}
    return sorted(fields)


class Admission:
    """The checks, bound to the operator's API client (it asks the API server who may do what)."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api

    def authorize(self, decision: HumanDecision, userinfo: dict[str, Any], namespace: str, name: str) -> None:
        """Refuse (403) unless the requesting user may `decision.verb` this promotion: asked of the
        API server's own authorizer, so RBAC, groups and any other authorizer all count."""
        username = userinfo.get("username") or ""
        attributes = {"group": GROUP, "resource": PLURAL, "verb": decision.verb, "namespace": namespace}
        if name:
            attributes["name"] = name
        review: Any = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": username,
                "groups": userinfo.get("groups") or [],
                "uid": userinfo.get("uid") or "",
                "extra": userinfo.get("extra") or {},
                "resourceAttributes": attributes,
            },
        }
        answer: Any = client.AuthorizationV1Api(self.api).create_subject_access_review(review)
        if not answer.status.allowed:
            raise kopf.AdmissionError(
                f"{_field(decision.request)}: {username} may not {decision.verb} "
                f"{PLURAL}.{GROUP} in namespace {namespace} (needs the RBAC verb '{decision.verb}', "
                "e.g. from the ClusterRole promoter-approver)",
                code=403,
            )

    def record_decisions(
        self, body: Any, old: Any, userinfo: dict[str, Any], patch: Any, warnings: list[str]
    ) -> None:
        """Mutating: turn each request annotation into its record, naming the authenticated user."""
        before, after = _annotations(old), _annotations(body)
        namespace, name = _where(body)
        for decision in DECISIONS:
            if after.get(decision.record) != before.get(decision.record):
                raise kopf.AdmissionError(
                    f"{_field(decision.record)} is written by the admission webhook with the "
                    f"name the API server authenticated: set {decision.request} instead",
                    code=403,
                )
            if decision.request not in after:
                continue
            self.authorize(decision, userinfo, namespace, name)
            patch.metadata.annotations[decision.request] = None  # a request, not a record: consumed
            recorded = before.get(decision.record)
            if recorded:
                warnings.append(f"already {decision.done} by {recorded}: the record is kept")
            else:
                patch.metadata.annotations[decision.record] = userinfo.get("username") or ""

    def check_records(self, body: Any, old: Any, userinfo: dict[str, Any]) -> None:
        """Validating: a record may only appear holding the requesting user's own name, with the
        verb; it never changes or disappears afterwards."""
        before, after = _annotations(old), _annotations(body)
        username = userinfo.get("username") or ""
        namespace, name = _where(body)
        for decision in DECISIONS:
            if after.get(decision.record) == before.get(decision.record):
                continue
            if before.get(decision.record) is not None or after.get(decision.record) != username:
                raise kopf.AdmissionError(
                    f"{_field(decision.record)} is a record: it names the user the API server "
                    f"authenticated ({username}) once, and is never edited; set {decision.request} instead",
                    code=403,
                )
            self.authorize(decision, userinfo, namespace, name)

    def check_spec(self, operation: str, body: Any, diff: Any, warnings: list[str]) -> None:
        if operation == "CREATE":
            try:
                validate_document(promotion_document(dict(body)), origin=origin_of(dict(body)))
            except SpecError as exc:
                raise kopf.AdmissionError(str(exc), code=422) from None
            warning = self.rollout_warning(body)
            if warning:
                warnings.append(warning)
        elif operation == "UPDATE":
            changed = _spec_changes(diff)
            if changed:
                raise kopf.AdmissionError(
                    f"spec is immutable once the promotion is created (this changes {', '.join(changed)}): "
                    "create another ModelPromotion for another candidate",
                    code=422,
                )

    def rollout_warning(self, body: Any) -> str | None:
        """Why the Rollout the spec names cannot serve yet, if it cannot: a warning, since GitOps may
        apply the promotion first (the operator waits for it)."""
        namespace, _ = _where(body)
        rollout = ((body.get("spec") or {}).get("rollout") or {}).get("name")
        if not rollout:
            return None
        try:
            blue_green_rollout(self.api, namespace, rollout)
        except RolloutNotFound as exc:
            return f"{exc}: the promotion waits until it exists"
        except RolloutError as exc:
            return str(exc)
        except ApiException as exc:  # e.g. no Argo Rollouts CRD here: not the user's mistake to refuse
            log.warning("could not check Rollout %s/%s: %s", namespace, rollout, exc.reason)
        return None


def _where(body: Any) -> tuple[str, str]:
    metadata = (body or {}).get("metadata") or {}
    return str(metadata.get("namespace") or ""), str(metadata.get("name") or "")


def register_admission(registry: kopf.OperatorRegistry, api: client.ApiClient) -> None:
    """Attach the admission handlers to `registry` (needs a webhook server: see run.py)."""
    admission = Admission(api)

    # kopf passes every field of the review by keyword; these take what they need by name.
    @kopf.on.mutate(
        GROUP, VERSION, PLURAL, id=MUTATE_PATH, operations=["CREATE", "UPDATE"], registry=registry
    )
    def mutate(**review: Any) -> None:
        admission.record_decisions(
            review["body"], review["old"], review["userinfo"], review["patch"], review["warnings"]
        )

    @kopf.on.validate(
        GROUP, VERSION, PLURAL, id=VALIDATE_PATH, operations=["CREATE", "UPDATE"], registry=registry
    )
    def validate(**review: Any) -> None:
        admission.check_spec(review["operation"], review["body"], review["diff"], review["warnings"])
        admission.check_records(review["body"], review["old"], review["userinfo"])
