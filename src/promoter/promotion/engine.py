"""The promotion state machine: (spec, status, observation, now) -> (next status, actions).

Pure: it knows nothing of kopf, subprocesses, HTTP or MLflow. A driver (the kopf operator, or
`promoter run` on one machine) observes the world through its backends, asks `decide`, saves the
returned status FIRST and only then carries out the actions. Actions are idempotent requests ("make
sure the preview serves version 7"), so a driver killed between saving and acting simply asks again
after a restart and gets the same actions back: nothing is trained, registered or promoted twice.

Under GitOps (an `Environment` that requires git), a promotion is acted on only once the driver
has traced it to the commit Argo CD synced it from; an environment that publishes records commits,
after its own promotion, the ModelPromotion the next environment is to run (the production record).

Phases: Pending -> Training -> Evaluating -> Gating -> [AwaitingApproval] -> Deploying -> LoadTesting
-> [AwaitingApproval] -> Promoting -> Promoted, or Rejected (a gate said no), Failed (something
broke), RolledBack. A person is asked after Gating when a paired gate is inconclusive, and after the
load test when the spec requires approval. A registered version (`source.modelVersion`) skips
Training, never Evaluating: a version that was rolled back must pass today's gates against today's
champion before it serves again.
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
    ProductionRecord,
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
NOT_SYNCED_YET = "AwaitingGitSync"  # the status reason while a GitOps environment traces the promotion
RECORD_PUBLISHED = "RecordPublished"  # the condition saying the production record is committed
# The reason a promotion waits for a person after Gating: no gate failed, but an enforced paired gate
# could show neither "no worse" nor "worse" (AwaitingApproval also follows a load test when
# spec.approval.required).
GATES_INCONCLUSIVE = "GatesInconclusive"
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


@dataclass(frozen=True)
class ProvenanceObservation:
    """Where a promotion came from, in an environment that acts only on what git holds.

    `commit` set: Argo CD synced it from that commit. Else `refusal` set: it cannot have come from
    git (applied by hand, or synced by another Application): it is refused. Else it is not traced
    yet (Argo CD's status lags its writes): the promotion waits, saying `waiting`."""

    commit: str | None
    refusal: str = ""
    waiting: str = ""


@dataclass(frozen=True)
class RecordObservation:
    """The production record on its branch: the commit that wrote it, None while it is not there."""

    commit: str | None


@dataclass(frozen=True)
class Environment:
    """What the environment running the promotion asks of it, beyond the spec (the driver's
    configuration, an input like any other: the engine stays a pure function).

    `requires_git`: act only on promotions traced to a git commit (GitOps: no hand-applied path).
    `publishes_record`: once promoted, commit the production record for the next environment."""

    requires_git: bool = False
    publishes_record: bool = False


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
    PROVENANCE = "provenance"
    PROVEN_IMAGE = "proven_image"
    RECORD = "record"


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
    provenance: ProvenanceObservation | None = None
    proven_image: str | None = None  # the image the version was proven with, where one was recorded
    record: RecordObservation | None = None
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
    image: str | None = None  # the image the spec pins; None: the Rollout's


@dataclass(frozen=True)
class RunLoadTest:
    version: str


@dataclass(frozen=True)
class Promote:
    """Move @champion to `version` (remembering the old one) and switch the active side to it."""

    version: str
    reason: str
    image: str | None = None  # the candidate's pinned image; None on a rollback: the one it ran in


@dataclass(frozen=True)
class AbortPreview:
    reason: str


@dataclass(frozen=True)
class PublishRecord:
    """Commit the production record of `version` (what the next environment runs, and the evidence
    it was promoted on: the status as it stands)."""

    version: str
    status: PromotionStatus


Action = RunWorkflow | RegisterModel | DeployPreview | RunLoadTest | Promote | AbortPreview | PublishRecord


@dataclass(frozen=True)
class Decision:
    status: PromotionStatus
    actions: tuple[Action, ...] = ()


# --- the machine -------------------------------------------------------------------------------


def _pinned_image(promotion: ModelPromotion) -> str | None:
    """The image a registered version must have been proven with: the one the spec pins. A trained
    candidate is proven by this very promotion, with whatever image it pins (or the Rollout has)."""
    rollout = promotion.spec.rollout
    if promotion.spec.source.model_version is None or rollout is None:
        return None
    return rollout.image


def record_path(promotion: ModelPromotion) -> str:
    """The production record's file, relative to the records directory: one per promotion, named
    after it, so a retried publish rewrites the same file and a revert removes exactly it."""
    return f"{promotion.metadata.name}.yaml"


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


def needs(
    promotion: ModelPromotion, phase: Phase, environment: Environment = Environment()
) -> frozenset[Need]:
    """What the driver must observe for one round in `phase`: the phase's own reads and those of
    every phase it may fall through to. `decide` checks every read against this set."""
    wanted = set(_READS[phase])
    if phase == "Pending":
        if environment.requires_git:
            wanted.add(Need.PROVENANCE)
        if _pinned_image(promotion) is not None:
            wanted.add(Need.PROVEN_IMAGE)
    if phase == "Promoted" and environment.publishes_record:
        wanted.add(Need.RECORD)
    pending = list(_falls_through(promotion, phase))
    while pending:
        following = pending.pop()
        if following in _RUNS_ON_ENTRY:
            wanted |= _READS[following]
            pending.extend(_falls_through(promotion, following))
    if promotion.spec.rollout is None:
        wanted -= {Need.ACTIVE, Need.PREVIEW, Need.LOAD_TEST}
    return frozenset(wanted)


def decide(
    promotion: ModelPromotion,
    status: PromotionStatus,
    seen: Observation,
    now: datetime,
    environment: Environment = Environment(),
) -> Decision:
    """The next status and the actions that move the promotion forward; no actions means "wait"."""
    if seen.missing_rollout:
        return _wait_for_rollout(status, seen.missing_rollout, now)
    machine = _Machine(promotion, _resumed(status, now), seen, now, environment)
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
    def __init__(
        self,
        promotion: ModelPromotion,
        status: PromotionStatus,
        seen: Observation,
        now: datetime,
        environment: Environment,
    ):
        self.promotion = promotion
        self.spec = promotion.spec
        self.status = status
        self._seen = seen
        self.environment = environment
        self._allowed = needs(promotion, status.phase, environment)
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

    @property
    def _provenance(self) -> ProvenanceObservation | None:
        return self._read(Need.PROVENANCE, self._seen.provenance)

    @property
    def _proven_image(self) -> str | None:
        return self._read(Need.PROVEN_IMAGE, self._seen.proven_image)

    @property
    def _record(self) -> RecordObservation | None:
        return self._read(Need.RECORD, self._seen.record)

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
        if self.environment.requires_git and self.status.git_commit is None:
            provenance = self._provenance
            if provenance is None or provenance.commit is None:
                if provenance is not None and provenance.refusal:
                    return self._fail("NotFromGit", provenance.refusal)
                self.status.reason = NOT_SYNCED_YET
                self.status.message = provenance.waiting if provenance else "tracing the promotion to git"
                return ()
            self.status.git_commit = provenance.commit
        image = _pinned_image(self.promotion)
        if image is not None and self._proven_image != image:
            return self._fail("ImageNotProven", self._unproven(image))
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
        if gates.outcome == "fail":
            return self._reject("GatesFailed", _describe(gates.failures))
        reason = "GatesPassed"
        if gates.outcome == "inconclusive":
            if self.status.approved_by is None:
                message = _describe(gates.inconclusive) + "; waiting for `promoter approve`"
                self._enter("AwaitingApproval", GATES_INCONCLUSIVE, message)
                return ()
            reason = "InconclusiveGatesApproved"
        version = self.spec.source.model_version
        if version is not None:  # already registered: nothing to register, but it may have been deleted
            if self._registered != version:
                return self._fail("UnknownModelVersion", f"{self.spec.model} no longer has version {version}")
            return self._deploy_or_promote(reason, f"registered version {version}")
        if self._registered is None:
            assert self.status.run_id is not None  # set when leaving Training
            return (RegisterModel(self.status.run_id),)
        self.status.model_version = self._registered
        return self._deploy_or_promote(reason, f"registered as version {self.status.model_version}")

    def _deploy_or_promote(self, reason: str, message: str) -> tuple[Action, ...]:
        version = self._candidate()
        if self.spec.rollout is None:
            return self._start_promoting(reason, message + "; no rollout: registry only")
        self._enter("Deploying", reason, message)
        return (DeployPreview(version, self._image()),)

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
        return (DeployPreview(version, self._image()),)

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
        approved = f"approved by {self.status.approved_by}"
        last = self.status.history[-1] if self.status.history else None
        if last is not None and last.reason == GATES_INCONCLUSIVE:
            # Back to Gating, which reads the report again next round and goes on: the approval is
            # the promotion's (approval.required does not ask twice); the load test still gates.
            self._enter("Gating", "Approved", approved + ": inconclusive gates accepted")
            return ()
        return self._start_promoting("Approved", approved)

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
            if self.environment.publishes_record:  # before entering: Promoted is unsettled until published
                self.status.record = ProductionRecord(path=record_path(self.promotion))
            self._enter("Promoted", "Promoted", f"@champion is version {version} (was {previous or 'none'})")
            if self.status.record is None:
                return ()
            # Not observed this round (Promoting reads no record): publishing is idempotent anyway.
            return (self._publish_request(),)
        return (Promote(version, self._because(f"promotion {self.promotion.metadata.name}"), self._image()),)

    def _promoted(self) -> tuple[Action, ...]:
        if self.status.record is not None and not self.status.record.published:
            return self._publish()
        if self.status.rollback_requested_by is None:
            return ()
        previous = self.status.previous_champion
        if previous is None:
            self.status.rollback_requested_by = None
            self.status.message = "rollback refused: there was no champion before this promotion"
            return ()
        by = self.status.rollback_requested_by
        if self._serves(previous):
            self._enter("RolledBack", "RolledBack", f"@champion is version {previous} again (by {by})")
            return ()
        return (Promote(previous, f"rollback of promotion {self.promotion.metadata.name} by {by}"),)

    def _publish(self) -> tuple[Action, ...]:
        """Commit the production record, once: done when its commit is seen on the branch."""
        record = self.status.record
        if record is None or record.published:
            return ()
        seen = self._record
        if seen is None or seen.commit is None:
            return (self._publish_request(),)
        record.commit = seen.commit
        message = f"production record {record.path} committed as {seen.commit}"
        _set_condition(self.status, RECORD_PUBLISHED, "True", RECORD_PUBLISHED, message, self.now)
        _set_condition(self.status, "Progressing", "False", "Promoted", message, self.now)
        return ()

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

    def _publish_request(self) -> PublishRecord:
        return PublishRecord(self._candidate(), self.status.model_copy(deep=True))

    def _image(self) -> str | None:
        return self.spec.rollout.image if self.spec.rollout is not None else None

    def _because(self, reason: str) -> str:
        """Why an alias moves, as its history keeps it: with the git commit that caused it, if any."""
        commit = self.status.git_commit
        return f"{reason} (git {commit})" if commit else reason

    def _unproven(self, image: str) -> str:
        version = self.spec.source.model_version or "(trained)"
        proven = self._proven_image
        if proven is None:
            return (
                f"{self.spec.model} version {version} was never promoted with an image; {image} is unproven"
            )
        return f"{self.spec.model} version {version} was proven with {proven}, not {image}"


def _describe(failures: list[GateResult], shown: int = 3) -> str:
    """The first few blocking (or inconclusive) gates, readable in one line; the full list is in the
    status and report."""
    parts = []
    for gate in failures[:shown]:
        actual = "missing" if gate.actual is None else f"{gate.actual:.4g}"
        threshold = "?" if gate.threshold is None else f"{gate.threshold:.4g}"
        verdict = " inconclusive" if gate.verdict == "inconclusive" else ""
        parts.append(f"{gate.name}{verdict} {actual} (needs {gate.comparison} {threshold})")
    if len(failures) > shown:
        parts.append(f"and {len(failures) - shown} more")
    return "; ".join(parts) or "a gate failed"
