"""Drives a promotion: observe the backends, ask the engine, save the status, then act.

The order is what makes it crash-safe: the status (with every identifier the next phase needs) is
saved before any action runs, and actions are idempotent. The kopf operator runs one `reconcile` per
event; `promoter run` calls `drive`, which repeats it until the promotion settles.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from promoter.promotion.engine import (
    AbortPreview,
    Action,
    Decision,
    DeployPreview,
    Environment,
    Need,
    Observation,
    Promote,
    PublishRecord,
    RegisterModel,
    RunLoadTest,
    RunWorkflow,
    decide,
    needs,
)
from promoter.promotion.ports import (
    LoadTests,
    Provenance,
    Records,
    Registry,
    RolloutNotFound,
    Rollouts,
    Workflows,
)
from promoter.promotion.spec import ModelPromotion
from promoter.promotion.status import PromotionStatus, Transition, utc_now


class StatusStore(Protocol):
    def load(self) -> PromotionStatus: ...

    def save(self, status: PromotionStatus) -> None: ...


@dataclass(frozen=True)
class Backends:
    workflows: Workflows
    registry: Registry
    rollouts: Rollouts
    load_tests: LoadTests
    provenance: Provenance | None = None  # set: act only on promotions traced to git (GitOps)
    records: Records | None = None  # set: publish the production record once promoted

    @property
    def environment(self) -> Environment:
        return Environment(
            requires_git=self.provenance is not None, publishes_record=self.records is not None
        )


def load_test_key(promotion: ModelPromotion, version: str) -> str:
    return f"{promotion.metadata.name}-v{version}"


def observe(promotion: ModelPromotion, status: PromotionStatus, backends: Backends) -> Observation:
    """Observe what the engine says this round needs, and nothing else (each observation is I/O).
    A Rollout that does not exist yet is an observation too: the engine waits for it."""
    try:
        return _observe_needs(promotion, status, backends)
    except RolloutNotFound as exc:
        return Observation(missing_rollout=str(exc))


def _observe_needs(promotion: ModelPromotion, status: PromotionStatus, backends: Backends) -> Observation:
    spec, wanted = promotion.spec, needs(promotion, status.phase, backends.environment)
    rollout = spec.rollout.name if spec.rollout else None
    registry = backends.registry

    workflow = None
    if Need.WORKFLOW in wanted and status.workflow:
        workflow = backends.workflows.observe(promotion, status.workflow)
    gates = registry.gate_summary(status.run_id) if Need.GATES in wanted and status.run_id else None
    registered = None
    if Need.REGISTERED_VERSION in wanted:
        if spec.source.model_version is not None:
            wanted_version = spec.source.model_version
            registered = wanted_version if registry.has_version(spec.model, wanted_version) else None
        elif status.run_id:
            registered = registry.registered_version(spec.model, status.run_id)
    preview = backends.rollouts.preview(rollout) if rollout and Need.PREVIEW in wanted else None
    load_test = None
    if Need.LOAD_TEST in wanted and status.model_version:
        load_test = backends.load_tests.observe(load_test_key(promotion, status.model_version))
    provenance = None
    if Need.PROVENANCE in wanted and backends.provenance is not None:
        provenance = backends.provenance.trace(promotion)
    proven_image = None
    if Need.PROVEN_IMAGE in wanted and spec.source.model_version is not None:
        proven_image = registry.proven_image(spec.model, spec.source.model_version)
    record = None
    if Need.RECORD in wanted and backends.records is not None:
        record = backends.records.observe(promotion)
    return Observation(
        workflow=workflow,
        gates=gates,
        registered_version=registered,
        champion=registry.champion(spec.model) if Need.CHAMPION in wanted else None,
        active=backends.rollouts.active_version(rollout) if rollout and Need.ACTIVE in wanted else None,
        preview=preview,
        load_test=load_test,
        provenance=provenance,
        proven_image=proven_image,
        record=record,
    )


def execute(promotion: ModelPromotion, action: Action, backends: Backends) -> None:
    spec = promotion.spec
    rollout = spec.rollout
    match action:
        case RunWorkflow(name):
            backends.workflows.run(promotion, name)
        case RegisterModel(run_id):
            backends.registry.register(spec.model, run_id, promotion.metadata.name)
        case DeployPreview(version, image):
            assert rollout is not None
            backends.rollouts.deploy_preview(rollout.name, spec.model, version, image)
        case RunLoadTest(version):
            assert rollout is not None
            backends.load_tests.run(load_test_key(promotion, version), rollout.name, rollout.load_test)
        case Promote(version, reason, image):
            # Traffic first, then the record: @champion never names a version nobody serves.
            if rollout is not None:
                backends.rollouts.promote(rollout.name, spec.model, version, image)
            backends.registry.move_champion(spec.model, version, reason)
        case PublishRecord(version, status):
            assert backends.records is not None  # the engine publishes only where records are kept
            image = backends.rollouts.serving_image(rollout.name) if rollout is not None else None
            if image is not None:  # first: the record's image must be provable when it is merged
                backends.registry.record_proven_image(spec.model, version, image, promotion.metadata.name)
            backends.records.publish(promotion, version, status, image)
        case AbortPreview():
            if rollout is not None:
                backends.rollouts.abort(rollout.name)


def reconcile(
    promotion: ModelPromotion,
    store: StatusStore,
    backends: Backends,
    now: datetime | None = None,
    on_transition: Callable[[Transition], None] | None = None,
) -> Decision:
    """One observe -> decide -> save -> act round."""
    before = store.load()
    seen = observe(promotion, before, backends)
    decision = decide(promotion, before, seen, now or utc_now(), backends.environment)
    if decision.status != before:
        store.save(decision.status)
    if on_transition is not None:
        for transition in decision.status.history[len(before.history) :]:
            on_transition(transition)
    for action in decision.actions:
        execute(promotion, action, backends)
    return decision


def drive(
    promotion: ModelPromotion,
    store: StatusStore,
    backends: Backends,
    on_transition: Callable[[Transition], None] | None = None,
    poll_seconds: float = 0.5,
) -> PromotionStatus:
    """Reconcile until the promotion is settled or waits for a human; returns the last status."""
    while True:
        entries = len(store.load().history)
        decision = reconcile(promotion, store, backends, on_transition=on_transition)
        status = decision.status
        if status.terminal or (status.phase == "AwaitingApproval" and not decision.actions):
            return status
        if len(status.history) == entries:
            time.sleep(poll_seconds)  # nothing moved: wait for the backends to catch up
