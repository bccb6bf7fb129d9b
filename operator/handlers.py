"""The kopf side of the operator: small handlers; the state machine and the backends do the work.

One timer per unsettled promotion runs one `driver.reconcile` round every few seconds: observe,
decide, save `.status`, act. Nothing lives in the operator's memory, so a restarted (or newly
elected) operator resumes every promotion from its status. Deleting a promotion aborts a preview it
left on a Rollout and deletes what it created (its Workflows and Jobs are also owned by it).
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import kopf
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from promoter.crd import GROUP, PLURAL, VERSION
from promoter.gitops.repository import GitBranch, GitRecords
from promoter.operator import metrics
from promoter.operator.argo_cd import ArgoCdProvenance
from promoter.operator.argo_rollouts import ArgoRollouts, HttpServiceProbe
from promoter.operator.argo_workflows import ArgoWorkflows
from promoter.operator.cluster import PromotionRef
from promoter.operator.events import EventRecorder
from promoter.operator.load_test_jobs import JobLoadTests
from promoter.operator.promotion_resource import PromotionResource, promotion_of, status_of
from promoter.operator.settings import OperatorSettings
from promoter.pipelines.tracking import store_client
from promoter.promotion.driver import Backends, reconcile
from promoter.promotion.engine import ROLLOUT_NOT_FOUND, refuse_spec
from promoter.promotion.ports import RolloutNotFound
from promoter.promotion.spec import PromotionSpec, SpecError
from promoter.promotion.status import PromotionStatus, utc_now
from promoter.registry import MlflowRegistry

ACTOR = "promoter-operator"
# A promotion being deleted in these phases has a candidate on its Rollout's preview side.
_PREVIEW_PHASES = {"Deploying", "LoadTesting", "AwaitingApproval"}
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClusterPlatform:
    api: client.ApiClient
    settings: OperatorSettings
    registry: MlflowRegistry

    def workflows(self, ref: PromotionRef) -> ArgoWorkflows:
        return ArgoWorkflows(self.api, ref, self.settings.workflows)

    def rollouts(self, namespace: str) -> ArgoRollouts:
        return ArgoRollouts(self.api, namespace, HttpServiceProbe(self.api, self.settings.service_url))

    def load_tests(self, ref: PromotionRef) -> JobLoadTests:
        return JobLoadTests(
            self.api,
            ref,
            self.settings.image,
            self.settings.load_test_pod,
            self.rollouts(ref.namespace),
        )

    def provenance(self, ref: PromotionRef) -> ArgoCdProvenance | None:
        """Under GitOps, where each promotion came from; None: any promotion applied is acted on."""
        application = self.settings.gitops_application
        if not application:
            return None
        return ArgoCdProvenance(self.api, ref, application, self.settings.gitops_namespace)

    def records(self, ref: PromotionRef) -> GitRecords | None:
        settings = self.settings
        if not settings.record_repository:
            return None
        branch = GitBranch(settings.record_repository, settings.record_branch)
        return GitRecords(branch, settings.record_directory)

    def backends(self, ref: PromotionRef) -> Backends:
        return Backends(
            workflows=self.workflows(ref),
            registry=self.registry,
            rollouts=self.rollouts(ref.namespace),
            load_tests=self.load_tests(ref),
            provenance=self.provenance(ref),
            records=self.records(ref),
        )


def cluster_platform(api: client.ApiClient, settings: OperatorSettings) -> ClusterPlatform:
    tracking = store_client(settings.workflows.tracking_uri)
    return ClusterPlatform(api, settings, MlflowRegistry(tracking, ACTOR, settings.champion_alias))


def reconcile_promotion(platform: ClusterPlatform, ref: PromotionRef) -> None:
    started = time.monotonic()
    resource = PromotionResource(platform.api, ref)
    model: str | None = None
    try:
        promotion = promotion_of(resource.read())
    except SpecError as exc:
        before = resource.load()
        decision = refuse_spec(before, str(exc), utc_now())
        if decision.status != before:
            resource.save(decision.status)
            metrics.REACTION_SECONDS.observe(time.monotonic() - started)
    else:
        model = promotion.spec.model
        before = resource.load()
        decision = reconcile(
            promotion,
            resource,
            platform.backends(ref),
            # called once per new transition, right after the status carrying it is saved
            on_transition=lambda _: metrics.REACTION_SECONDS.observe(time.monotonic() - started),
        )
        if decision.status.reason == ROLLOUT_NOT_FOUND and before.reason != ROLLOUT_NOT_FOUND:
            log.warning("%s/%s waits: %s", ref.namespace, ref.name, decision.status.message)
            EventRecorder(platform.api, ref).record_wait(
                len(decision.status.history), ROLLOUT_NOT_FOUND, decision.status.message, utc_now()
            )
    report_transitions(platform, ref, resource, decision.status, model)


def report_transitions(
    platform: ClusterPlatform,
    ref: PromotionRef,
    resource: PromotionResource,
    status: PromotionStatus,
    model: str | None,
) -> None:
    """Log, count and post an Event for each transition not reported yet. The cursor is kept on
    the object, so transitions saved by a process killed before it reported them are reported by
    the next one (Event names are deterministic: a repeat is the same Event; a counter may count
    a transition twice if the process dies between counting and moving the cursor)."""
    history = status.history
    reported = resource.events_recorded
    if reported >= len(history):
        return
    events = EventRecorder(platform.api, ref)
    created = _created(resource.current)
    for index in range(reported, len(history)):
        transition = history[index]
        log.info(
            "%s/%s entered %s: %s",
            ref.namespace,
            ref.name,
            transition.phase,
            transition.message,
            extra={"promotion": ref.name, "namespace": ref.namespace, "phase": transition.phase},
        )
        metrics.record_transition(history, index)
        if model is not None:
            metrics.record_outcome(model, created, status, index)
        events.record(index, transition, status.git_commit)
    resource.mark_events_recorded(len(history))


def _created(resource: dict[str, Any] | None) -> datetime | None:
    stamp = ((resource or {}).get("metadata") or {}).get("creationTimestamp")
    return datetime.fromisoformat(stamp) if isinstance(stamp, str) else None


def revert_before_deletion(platform: ClusterPlatform, ref: PromotionRef) -> str | None:
    """Under GitOps, a promotion that leaves git while it is this environment's champion was
    reverted (`git revert` of its merge; Argo CD prunes it): production goes back to the previous
    champion, through the same rollback as `promoter rollback`, before the object goes. Returns what
    it waits for while the rollback is under way; None once done, or when there is nothing to undo
    (not promoted, superseded by a newer champion, or no champion before it)."""
    provenance = platform.provenance(ref)
    if provenance is None:
        return None
    resource = PromotionResource(platform.api, ref)
    status = resource.load()
    if status.phase != "Promoted":
        return None
    if status.rollback_requested_by is None:
        assert resource.current is not None  # load() read it
        model = promotion_of(resource.current).spec.model
        if status.previous_champion is None or platform.registry.champion(model) != status.model_version:
            return None
        revision = provenance.current_revision() or "an unknown revision"
        status.rollback_requested_by = f"git revert ({provenance.where} at {revision} no longer has it)"
        resource.save(status)
    reconcile_promotion(platform, ref)
    return f"rolling back to version {status.previous_champion} before deletion"


def clean_up(platform: ClusterPlatform, ref: PromotionRef, resource: dict[str, Any]) -> None:
    status = status_of(resource)
    rollout = ((resource.get("spec") or {}).get("rollout") or {}).get("name")
    if rollout and status.phase in _PREVIEW_PHASES:
        with contextlib.suppress(RolloutNotFound):  # the Rollout is gone already: nothing to abort
            platform.rollouts(ref.namespace).abort(rollout)
    platform.workflows(ref).delete_all()
    platform.load_tests(ref).delete_all()


def register(registry: kopf.OperatorRegistry, platform: ClusterPlatform) -> None:
    """Attach the handlers to `registry`, bound to `platform` (no module-level global state)."""
    phases = metrics.PhaseBook()

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
    def promotion_seen(type: str | None, body: kopf.Body, namespace: str | None, name: str, **_: Any) -> None:
        """Every watch event, the initial listing included: the phase gauge follows the cluster."""
        assert namespace is not None
        if type == "DELETED":
            phases.gone(namespace, name)
            return
        try:
            spec: PromotionSpec | None = promotion_of(dict(body)).spec
        except SpecError:
            spec = None
        phases.seen(namespace, name, status_of(dict(body)).phase, spec)

    def unsettled(body: kopf.Body, **_: Any) -> bool:
        return not status_of(dict(body)).terminal

    @kopf.timer(
        GROUP,
        VERSION,
        PLURAL,
        interval=platform.settings.reconcile_seconds,
        when=unsettled,
        registry=registry,
    )
    def promotion_timer(namespace: str | None, name: str, uid: str, **_: Any) -> None:
        assert namespace is not None  # ModelPromotion is a namespaced resource
        metrics.RECONCILE_ROUNDS.inc()
        try:
            reconcile_promotion(platform, PromotionRef(namespace, name, uid))
        except Exception as exc:
            metrics.RECONCILE_ERRORS.labels(type(exc).__name__).inc()
            if isinstance(exc, ApiException) and exc.status == 409:
                raise kopf.TemporaryError(
                    "the promotion changed while reconciling; retrying", delay=1
                ) from exc
            raise

    @kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry)
    def promotion_deleted(body: kopf.Body, namespace: str | None, name: str, uid: str, **_: Any) -> None:
        assert namespace is not None
        ref = PromotionRef(namespace, name, uid)
        waiting = revert_before_deletion(platform, ref)
        if waiting is not None:
            raise kopf.TemporaryError(waiting, delay=1)  # timers stop on deletion: this handler drives it
        clean_up(platform, ref, dict(body))
