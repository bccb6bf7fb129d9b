"""The promotion state machine: (spec, status, observation, now) -> (next status, actions).

Pure: it knows nothing of kopf, subprocesses, HTTP or MLflow. A driver (the kopf operator, or
`promoter run` on one machine) observes the world through its backends, asks `decide`, saves the
returned status FIRST and only then carries out the actions. Actions are idempotent requests ("make
sure the preview serves version 7"), so a driver killed between saving and acting simply asks again
after a restart and gets the same actions back: nothing is trained, registered or promoted twice.

Phases: Pending -> Training -> Evaluating -> Gating -> Deploying -> LoadTesting -> [AwaitingApproval]
-> Promoting -> Promoted, or Rejected (a gate said no), Failed (something broke), RolledBack. A
registered version (`source.modelVersion`) skips Training, never Evaluating: a version that was
rolled back must pass today's gates against today's champion before it serves again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal, TypeVar

from promoter.promotion.gates import GateResult, evaluate_load_gates
from promoter.promotion.spec import ModelPromotion
from promoter.promotion.status import (
    TERMINAL_PHASES,
    Condition,
    GateSummary,
    LoadTestResult,
    Phase,
    PromotionStatus,
    Transition,
)

# Output parameters of the train -> evaluate workflow, as "<task>.<parameter>".
RUN_ID_OUTPUT = "train.run-id"
DECISION_OUTPUT = "evaluate.decision"
# The evaluate-only workflow of a registered version records its gate report in a run of its own.
EVALUATION_RUN_OUTPUT = "evaluate.run-id"
PREVIEW_DEADLINE = timedelta(minutes=10)
ROLLOUT_NOT_FOUND = "RolloutNotFound"  # the status reason while the spec's Rollout does not exist
_T = TypeVar("_T")


# --- what the driver observed ------------------------------------------------------------------


@dataclass(frozen=True)
class WorkflowObservation:
    phase: Literal["Pending", "Running", "Succeeded", "Failed"]
    outputs: Mapping[str, str] = field(default_factory=dict)
    message: str = ""


@dataclass(frozen=True)
class PreviewObservation:
    """What the preview address answers right now, not what was asked of it."""

    version: str | None
    ready: bool
    failure: str = ""  # set when the preview cannot come up at all


@dataclass(frozen=True)
class LoadTestObservation:
    result: LoadTestResult | None
    error: str = ""  # the load test crashed or measured nothing


class Need(StrEnum):
    """One thing the driver can observe. Observing costs I/O, so a driver observes only what the
    phase at hand reads (`needs`), and the engine refuses to read what it did not declare."""

    WORKFLOW = "workflow"
    GATES = "gates"
    REGISTERED_VERSION = "registered_version"
    CHAMPION = "champion"
    ACTIVE = "active"
    PREVIEW = "preview"
    LOAD_TEST = "load_test"


@dataclass(frozen=True)
class Observation:
    """What the driver saw; a field it was not asked to observe stays None."""

    workflow: WorkflowObservation | None = None
    gates: GateSummary | None = None
    registered_version: str | None = None  # the candidate's registry version, once registered
    champion: str | None = None  # the version @champion points to
    active: str | None = None  # the version the active (production) address serves
    preview: PreviewObservation | None = None
    load_test: LoadTestObservation | None = None
    # Set (to why, naming it) when the Rollout the spec names does not exist: nothing else was seen.
    missing_rollout: str = ""


# --- what the driver must do -------------------------------------------------------------------


@dataclass(frozen=True)
class RunWorkflow:
    name: str


@dataclass(frozen=True)
class RegisterModel:
    run_id: str


@dataclass(frozen=True)
class DeployPreview:
    version: str


@dataclass(frozen=True)
class RunLoadTest:
    version: str


@dataclass(frozen=True)
class Promote:
    """Move @champion to `version` (remembering the old one) and switch the active side to it."""

    version: str
    reason: str


@dataclass(frozen=True)
class AbortPreview:
    reason: str


Action = RunWorkflow | RegisterModel | DeployPreview | RunLoadTest | Promote | AbortPreview


@dataclass(frozen=True)
class Decision:
    status: PromotionStatus
    actions: tuple[Action, ...] = ()


# --- the machine -------------------------------------------------------------------------------


def workflow_name(promotion: ModelPromotion) -> str:
    """Deterministic, so a resumed promotion finds its workflow instead of starting another; the
    suffix says what it does: train -> evaluate, or evaluate a registered version only."""
    suffix = "train" if promotion.spec.source.train is not None else "evaluate"
    return f"{promotion.metadata.name}-{suffix}"[:63].rstrip("-.")


# What each phase's handler reads itself, and the phases it may fall through to in the same round
# (a passing gate report goes on to register, deploy or promote without waiting for another round).
_READS: dict[Phase, frozenset[Need]] = {
    "Pending": frozenset({Need.REGISTERED_VERSION}),
    "Training": frozenset({Need.WORKFLOW}),
    "Evaluating": frozenset({Need.WORKFLOW}),
    "Gating": frozenset({Need.GATES, Need.REGISTERED_VERSION}),
    "Deploying": frozenset({Need.PREVIEW}),
    "LoadTesting": frozenset({Need.LOAD_TEST}),
    "AwaitingApproval": frozenset(),
    "Promoting": frozenset({Need.CHAMPION, Need.ACTIVE}),
    "Promoted": frozenset({Need.CHAMPION, Need.ACTIVE}),
    "Rejected": frozenset(),
    "Failed": frozenset(),
    "RolledBack": frozenset(),
}
_FALLS_THROUGH: dict[Phase, tuple[Phase, ...]] = {
    "Pending": ("Training", "Evaluating"),
    "Evaluating": ("Gating",),
    "Gating": ("Deploying", "Promoting"),
    "LoadTesting": ("AwaitingApproval", "Promoting"),
    "AwaitingApproval": ("Promoting",),
}
# Entering Training, Evaluating or Deploying asks for work and returns: what those phases read waits
# for the next round. Only phases whose handler runs in the same round contribute their reads.
_RUNS_ON_ENTRY: frozenset[Phase] = frozenset({"Gating", "Promoting"})


def _falls_through(promotion: ModelPromotion, phase: Phase) -> tuple[Phase, ...]:
    """A registered version's evaluation names the run holding its gate report only when it ends,
    after the round's observations were made: its Gating reads the report in the next round."""
    if phase == "Evaluating" and promotion.spec.source.train is None:
        return ()
    return _FALLS_THROUGH.get(phase, ())


def needs(promotion: ModelPromotion, phase: Phase) -> frozenset[Need]:
    """What the driver must observe for one round in `phase`: the phase's own reads and those of
    every phase it may fall through to. `decide` checks every read against this set."""
    wanted = set(_READS[phase])
    pending = list(_falls_through(promotion, phase))
    while pending:
        following = pending.pop()
        if following in _RUNS_ON_ENTRY:
            wanted |= _READS[following]
            pending.extend(_falls_through(promotion, following))
    if promotion.spec.rollout is None:
        wanted -= {Need.ACTIVE, Need.PREVIEW, Need.LOAD_TEST}
    return frozenset(wanted)


def decide(promotion: ModelPromotion, status: PromotionStatus, seen: Observation, now: datetime) -> Decision:
    """The next status and the actions that move the promotion forward; no actions means "wait"."""
    if seen.missing_rollout:
        return _wait_for_rollout(status, seen.missing_rollout, now)
    machine = _Machine(promotion, _resumed(status, now), seen, now)
    return machine.run()


def _wait_for_rollout(status: PromotionStatus, message: str, now: datetime) -> Decision:
    """GitOps may apply a promotion before its Rollout: wait in the same phase, saying why in the
    reason, message and Progressing condition (no history entry: nothing was entered)."""
    waiting = status.model_copy(deep=True)
    waiting.reason, waiting.message = ROLLOUT_NOT_FOUND, message
    _set_condition(waiting, "Progressing", "False", ROLLOUT_NOT_FOUND, message, now)
    return Decision(waiting)


def _resumed(status: PromotionStatus, now: datetime) -> PromotionStatus:
    """A copy of `status`, back to what its phase said before it waited for a Rollout that now exists."""
    resumed = status.model_copy(deep=True)
    if resumed.reason != ROLLOUT_NOT_FOUND:
        return resumed
    last = resumed.history[-1] if resumed.history else None
    resumed.reason, resumed.message = (last.reason, last.message) if last else ("", "")
    if last is None:
        resumed.conditions = [c for c in resumed.conditions if c.type != "Progressing"]
    else:
        value: Literal["True", "False"] = "False" if resumed.terminal else "True"
        _set_condition(resumed, "Progressing", value, last.reason, last.message, now)
    return resumed


def refuse_spec(status: PromotionStatus, message: str, now: datetime) -> Decision:
    """A spec the engine cannot follow (admission let it through): Failed once, with the reason."""
    if status.phase == "Failed" and status.reason == "InvalidSpec":
        return Decision(status)
    refused = status.model_copy(deep=True)
    _enter(refused, "Failed", "InvalidSpec", message, now)
    return Decision(refused)


def _enter(status: PromotionStatus, phase: Phase, reason: str, message: str, now: datetime) -> None:
    status.phase, status.reason, status.message = phase, reason, message
    status.history.append(Transition(phase=phase, at=now, reason=reason, message=message))
    _set_condition(status, "Progressing", "False" if status.terminal else "True", reason, message, now)
    if phase in TERMINAL_PHASES:
        _set_condition(status, "Promoted", "True" if phase == "Promoted" else "False", reason, message, now)


def _set_condition(
    status: PromotionStatus,
    kind: str,
    value: Literal["True", "False"],
    reason: str,
    message: str,
    now: datetime,
) -> None:
    previous = next((c for c in status.conditions if c.type == kind), None)
    since = previous.last_transition_time if previous and previous.status == value else now
    status.conditions = [c for c in status.conditions if c.type != kind] + [
        Condition(type=kind, status=value, reason=reason, message=message, last_transition_time=since)
    ]


class _Machine:
    def __init__(self, promotion: ModelPromotion, status: PromotionStatus, seen: Observation, now: datetime):
        self.promotion = promotion
        self.spec = promotion.spec
        self.status = status
        self._seen = seen
        self._allowed = needs(promotion, status.phase)
        self.now = now

    def _read(self, need: Need, value: _T) -> _T:
        """An observation, read only where `needs` declared it: a driver that trusts `needs`
        never hands the engine a blank it would mistake for "nothing there"."""
        if need not in self._allowed:
            raise AssertionError(f"phase {self.status.phase} read {need}, which `needs` does not declare")
        return value

    @property
    def _workflow(self) -> WorkflowObservation | None:
        return self._read(Need.WORKFLOW, self._seen.workflow)

    @property
    def _gates(self) -> GateSummary | None:
        return self._read(Need.GATES, self._seen.gates)

    @property
    def _registered(self) -> str | None:
        return self._read(Need.REGISTERED_VERSION, self._seen.registered_version)

    @property
    def _champion(self) -> str | None:
        return self._read(Need.CHAMPION, self._seen.champion)

    @property
    def _active(self) -> str | None:
        return self._read(Need.ACTIVE, self._seen.active)

    @property
    def _preview(self) -> PreviewObservation | None:
        return self._read(Need.PREVIEW, self._seen.preview)

    @property
    def _load_test(self) -> LoadTestObservation | None:
        return self._read(Need.LOAD_TEST, self._seen.load_test)

    def run(self) -> Decision:
        handler = getattr(self, f"_{self.status.phase.lower()}")
        actions: tuple[Action, ...] = handler()
        return Decision(self.status, actions)

    # transitions

    def _enter(self, phase: Phase, reason: str, message: str = "") -> None:
        _enter(self.status, phase, reason, message, self.now)

    def _fail(self, reason: str, message: str, *cleanup: Action) -> tuple[Action, ...]:
        self._enter("Failed", reason, message)
        return cleanup

    def _reject(self, reason: str, message: str, *cleanup: Action) -> tuple[Action, ...]:
        self._enter("Rejected", reason, message)
        return cleanup

    # phases

    def _pending(self) -> tuple[Action, ...]:
        source = self.spec.source
        self.status.workflow = workflow_name(self.promotion)
        if source.train is not None:
            self._enter("Training", "WorkflowSubmitted", f"workflow {self.status.workflow}")
            return (RunWorkflow(self.status.workflow),)
        version = source.model_version
        if self._registered != version:
            return self._fail("UnknownModelVersion", f"{self.spec.model} has no registered version {version}")
        self.status.model_version = version
        self._enter("Evaluating", "ExistingVersion", f"evaluating registered version {version}")
        return (RunWorkflow(self.status.workflow),)

    def _training(self) -> tuple[Action, ...]:
        return self._follow_workflow(RUN_ID_OUTPUT, "Evaluating", "Trained")

    def _evaluating(self) -> tuple[Action, ...]:
        return self._follow_workflow(DECISION_OUTPUT, "Gating", "Evaluated")

    def _follow_workflow(self, output: str, next_phase: Phase, reason: str) -> tuple[Action, ...]:
        workflow = self._workflow
        name = self.status.workflow or workflow_name(self.promotion)
        if workflow is not None and workflow.phase == "Failed":
            return self._fail("WorkflowFailed", workflow.message or f"workflow {name} failed")
        if workflow is None or output not in workflow.outputs:
            return (RunWorkflow(name),)
        if output == RUN_ID_OUTPUT:
            self.status.run_id = workflow.outputs[output]
            self._enter(next_phase, reason, f"MLflow run {self.status.run_id}")
        else:
            if self.spec.source.model_version is not None:
                return self._evaluated_version(workflow, name)
            self._enter(next_phase, reason, f"offline gates: {workflow.outputs[output]}")
        return self._gating() if next_phase == "Gating" else (RunWorkflow(name),)

    def _evaluated_version(self, workflow: WorkflowObservation, name: str) -> tuple[Action, ...]:
        """Gating waits a round: the gate report is in a run this round's observation could not name."""
        if EVALUATION_RUN_OUTPUT not in workflow.outputs:
            return self._fail("NoGateReport", f"workflow {name} names no evaluation run")
        self.status.run_id = workflow.outputs[EVALUATION_RUN_OUTPUT]
        self._enter("Gating", "Evaluated", f"offline gates: {workflow.outputs[DECISION_OUTPUT]}")
        return ()

    def _gating(self) -> tuple[Action, ...]:
        gates = self._gates
        if gates is None:
            return self._fail("NoGateReport", f"run {self.status.run_id} has no gate report")
        self.status.gates = gates
        if not gates.passed:
            return self._reject("GatesFailed", _describe(gates.failures))
        version = self.spec.source.model_version
        if version is not None:  # already registered: nothing to register, but it may have been deleted
            if self._registered != version:
                return self._fail("UnknownModelVersion", f"{self.spec.model} no longer has version {version}")
            return self._deploy_or_promote("GatesPassed", f"registered version {version}")
        if self._registered is None:
            assert self.status.run_id is not None  # set when leaving Training
            return (RegisterModel(self.status.run_id),)
        self.status.model_version = self._registered
        return self._deploy_or_promote("GatesPassed", f"registered as version {self.status.model_version}")

    def _deploy_or_promote(self, reason: str, message: str) -> tuple[Action, ...]:
        version = self._candidate()
        if self.spec.rollout is None:
            return self._start_promoting(reason, message + "; no rollout: registry only")
        self._enter("Deploying", reason, message)
        return (DeployPreview(version),)

    def _deploying(self) -> tuple[Action, ...]:
        version = self._candidate()
        preview = self._preview
        if preview is not None and preview.failure:
            return self._fail("PreviewFailed", preview.failure, AbortPreview("preview failed"))
        # A preview that answers with another version (old pods behind the preview address) is not ready.
        if preview is not None and preview.ready and preview.version == version:
            self._enter("LoadTesting", "PreviewReady", f"preview serves version {version}")
            return (RunLoadTest(version),)
        entered = self.status.entered_at()
        if entered is not None and self.now - entered > PREVIEW_DEADLINE:
            answering = preview.version if preview else None
            return self._fail(
                "PreviewTimeout",
                f"preview did not serve version {version} within {PREVIEW_DEADLINE} (answers {answering})",
                AbortPreview("preview timed out"),
            )
        return (DeployPreview(version),)

    def _loadtesting(self) -> tuple[Action, ...]:
        version = self._candidate()
        assert self.spec.rollout is not None  # only rollouts get here
        observed = self._load_test
        if observed is None:
            return (RunLoadTest(version),)
        if observed.result is None or observed.result.requests == 0:
            why = observed.error or "the load test produced no result"
            return self._fail("LoadTestFailed", why, AbortPreview("load test failed"))
        result = observed.result
        self.status.load_test = result
        self.status.load_test_gates = evaluate_load_gates(
            self.spec.rollout.load_test, p95_ms=result.p95_ms, error_rate=result.error_rate, rps=result.rps
        )
        blocking = [g for g in self.status.load_test_gates if g.enforced and g.verdict == "fail"]
        if blocking:
            return self._reject("LoadTestGatesFailed", _describe(blocking), AbortPreview("load test gates"))
        summary = f"p95 {result.p95_ms:.1f} ms, {result.rps:.0f} rps, errors {result.error_rate:.4f}"
        if self.spec.approval.required and self.status.approved_by is None:
            self._enter("AwaitingApproval", "LoadTestPassed", summary + "; waiting for `promoter approve`")
            return ()
        return self._start_promoting("LoadTestPassed", summary)

    def _awaitingapproval(self) -> tuple[Action, ...]:
        if self.status.approved_by is None:
            return ()
        return self._start_promoting("Approved", f"approved by {self.status.approved_by}")

    def _start_promoting(self, reason: str, message: str) -> tuple[Action, ...]:
        version = self._candidate()
        # Recorded before the alias moves: after a crash, the old champion is still known.
        if self._champion != version:
            self.status.previous_champion = self._champion
        self._enter("Promoting", reason, message)
        return self._promoting()

    def _promoting(self) -> tuple[Action, ...]:
        version = self._candidate()
        if self._serves(version):
            previous = self.status.previous_champion
            self._enter("Promoted", "Promoted", f"@champion is version {version} (was {previous or 'none'})")
            return ()
        return (Promote(version, f"promotion {self.promotion.metadata.name}"),)

    def _promoted(self) -> tuple[Action, ...]:
        if self.status.rollback_requested_by is None:
            return ()
        previous = self.status.previous_champion
        if previous is None:
            self.status.rollback_requested_by = None
            self.status.message = "rollback refused: there was no champion before this promotion"
            return ()
        if self._serves(previous):
            by = self.status.rollback_requested_by
            self._enter("RolledBack", "RolledBack", f"@champion is version {previous} again (by {by})")
            return ()
        return (Promote(previous, f"rollback of promotion {self.promotion.metadata.name}"),)

    def _terminal(self) -> tuple[Action, ...]:
        return ()

    _rejected = _failed = _rolledback = _terminal

    # helpers

    def _candidate(self) -> str:
        version = self.status.model_version
        assert version is not None, "phases after Gating always have a model version"
        return version

    def _serves(self, version: str) -> bool:
        return self._champion == version and (self.spec.rollout is None or self._active == version)


def _describe(failures: list[GateResult], shown: int = 3) -> str:
    """The first few blocking gates, readable in one line; the full list is in the status and report."""
    parts = []
    for gate in failures[:shown]:
        actual = "missing" if gate.actual is None else f"{gate.actual:.4g}"
        threshold = "?" if gate.threshold is None else f"{gate.threshold:.4g}"
        parts.append(f"{gate.name} {actual} (needs {gate.comparison} {threshold})")
    if len(failures) > shown:
        parts.append(f"and {len(failures) - shown} more")
    return "; ".join(parts) or "a gate failed"
