"""The driver through every phase against in-memory backends (tests/in_memory.py): what it observes,
what it asks of the world, and what a process killed at any point leaves behind. No I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from promoter.promotion.driver import drive, reconcile
from promoter.promotion.engine import Need, needs
from promoter.promotion.spec import ModelPromotion, parse_promotion
from promoter.promotion.status import GateSummary, Phase, PromotionStatus

from .in_memory import AliasMove, Crash, World, failing_gate, measured, world

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
# What only an environment under GitOps observes (provenance, records) or a pinned image needs.
GITOPS_NEEDS = {Need.PROVENANCE, Need.PROVEN_IMAGE, Need.RECORD}
ROLLOUT = "digits-serving"
FAILING_GATES = GateSummary(passed=False, failures=[failing_gate()])
TRAINED_AND_DEPLOYED: list[Phase] = [
    "Training",
    "Evaluating",
    "Gating",
    "Deploying",
    "LoadTesting",
    "Promoting",
    "Promoted",
]


def promotion(**spec_overrides: Any) -> ModelPromotion:
    spec: dict[str, Any] = {
        "model": "digits",
        "source": {"train": {"pipeline": "digits", "data": {"version": "v1"}}},
        "gates": {"absolute": {"accuracy": 0.9}},
        "rollout": {"name": ROLLOUT, "loadTest": {"maxP95Ms": 50, "maxErrorRate": 0.01, "minRps": 10}},
    }
    spec.update(spec_overrides)
    document = {
        "apiVersion": "mlops.promoter.dev/v1alpha1",
        "kind": "ModelPromotion",
        "metadata": {"name": "p1"},
        "spec": spec,
    }
    return parse_promotion(document)


def with_champion(w: World) -> World:
    """Version 1 is @champion and serves production, as a past promotion left it."""
    w.registry.add_version("digits", "old-run")
    w.registry.crown("digits", "1")
    w.rollouts.serve(ROLLOUT, "1")
    w.registry.alias_moves.clear()  # the setup is not what the tests count
    return w


def settle(
    w: World, p: ModelPromotion, minutes_per_round: float = 0, fenced: bool = False
) -> PromotionStatus:
    """Reconcile round after round until the promotion settles or waits for a human. A `Crash` is
    the process dying; the next round is a fresh driver with nothing but the store and the world.
    `fenced`: each round may observe only what `needs` declares for the phase it starts in."""
    now = NOW
    for _ in range(60):
        if fenced:
            w.observations.fence = needs(p, w.store.status.phase, w.backends.environment)
        try:
            decision = reconcile(p, w.store, w.backends, now=now)
        except Crash:
            continue
        finally:
            now += timedelta(minutes=minutes_per_round)
        if decision.status.terminal or (decision.status.phase == "AwaitingApproval" and not decision.actions):
            return decision.status
    raise AssertionError(f"not settled after 60 rounds: {w.store.status.phase}")


def phases(status: PromotionStatus) -> list[Phase]:
    return [t.phase for t in status.history]


def champion(w: World) -> str | None:
    return w.registry.aliases.get("digits", {}).get("champion")


def active(w: World) -> str | None:
    return w.rollouts.rollouts[ROLLOUT].active


PROMOTED_2 = [
    AliasMove("digits", "previous-champion", None, "1", "promotion p1"),
    AliasMove("digits", "champion", "1", "2", "promotion p1"),
]


# --- every phase --------------------------------------------------------------------------------


def test_a_trained_candidate_goes_through_every_phase_to_production() -> None:
    w = with_champion(world())
    status = drive(promotion(), w.store, w.backends, poll_seconds=0)
    assert phases(status) == TRAINED_AND_DEPLOYED
    assert (status.model_version, status.previous_champion) == ("2", "1")
    assert status.gates is not None and status.gates.report_uri == "runs:/p1-train-run/gate_report.json"
    assert (w.workflows.trainings, w.workflows.evaluations, w.registry.registrations) == (1, 1, 1)
    assert (w.rollouts.previews_started, w.rollouts.switches, list(w.load_tests.tests)) == (1, 1, ["p1-v2"])
    assert w.registry.alias_moves == PROMOTED_2
    assert (champion(w), active(w)) == ("2", "2")
    assert w.rollouts.rollouts[ROLLOUT].standby == "1"  # the rollback target stays hot


def test_without_a_rollout_the_candidate_is_promoted_in_the_registry_only() -> None:
    w = with_champion(world())
    status = settle(w, promotion(rollout=None))
    assert phases(status) == ["Training", "Evaluating", "Gating", "Promoting", "Promoted"]
    assert w.registry.alias_moves == PROMOTED_2
    assert (w.rollouts.previews_started, w.rollouts.switches, w.load_tests.tests) == (0, 0, {})
    assert active(w) == "1"  # production traffic was not this promotion's to touch


def test_a_registered_version_is_evaluated_then_deployed_without_training_or_registering() -> None:
    w = with_champion(world())
    w.registry.add_version("digits", "rolled-back-run")  # version 2, registered long ago
    status = settle(w, promotion(source={"modelVersion": "2"}))
    assert phases(status) == TRAINED_AND_DEPLOYED[1:]
    assert (status.workflow, status.run_id) == ("p1-evaluate", "p1-evaluate-run")
    assert status.gates is not None and status.gates.report_uri == "runs:/p1-evaluate-run/gate_report.json"
    assert (w.workflows.trainings, w.workflows.evaluations, w.registry.registrations) == (0, 1, 0)
    assert w.registry.alias_moves == PROMOTED_2
    assert (champion(w), active(w)) == ("2", "2")


def test_a_registered_version_that_fails_its_gates_is_rejected_and_never_deployed() -> None:
    w = with_champion(world(gates=FAILING_GATES))
    w.registry.add_version("digits", "rolled-back-run")
    status = settle(w, promotion(source={"modelVersion": "2"}))
    assert phases(status) == ["Evaluating", "Gating", "Rejected"]
    assert status.gates is not None and [g.name for g in status.gates.failures] == ["absolute.accuracy"]
    assert "absolute.accuracy 0.5" in status.message
    assert (w.rollouts.previews_started, w.registry.alias_moves, champion(w)) == (0, [], "1")


def test_an_unknown_registered_version_fails_before_anything_runs() -> None:
    w = with_champion(world())
    status = settle(w, promotion(source={"modelVersion": "7"}))
    assert (phases(status), status.reason) == (["Failed"], "UnknownModelVersion")
    assert w.workflows.workflows == {}


def test_approval_holds_the_promotion_until_someone_approves() -> None:
    w = with_champion(world())
    gated = promotion(approval={"required": True})
    waiting = drive(gated, w.store, w.backends, poll_seconds=0)
    assert waiting.phase == "AwaitingApproval"
    assert (champion(w), active(w), w.rollouts.switches) == ("1", "1", 0)
    assert settle(w, gated).phase == "AwaitingApproval"  # asking again changes nothing

    w.store.status = w.store.status.model_copy(update={"approved_by": "alice"})
    status = settle(w, gated)
    assert phases(status) == [*TRAINED_AND_DEPLOYED[:5], "AwaitingApproval", "Promoting", "Promoted"]
    assert "alice" in status.history[-2].message
    assert w.registry.alias_moves == PROMOTED_2


def test_failing_offline_gates_reject_before_registering() -> None:
    w = with_champion(world(gates=FAILING_GATES))
    status = settle(w, promotion())
    assert phases(status) == ["Training", "Evaluating", "Gating", "Rejected"]
    assert (w.registry.registrations, w.rollouts.previews_started, w.registry.alias_moves) == (0, 0, [])


def test_a_load_test_over_budget_rejects_and_tears_the_preview_down() -> None:
    w = with_champion(world(load_test=measured(p95_ms=80.0)))
    status = settle(w, promotion())
    assert phases(status) == [*TRAINED_AND_DEPLOYED[:5], "Rejected"]
    assert "loadTest.p95Ms" in status.message
    assert status.load_test is not None and status.load_test.p95_ms == 80.0
    assert (w.rollouts.aborts, w.rollouts.rollouts[ROLLOUT].preview) == (1, None)
    assert (champion(w), active(w), w.registry.alias_moves) == ("1", "1", [])


@pytest.mark.parametrize("failing", ["train", "evaluate"])
def test_a_failed_workflow_step_fails_the_promotion_with_its_message(failing: str) -> None:
    w = with_champion(world(fail_step=failing))
    status = settle(w, promotion())
    assert status.phase == "Failed" and status.reason == "WorkflowFailed"
    assert f"step '{failing}' exited with 1" in status.message
    assert (w.registry.registrations, w.rollouts.previews_started) == (0, 0)


def test_a_crashed_preview_fails_and_is_torn_down() -> None:
    w = with_champion(world(preview_failure="the preview server exited"))
    status = settle(w, promotion())
    assert (status.phase, status.reason, status.message) == (
        "Failed",
        "PreviewFailed",
        "the preview server exited",
    )
    assert (w.rollouts.aborts, active(w), champion(w)) == (1, "1", "1")


def test_a_preview_that_never_comes_up_times_out_and_is_torn_down() -> None:
    w = with_champion(world(never_ready=True))
    status = settle(w, promotion(), minutes_per_round=1)
    assert (status.phase, status.reason) == ("Failed", "PreviewTimeout")
    assert (w.rollouts.aborts, active(w), champion(w)) == (1, "1", "1")


def test_a_crashed_load_test_fails_and_tears_the_preview_down() -> None:
    w = with_champion(world(load_test="locust exited with 1"))
    status = settle(w, promotion())
    assert (status.phase, status.reason, status.message) == (
        "Failed",
        "LoadTestFailed",
        "locust exited with 1",
    )
    assert (w.rollouts.aborts, active(w), champion(w)) == (1, "1", "1")


def request_rollback(w: World) -> None:
    w.store.status = w.store.status.model_copy(update={"rollback_requested_by": "bob"})


def test_rollback_from_promoted_puts_the_previous_champion_back_in_registry_and_traffic() -> None:
    w = with_champion(world())
    assert settle(w, promotion()).phase == "Promoted"
    request_rollback(w)
    status = settle(w, promotion())
    assert phases(status) == [*TRAINED_AND_DEPLOYED, "RolledBack"]
    assert "bob" in status.message
    assert (champion(w), active(w), w.rollouts.switches) == ("1", "1", 2)
    assert w.registry.alias_moves == [
        *PROMOTED_2,
        AliasMove("digits", "previous-champion", "1", "2", "rollback of promotion p1 by bob"),
        AliasMove("digits", "champion", "2", "1", "rollback of promotion p1 by bob"),
    ]


def test_rollback_with_no_previous_champion_is_refused_and_moves_nothing() -> None:
    w = world()
    assert settle(w, promotion()).phase == "Promoted"
    moves = list(w.registry.alias_moves)
    request_rollback(w)
    status = settle(w, promotion())
    assert (status.phase, status.rollback_requested_by) == ("Promoted", None)
    assert "no champion before" in status.message
    assert (champion(w), active(w), w.rollouts.switches, w.registry.alias_moves) == ("1", "1", 1, moves)


# --- crashes ------------------------------------------------------------------------------------

SAVED_IN_EVERY_PHASE = tuple(f"saved {phase}" for phase in TRAINED_AND_DEPLOYED)
ACTIONS_HALF_DONE = (
    "submitted",
    "registered",
    "switched",
    "recorded previous-champion",
    "recorded champion",
    "moved champion",
)


@pytest.mark.parametrize(
    "points",
    [
        SAVED_IN_EVERY_PHASE,
        *((point,) for point in ACTIONS_HALF_DONE),
        SAVED_IN_EVERY_PHASE + ACTIONS_HALF_DONE,
    ],
    ids=["after-every-save", *ACTIONS_HALF_DONE, "everywhere"],
)
def test_a_driver_killed_anywhere_resumes_without_doing_anything_twice(points: tuple[str, ...]) -> None:
    w = with_champion(world())
    w.fuse.arm(*points)
    status = settle(w, promotion())
    assert sorted(w.fuse.blown) == sorted(points)  # it did die at every armed point
    assert phases(status) == TRAINED_AND_DEPLOYED
    assert status.previous_champion == "1"  # saved before the alias moved: a rollback target remains
    assert (w.workflows.trainings, w.workflows.evaluations, w.registry.registrations) == (1, 1, 1)
    assert (w.rollouts.previews_started, w.rollouts.switches, len(w.load_tests.tests)) == (1, 1, 1)
    assert w.registry.alias_moves == PROMOTED_2
    assert (champion(w), active(w)) == ("2", "2")


def test_a_registered_version_killed_everywhere_is_evaluated_once_and_promoted_once() -> None:
    w = with_champion(world())
    w.registry.add_version("digits", "rolled-back-run")
    w.fuse.arm(*SAVED_IN_EVERY_PHASE[1:], "submitted", "switched", "recorded champion")
    status = settle(w, promotion(source={"modelVersion": "2"}))
    assert not w.fuse.armed
    assert phases(status) == TRAINED_AND_DEPLOYED[1:]
    assert (w.workflows.trainings, w.workflows.evaluations, w.registry.registrations) == (0, 1, 0)
    assert (w.rollouts.switches, w.registry.alias_moves) == (1, PROMOTED_2)


def test_a_rollback_killed_half_way_resumes_and_records_each_move_once() -> None:
    w = with_champion(world())
    settle(w, promotion())
    request_rollback(w)
    w.fuse.arm("switched", "recorded previous-champion", "moved champion", "saved RolledBack")
    status = settle(w, promotion())
    assert not w.fuse.armed
    assert status.phase == "RolledBack"
    assert (champion(w), active(w), w.rollouts.switches) == ("1", "1", 2)
    assert w.registry.alias_moves[2:] == [
        AliasMove("digits", "previous-champion", "1", "2", "rollback of promotion p1 by bob"),
        AliasMove("digits", "champion", "2", "1", "rollback of promotion p1 by bob"),
    ]


# --- observations -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        {},
        {"rollout": None},
        {"source": {"modelVersion": "1"}},
        {"approval": {"required": True}},
    ],
    ids=["train", "no-rollout", "model-version", "approval"],
)
def test_the_driver_observes_only_what_the_phase_needs(spec: dict[str, Any]) -> None:
    """Every backend raises on an observation outside `needs` for the phase the round starts in."""
    p = promotion(**spec)
    w = with_champion(world())
    status = settle(w, p, fenced=True)
    if status.phase == "AwaitingApproval":
        w.store.status = status.model_copy(update={"approved_by": "alice"})
        status = settle(w, p, fenced=True)
    assert status.phase == "Promoted"
    # and what it observes is what the engine reads: over a whole promotion, every need comes up
    expected = set(Need) - GITOPS_NEEDS  # those come up in tests/test_gitops_driver.py
    if p.spec.rollout is None:
        expected -= {Need.ACTIVE, Need.PREVIEW, Need.LOAD_TEST}
    assert set(w.observations.seen) == expected


def test_an_observation_outside_needs_is_refused_by_the_fence() -> None:
    """The fence itself can fail: a round in Promoting may not look at the preview."""
    w = with_champion(world())
    w.observations.fence = needs(promotion(), "Promoting")
    with pytest.raises(AssertionError, match="preview"):
        w.rollouts.preview(ROLLOUT)
