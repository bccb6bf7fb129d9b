"""The promotion state machine, phase by phase: pure decisions from (spec, status, observation, now)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from promoter.promotion.engine import (
    DECISION_OUTPUT,
    EVALUATION_RUN_OUTPUT,
    GATES_INCONCLUSIVE,
    PREVIEW_DEADLINE,
    ROLLOUT_NOT_FOUND,
    RUN_ID_OUTPUT,
    AbortPreview,
    Decision,
    DeployPreview,
    LoadTestObservation,
    Need,
    Observation,
    PreviewObservation,
    Promote,
    RegisterModel,
    RunLoadTest,
    RunWorkflow,
    WorkflowObservation,
    decide,
    needs,
)
from promoter.promotion.gates import GateResult
from promoter.promotion.spec import ModelPromotion, parse_promotion
from promoter.promotion.status import GateSummary, Phase, PromotionStatus, Transition

from .in_memory import failing_gate
from .in_memory import measured as result

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def promotion(**spec_overrides: Any) -> ModelPromotion:
    spec: dict[str, Any] = {
        "model": "digits",
        "source": {"train": {"pipeline": "digits", "data": {"version": "v1"}}},
        "gates": {"absolute": {"accuracy": 0.9}},
        "rollout": {
            "name": "digits-serving",
            "loadTest": {"users": 5, "duration": "3s", "maxP95Ms": 50, "maxErrorRate": 0.01, "minRps": 10},
        },
    }
    spec.update(spec_overrides)
    return parse_promotion(
        {
            "apiVersion": "mlops.promoter.dev/v1alpha1",
            "kind": "ModelPromotion",
            "metadata": {"name": "p1"},
            "spec": spec,
        }
    )


def at(phase: Phase, **fields: Any) -> PromotionStatus:
    """A status that entered `phase` at NOW with what earlier phases would have recorded."""
    defaults: dict[str, Any] = {"workflow": "p1-train", "run_id": "run1"}
    if phase in ("Deploying", "LoadTesting", "AwaitingApproval", "Promoting", "Promoted"):
        defaults["model_version"] = "2"
    history = [Transition(phase=phase, at=NOW, reason="test")]
    return PromotionStatus(**(defaults | fields), phase=phase, history=history)


def step(
    status: PromotionStatus, seen: Observation | None = None, p: ModelPromotion | None = None
) -> Decision:
    return decide(p or promotion(), status, seen or Observation(), NOW)


# --- training and evaluation ----------------------------------------------------------------------


def test_a_new_promotion_submits_its_deterministically_named_workflow() -> None:
    decision = step(PromotionStatus())
    assert decision.status.phase == "Training"
    assert decision.actions == (RunWorkflow("p1-train"),)
    assert decision.status.workflow == "p1-train"
    assert decision.status.history[-1].at == NOW


def test_training_waits_for_the_run_id_then_evaluates() -> None:
    running = WorkflowObservation("Running", {})
    waiting = step(at("Training", run_id=None), Observation(workflow=running))
    assert waiting.status.phase == "Training" and waiting.actions == (RunWorkflow("p1-train"),)

    trained = WorkflowObservation("Running", {RUN_ID_OUTPUT: "abc"})
    decision = step(at("Training", run_id=None), Observation(workflow=trained))
    assert decision.status.phase == "Evaluating"
    assert decision.status.run_id == "abc"


def test_a_failed_workflow_fails_the_promotion_with_its_message() -> None:
    failed = WorkflowObservation("Failed", message="step 'train' exited with 1")
    decision = step(at("Training"), Observation(workflow=failed))
    assert decision.status.phase == "Failed"
    assert "exited with 1" in decision.status.message
    assert decision.actions == ()


def test_failed_offline_gates_reject_without_touching_anything() -> None:
    done = WorkflowObservation("Succeeded", {RUN_ID_OUTPUT: "run1", DECISION_OUTPUT: "fail"})
    gates = GateSummary(passed=False, failures=[failing_gate()])
    decision = step(at("Evaluating"), Observation(workflow=done, gates=gates, champion="1"))
    assert decision.status.phase == "Rejected"
    assert "absolute.accuracy 0.5" in decision.status.message
    assert decision.actions == ()  # no registration, no preview, no alias move
    assert [t.phase for t in decision.status.history] == ["Evaluating", "Gating", "Rejected"]
    assert {c.type: c.status for c in decision.status.conditions} == {
        "Progressing": "False",
        "Promoted": "False",
    }


def test_passing_gates_register_once_then_deploy_the_registered_version() -> None:
    gates = GateSummary(passed=True)
    registering = step(at("Gating"), Observation(gates=gates))
    assert registering.status.phase == "Gating"
    assert registering.actions == (RegisterModel("run1"),)

    registered = step(at("Gating"), Observation(gates=gates, registered_version="2"))
    assert registered.status.phase == "Deploying"
    assert registered.status.model_version == "2"
    assert registered.actions == (DeployPreview("2"),)


def test_a_workflow_without_gate_report_fails_rather_than_passing() -> None:
    assert step(at("Gating"), Observation(gates=None)).status.phase == "Failed"


# --- preview and load test ------------------------------------------------------------------------


def test_a_preview_still_answering_with_the_old_version_is_not_load_tested() -> None:
    stale = PreviewObservation(version="1", ready=True)  # Argo Rollouts #2488: old pods behind preview
    decision = step(at("Deploying"), Observation(preview=stale))
    assert decision.status.phase == "Deploying"
    assert decision.actions == (DeployPreview("2"),)

    fresh = PreviewObservation(version="2", ready=True)
    decision = step(at("Deploying"), Observation(preview=fresh))
    assert decision.status.phase == "LoadTesting"
    assert decision.actions == (RunLoadTest("2"),)


def test_a_preview_that_never_comes_up_fails_after_the_deadline_and_is_torn_down() -> None:
    status = at("Deploying")
    later = NOW + PREVIEW_DEADLINE + timedelta(seconds=1)
    decision = decide(promotion(), status, Observation(preview=PreviewObservation(None, False)), later)
    assert decision.status.phase == "Failed"
    assert decision.status.reason == "PreviewTimeout"
    assert isinstance(decision.actions[0], AbortPreview)


def test_a_crashed_preview_fails_and_is_torn_down() -> None:
    crashed = PreviewObservation(None, False, failure="the preview server exited")
    decision = step(at("Deploying"), Observation(preview=crashed))
    assert decision.status.phase == "Failed"
    assert isinstance(decision.actions[0], AbortPreview)


MISSING = Observation(missing_rollout="Rollout digits-serving not found in namespace ml")


@pytest.mark.parametrize("phase", ["Pending", "Deploying"])
def test_a_missing_rollout_waits_in_its_phase_saying_which_and_where(phase: Phase) -> None:
    before = PromotionStatus() if phase == "Pending" else at(phase)
    waiting = step(before, MISSING)
    assert waiting.actions == ()
    assert waiting.status.phase == phase and waiting.status.history == before.history
    assert waiting.status.reason == ROLLOUT_NOT_FOUND
    assert waiting.status.message == "Rollout digits-serving not found in namespace ml"
    progressing = next(c for c in waiting.status.conditions if c.type == "Progressing")
    assert (progressing.status, progressing.reason) == ("False", ROLLOUT_NOT_FOUND)
    assert step(waiting.status, MISSING).status == waiting.status  # nothing new to save while it waits


def test_a_promotion_proceeds_once_its_rollout_exists() -> None:
    waiting = step(PromotionStatus(), MISSING).status
    started = step(waiting)
    assert started.status.phase == "Training" and started.actions == (RunWorkflow("p1-train"),)
    assert started.status.reason == "WorkflowSubmitted"
    deploying = step(at("Deploying"), MISSING).status
    resumed = step(deploying, Observation(preview=PreviewObservation(None, ready=False)))
    assert resumed.actions == (DeployPreview("2"),)
    assert (resumed.status.reason, resumed.status.message) == ("test", "")
    assert next(c for c in resumed.status.conditions if c.type == "Progressing").status == "True"


@pytest.mark.parametrize(
    "observed",
    [
        LoadTestObservation(None, error="locust exited with 1"),
        LoadTestObservation(result(requests=0, failures=0)),
    ],
    ids=["crashed", "no-requests"],
)
def test_a_load_test_without_a_result_is_a_failure_never_a_pass(observed: LoadTestObservation) -> None:
    decision = step(at("LoadTesting"), Observation(load_test=observed, champion="1"))
    assert decision.status.phase == "Failed"
    assert decision.actions == (AbortPreview("load test failed"),)


@pytest.mark.parametrize(
    ("measured", "gate"),
    [
        ({"p95_ms": 80.0}, "loadTest.p95Ms"),
        ({"failures": 50}, "loadTest.errorRate"),
        ({"rps": 3.0}, "loadTest.rps"),
    ],
)
def test_a_load_test_over_budget_rejects_and_aborts(measured: dict[str, Any], gate: str) -> None:
    decision = step(at("LoadTesting"), Observation(load_test=LoadTestObservation(result(**measured))))
    assert decision.status.phase == "Rejected"
    assert gate in decision.status.message
    assert decision.actions == (AbortPreview("load test gates"),)
    assert decision.status.load_test is not None and decision.status.load_test.requests == 500


def test_advisory_load_budgets_are_reported_but_never_block() -> None:
    advisory = promotion(rollout={"name": "r", "loadTest": {"maxP95Ms": 10, "enforce": False}})
    observed = Observation(load_test=LoadTestObservation(result(p95_ms=80.0)), champion="1")
    decision = step(at("LoadTesting"), observed, advisory)
    assert decision.status.phase == "Promoting"
    assert [(g.verdict, g.enforced) for g in decision.status.load_test_gates] == [("fail", False)]


def test_a_passing_load_test_promotes_and_records_the_previous_champion_first() -> None:
    decision = step(at("LoadTesting"), Observation(load_test=LoadTestObservation(result()), champion="1"))
    assert decision.status.phase == "Promoting"
    assert decision.status.previous_champion == "1"
    assert decision.actions == (Promote("2", "promotion p1"),)


def test_approval_holds_the_promotion_until_someone_approves() -> None:
    gated = promotion(approval={"required": True})
    waiting = step(at("LoadTesting"), Observation(load_test=LoadTestObservation(result())), gated)
    assert waiting.status.phase == "AwaitingApproval"
    assert waiting.actions == ()
    assert step(waiting.status, Observation(), gated).actions == ()

    approved = waiting.status.model_copy(update={"approved_by": "alice"})
    decision = step(approved, Observation(champion="1"), gated)
    assert decision.status.phase == "Promoting"
    assert decision.actions == (Promote("2", "promotion p1"),)
    assert "alice" in decision.status.message


def inconclusive_gate(name: str = "paired.recall[3]") -> GateResult:
    """An enforced paired gate that could show neither "no worse" nor "worse"."""
    return GateResult(
        name=name,
        kind="paired",
        metric="class/3/recall",
        actual=-0.14,
        threshold=-0.1,
        comparison=">",
        verdict="inconclusive",
        enforced=True,
        detail="recall -0.028 (0 gained, 1 lost of 36): lower bound -0.14 is not above -0.1",
        statistics={"rows": 36, "championOnly": 1, "candidateOnly": 0, "rowsNeeded": 74},
    )


def test_inconclusive_gates_wait_for_a_person_with_the_evidence_then_go_on() -> None:
    gates = GateSummary(passed=False, decision="inconclusive", inconclusive=[inconclusive_gate()])
    waiting = step(at("Gating"), Observation(gates=gates))
    assert waiting.status.phase == "AwaitingApproval"
    assert waiting.status.reason == GATES_INCONCLUSIVE
    assert waiting.actions == ()  # nothing registered before a person decides
    assert "paired.recall[3] inconclusive -0.14" in waiting.status.message
    assert waiting.status.gates is not None and waiting.status.gates.inconclusive[0].statistics["rows"] == 36
    assert step(waiting.status, Observation()).actions == ()

    approved = waiting.status.model_copy(update={"approved_by": "alice"})
    regating = step(approved, Observation())
    assert regating.status.phase == "Gating"
    assert "alice" in regating.status.message and regating.actions == ()

    registering = step(regating.status, Observation(gates=gates))
    assert registering.actions == (RegisterModel("run1"),)
    deploying = step(regating.status, Observation(gates=gates, registered_version="2"))
    assert deploying.status.phase == "Deploying"
    assert deploying.status.reason == "InconclusiveGatesApproved"
    assert deploying.actions == (DeployPreview("2"),)


def test_a_failed_gate_rejects_even_beside_an_inconclusive_one() -> None:
    gates = GateSummary(
        passed=False, decision="fail", failures=[failing_gate()], inconclusive=[inconclusive_gate()]
    )
    decision = step(at("Gating", approved_by="alice"), Observation(gates=gates))
    assert decision.status.phase == "Rejected"


def test_an_approval_of_inconclusive_gates_is_the_promotions_approval() -> None:
    """A person who accepted the evidence is not asked again after the load test; its gates still hold."""
    gated = promotion(approval={"required": True})
    status = at("LoadTesting", approved_by="alice")
    decision = step(status, Observation(load_test=LoadTestObservation(result()), champion="1"), gated)
    assert decision.status.phase == "Promoting"


def test_a_status_saved_before_decisions_existed_still_reads_its_verdict() -> None:
    assert GateSummary(passed=True).outcome == "pass"
    assert GateSummary(passed=False).outcome == "fail"


# --- promotion, resumption, rollback --------------------------------------------------------------


def test_promoting_ends_only_when_registry_and_traffic_both_serve_the_candidate() -> None:
    status = at("Promoting", previous_champion="1")
    assert step(status, Observation(champion="2", active="1")).actions == (Promote("2", "promotion p1"),)
    done = step(status, Observation(champion="2", active="2"))
    assert done.status.phase == "Promoted"
    assert done.status.previous_champion == "1"
    assert {c.type: c.status for c in done.status.conditions}["Promoted"] == "True"


def test_a_resumed_promotion_gets_the_same_idempotent_actions_back() -> None:
    """After a crash between saving and acting, the driver asks again: same status, same requests."""
    status = at("Promoting", previous_champion="1")
    seen = Observation(champion="1", active="1")
    first, again = step(status, seen), step(status, seen)
    assert first.actions == again.actions == (Promote("2", "promotion p1"),)
    assert first.status == again.status
    # the old champion recorded before the alias moved survives a resume after it moved
    moved = step(status, Observation(champion="2", active="1"))
    assert moved.status.previous_champion == "1"


def test_rollback_promotes_the_previous_champion_then_reports_rolled_back() -> None:
    promoted = at("Promoted", previous_champion="1", rollback_requested_by="bob")
    assert not promoted.terminal
    decision = step(promoted, Observation(champion="2", active="2"))
    assert decision.actions == (Promote("1", "rollback of promotion p1 by bob"),)
    assert decision.status.phase == "Promoted"

    done = step(promoted, Observation(champion="1", active="1"))
    assert done.status.phase == "RolledBack"
    assert done.status.terminal
    assert "bob" in done.status.message


def test_rollback_of_the_first_champion_is_refused_and_changes_nothing() -> None:
    promoted = at("Promoted", previous_champion=None, rollback_requested_by="bob")
    decision = step(promoted, Observation(champion="2", active="2"))
    assert decision.actions == ()
    assert decision.status.phase == "Promoted"
    assert decision.status.rollback_requested_by is None
    assert "no champion before" in decision.status.message


def test_an_existing_version_skips_training_but_not_its_offline_gates() -> None:
    existing = promotion(source={"modelVersion": "5"})
    decision = step(PromotionStatus(), Observation(registered_version="5"), existing)
    assert decision.status.phase == "Evaluating"
    assert decision.status.model_version == "5"
    assert decision.status.workflow == "p1-evaluate"
    assert decision.actions == (RunWorkflow("p1-evaluate"),)

    unknown = step(PromotionStatus(), Observation(registered_version=None), existing)
    assert unknown.status.phase == "Failed"
    assert "no registered version 5" in unknown.status.message
    assert unknown.actions == ()


def evaluated_version(decision: str) -> WorkflowObservation:
    return WorkflowObservation("Succeeded", {DECISION_OUTPUT: decision, EVALUATION_RUN_OUTPUT: "eval1"})


def test_an_existing_version_that_passes_its_gates_is_deployed_without_registering_again() -> None:
    existing = promotion(source={"modelVersion": "5"})
    status = at("Evaluating", workflow="p1-evaluate", run_id=None, model_version="5")
    evaluated = step(status, Observation(workflow=evaluated_version("pass")), existing)
    assert evaluated.status.phase == "Gating"
    assert evaluated.status.run_id == "eval1"  # the evaluation run holds the gate report
    assert evaluated.actions == ()  # its report is read next round, once the driver knows the run

    gates = GateSummary(passed=True, report_uri="runs:/eval1/gate_report.json")
    decision = step(evaluated.status, Observation(gates=gates, registered_version="5"), existing)
    assert decision.status.phase == "Deploying"
    assert decision.status.gates == gates
    assert decision.actions == (DeployPreview("5"),)
    assert [t.phase for t in decision.status.history] == ["Evaluating", "Gating", "Deploying"]


def test_an_existing_version_that_fails_its_gates_is_rejected_with_the_gates_reported() -> None:
    existing = promotion(source={"modelVersion": "5"})
    status = at("Gating", workflow="p1-evaluate", run_id="eval1", model_version="5")
    gates = GateSummary(passed=False, failures=[failing_gate()])
    decision = step(status, Observation(gates=gates, registered_version="5"), existing)
    assert decision.status.phase == "Rejected"
    assert decision.status.gates == gates
    assert "absolute.accuracy 0.5" in decision.status.message
    assert decision.actions == ()


def test_an_existing_version_deleted_while_it_was_evaluated_fails_instead_of_registering() -> None:
    existing = promotion(source={"modelVersion": "5"})
    status = at("Gating", workflow="p1-evaluate", run_id="eval1", model_version="5")
    decision = step(status, Observation(gates=GateSummary(passed=True), registered_version=None), existing)
    assert decision.status.phase == "Failed"
    assert decision.status.reason == "UnknownModelVersion"
    assert decision.actions == ()


def test_an_evaluation_that_names_no_run_fails_rather_than_passing() -> None:
    existing = promotion(source={"modelVersion": "5"})
    status = at("Evaluating", workflow="p1-evaluate", run_id=None, model_version="5")
    done = WorkflowObservation("Succeeded", {DECISION_OUTPUT: "pass"})
    decision = step(status, Observation(workflow=done), existing)
    assert decision.status.phase == "Failed"
    assert decision.status.reason == "NoGateReport"


def test_what_each_phase_needs_follows_the_phases_it_can_reach_in_one_round() -> None:
    existing = promotion(source={"modelVersion": "5"})
    assert needs(existing, "Pending") == {Need.REGISTERED_VERSION}  # nothing deployed from Pending
    assert needs(existing, "Evaluating") == {Need.WORKFLOW}  # its gate report is read next round
    assert needs(existing, "Gating") == {Need.GATES, Need.REGISTERED_VERSION, Need.CHAMPION, Need.ACTIVE}
    assert needs(promotion(rollout=None), "Evaluating") == {
        Need.WORKFLOW,
        Need.GATES,
        Need.REGISTERED_VERSION,
        Need.CHAMPION,
    }


def test_without_a_rollout_a_passing_candidate_is_promoted_in_the_registry_only() -> None:
    registry_only = promotion(rollout=None)
    decision = step(
        at("Gating"), Observation(gates=GateSummary(passed=True), registered_version="2"), registry_only
    )
    assert decision.status.phase == "Promoting"
    assert decision.actions == (Promote("2", "promotion p1"),)
    assert step(decision.status, Observation(champion="2"), registry_only).status.phase == "Promoted"


@pytest.mark.parametrize("phase", ["Promoted", "Rejected", "Failed", "RolledBack"])
def test_settled_promotions_do_nothing(phase: Phase) -> None:
    decision = step(at(phase), Observation(champion="9", active="9"))
    assert decision.actions == ()
    assert decision.status.phase == phase


def test_phase_wall_times_come_from_the_history() -> None:
    status = step(PromotionStatus()).status
    later = decide(
        promotion(),
        status,
        Observation(workflow=WorkflowObservation("Running", {RUN_ID_OUTPUT: "r"})),
        NOW + timedelta(seconds=42),
    ).status
    assert later.phase_seconds(NOW + timedelta(seconds=50)) == [("Training", 42.0), ("Evaluating", 8.0)]


def test_a_rejection_names_the_first_blocking_gates_and_counts_the_rest() -> None:
    failures = [failing_gate(f"perClass.f1[{digit}]") for digit in range(5)]
    decision = step(at("Gating"), Observation(gates=GateSummary(passed=False, failures=failures)))
    assert decision.status.message == (
        "perClass.f1[0] 0.5 (needs >= 0.9); perClass.f1[1] 0.5 (needs >= 0.9); "
        "perClass.f1[2] 0.5 (needs >= 0.9); and 2 more"
    )
    assert decision.status.gates is not None and len(decision.status.gates.failures) == 5
