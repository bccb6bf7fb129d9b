"""In-memory stand-ins for the driver's four ports and its status store: plain dicts, no I/O.

Each plays the behaviour of a real backend that the driver relies on (named in its docstring), so a
test can walk a promotion through every phase in milliseconds. They count what was done (trainings,
registrations, alias moves, traffic switches), record every observation as the `Need` it serves, and
can "die" at named points (`Fuse`): the work done before the point stays done, like a process killed
half-way through a request, and the next call is a fresh driver picking up the pieces.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from promoter.promotion.driver import Backends
from promoter.promotion.engine import (
    DECISION_OUTPUT,
    EVALUATION_RUN_OUTPUT,
    RUN_ID_OUTPUT,
    LoadTestObservation,
    Need,
    PreviewObservation,
    ProvenanceObservation,
    RecordObservation,
    WorkflowObservation,
    record_path,
)
from promoter.promotion.gates import GateResult
from promoter.promotion.names import CHAMPION_ALIAS, PREVIOUS_CHAMPION_ALIAS
from promoter.promotion.spec import LoadTest, ModelPromotion
from promoter.promotion.status import GateSummary, LoadTestResult, PromotionStatus


class Crash(Exception):
    """The simulated process died at this point; what it did before stays done."""


@dataclass
class Fuse:
    """Named points where the process dies, each once: a test arms a point, the backend reaching it
    raises `Crash` after doing its part of the work."""

    armed: set[str] = field(default_factory=set)
    blown: list[str] = field(default_factory=list)

    def arm(self, *points: str) -> None:
        self.armed.update(points)

    def point(self, name: str) -> None:
        if name in self.armed:
            self.armed.remove(name)
            self.blown.append(name)
            raise Crash(name)


@dataclass
class Observations:
    """Every observation the driver made, as the `Need` it serves. With a `fence`, observing
    anything outside it is an error: the check that the driver observes only what `needs` says."""

    seen: list[Need] = field(default_factory=list)
    fence: frozenset[Need] | None = None

    def record(self, need: Need) -> None:
        if self.fence is not None and need not in self.fence:
            raise AssertionError(f"observed {need}, outside {sorted(self.fence)}")
        self.seen.append(need)


@dataclass
class InMemoryStore:
    """The promotion's status, as the CRD's `.status` or the local status.json keep it: `load` and
    `save` copy, so nothing the driver holds in memory survives a crash unless it was saved.
    Point `saved <Phase>`: the process dies right after saving a status in that phase."""

    fuse: Fuse
    status: PromotionStatus = field(default_factory=PromotionStatus)
    saves: int = 0

    def load(self) -> PromotionStatus:
        return self.status.model_copy(deep=True)

    def save(self, status: PromotionStatus) -> None:
        self.status = status.model_copy(deep=True)
        self.saves += 1
        self.fuse.point(f"saved {status.phase}")


@dataclass
class AliasMove:
    model: str
    alias: str
    from_version: str | None
    to_version: str
    why: str


class InMemoryRegistry:
    """Plays src/promoter/registry.py's MlflowRegistry over an MLflow store: runs (what training
    logged), gate reports (the run's gate_report.json artifact), versions registered from runs,
    aliases, and the alias-move history MLflow does not keep.

    `register` is idempotent per run id; an alias move is recorded, then made, and a retry finds its
    own record, so the history never misses a move nor holds one twice. Points: `registered` (the
    version exists, the call dies before returning), `recorded <alias>` (the move is in the history,
    the alias has not moved), `moved <alias>` (the alias has moved, the call dies before returning).
    """

    def __init__(self, fuse: Fuse, observations: Observations) -> None:
        self.fuse = fuse
        self.observations = observations
        self.runs: set[str] = set()
        self.gate_reports: dict[str, GateSummary] = {}
        self.versions: dict[str, dict[str, str]] = {}  # model -> version -> run id
        self.aliases: dict[str, dict[str, str]] = {}  # model -> alias -> version
        self.alias_moves: list[AliasMove] = []
        self.registrations = 0
        self.proven_images: dict[tuple[str, str], str] = {}  # (model, version) -> image

    # what the pipelines do outside the port

    def log_run(self, run_id: str) -> None:
        self.runs.add(run_id)

    def add_version(self, model: str, run_id: str) -> str:
        self.log_run(run_id)
        versions = self.versions.setdefault(model, {})
        version = str(len(versions) + 1)
        versions[version] = run_id
        return version

    def crown(self, model: str, version: str) -> None:
        """Make `version` the champion the way a past promotion would have (history included)."""
        self.move_champion(model, version, "set up by the test")

    # the Registry port

    def gate_summary(self, run_id: str) -> GateSummary | None:
        self.observations.record(Need.GATES)
        return self.gate_reports.get(run_id)

    def registered_version(self, model: str, run_id: str) -> str | None:
        self.observations.record(Need.REGISTERED_VERSION)
        return self._version_of(model, run_id)

    def has_version(self, model: str, version: str) -> bool:
        self.observations.record(Need.REGISTERED_VERSION)
        return version in self.versions.get(model, {})

    def champion(self, model: str) -> str | None:
        self.observations.record(Need.CHAMPION)
        return self.aliases.get(model, {}).get(CHAMPION_ALIAS)

    def register(self, model: str, run_id: str, promotion: str) -> str:
        existing = self._version_of(model, run_id)
        if existing is not None:
            return existing
        if run_id not in self.runs:
            raise LookupError(f"run {run_id} logged no model to register")
        self.registrations += 1
        version = self.add_version(model, run_id)
        self.fuse.point("registered")
        return version

    def move_champion(self, model: str, version: str, reason: str) -> None:
        current = self.aliases.get(model, {}).get(CHAMPION_ALIAS)
        if current == version:
            return
        if current is not None:
            self._set_alias(model, PREVIOUS_CHAMPION_ALIAS, current, reason)
        self._set_alias(model, CHAMPION_ALIAS, version, reason)

    def proven_image(self, model: str, version: str) -> str | None:
        self.observations.record(Need.PROVEN_IMAGE)
        return self.proven_images.get((model, version))

    def record_proven_image(self, model: str, version: str, image: str, promotion: str) -> None:
        self.proven_images[(model, version)] = image

    # helpers

    def _version_of(self, model: str, run_id: str) -> str | None:
        found = [int(v) for v, run in self.versions.get(model, {}).items() if run == run_id]
        return str(min(found)) if found else None

    def _set_alias(self, model: str, alias: str, version: str, reason: str) -> None:
        aliases = self.aliases.setdefault(model, {})
        previous = aliases.get(alias)
        if previous == version:
            return
        move = AliasMove(model, alias, previous, version, reason)
        last = next((m for m in reversed(self.alias_moves) if (m.model, m.alias) == (model, alias)), None)
        if last != move:
            self.alias_moves.append(move)
        self.fuse.point(f"recorded {alias}")
        aliases[alias] = version
        self.fuse.point(f"moved {alias}")


@dataclass
class _Workflow:
    steps: list[str]
    promotion: str
    outputs: dict[str, str] = field(default_factory=dict)
    observed: int = 0
    failure: str = ""

    @property
    def done(self) -> bool:
        return all(any(key.startswith(f"{step}.") for key in self.outputs) for step in self.steps)


class InMemoryWorkflows:
    """Plays Argo Workflows (operator/argo_workflows.py) and the local executor: `run` creates the
    workflow once per name (a second create is a repeat), and a created workflow finishes one more
    step of its DAG (train -> evaluate, or evaluate only for a registered version) every
    `observations_per_step` observations, its outputs named "<task>.<parameter>".

    The train step logs a run; the evaluate step writes the gate report `gates` for the run it
    evaluated (for a registered version, a new evaluation run). `fail_step` makes that step fail.
    Point `submitted`: the workflow exists, the call dies before returning.
    """

    def __init__(
        self,
        registry: InMemoryRegistry,
        fuse: Fuse,
        observations: Observations,
        gates: GateSummary,
        fail_step: str | None = None,
        observations_per_step: int = 1,
    ) -> None:
        self.registry = registry
        self.fuse = fuse
        self.observations = observations
        self.gates = gates
        self.fail_step = fail_step
        self.observations_per_step = observations_per_step
        self.workflows: dict[str, _Workflow] = {}
        self.trainings = 0
        self.evaluations = 0

    def run(self, promotion: ModelPromotion, name: str) -> None:
        if name in self.workflows:
            return
        steps = ["train", "evaluate"] if promotion.spec.source.train is not None else ["evaluate"]
        self.workflows[name] = _Workflow(steps, promotion.metadata.name)
        self.fuse.point("submitted")

    def observe(self, promotion: ModelPromotion, name: str) -> WorkflowObservation | None:
        self.observations.record(Need.WORKFLOW)
        workflow = self.workflows.get(name)
        if workflow is None:
            return None
        workflow.observed += 1
        if not workflow.failure and not workflow.done and workflow.observed % self.observations_per_step == 0:
            self._next_step(workflow, name)
        if workflow.failure:
            return WorkflowObservation("Failed", dict(workflow.outputs), workflow.failure)
        return WorkflowObservation("Succeeded" if workflow.done else "Running", dict(workflow.outputs))

    def _next_step(self, workflow: _Workflow, name: str) -> None:
        step = next(s for s in workflow.steps if not any(k.startswith(f"{s}.") for k in workflow.outputs))
        if step == self.fail_step:
            workflow.failure = f"step {step!r} exited with 1"
            return
        if step == "train":
            self.trainings += 1
            run_id = f"{name}-run"
            self.registry.log_run(run_id)
            workflow.outputs[RUN_ID_OUTPUT] = run_id
            return
        self.evaluations += 1
        evaluated = workflow.outputs.get(RUN_ID_OUTPUT)
        if evaluated is None:  # a registered version: the evaluation is a run of its own
            evaluated = f"{name}-run"
            self.registry.log_run(evaluated)
            workflow.outputs[EVALUATION_RUN_OUTPUT] = evaluated
        report = f"runs:/{evaluated}/gate_report.json"
        self.registry.gate_reports[evaluated] = self.gates.model_copy(update={"report_uri": report})
        workflow.outputs[DECISION_OUTPUT] = "pass" if self.gates.passed else "fail"


@dataclass
class _Rollout:
    active: str | None = None
    standby: str | None = None  # the side the last switch replaced: hot, the rollback target
    preview: str | None = None
    preview_observed: int = 0
    images: dict[str, str] = field(default_factory=dict)  # version -> the image it ran in
    template_image: str = "promoter@sha256:" + "0" * 64  # what the Rollout's template has


class InMemoryRollouts:
    """Plays blue/green (src/promoter/local/rollout.py, Argo Rollouts): an active side serving
    production, a preview side for the candidate, and `promote` switching traffic while the side it
    replaces stays hot. A preview answers with its version once it has been observed
    `ready_after` times (never, with `never_ready`); `preview_failure` makes it crash instead.
    Point `switched`: traffic is on the new version, the call dies before returning.
    """

    def __init__(
        self,
        fuse: Fuse,
        observations: Observations,
        ready_after: int = 2,
        never_ready: bool = False,
        preview_failure: str = "",
    ) -> None:
        self.fuse = fuse
        self.observations = observations
        self.ready_after = ready_after
        self.never_ready = never_ready
        self.preview_failure = preview_failure
        self.rollouts: dict[str, _Rollout] = {}
        self.previews_started = 0
        self.switches = 0
        self.aborts = 0

    def serve(self, rollout: str, version: str) -> None:
        """Put `version` on the active side, as an earlier promotion would have."""
        self.rollouts.setdefault(rollout, _Rollout()).active = version

    def deploy_preview(self, rollout: str, model: str, version: str, image: str | None = None) -> None:
        state = self.rollouts.setdefault(rollout, _Rollout())
        state.template_image = image or state.images.get(version) or state.template_image
        state.images[version] = state.template_image
        if state.preview == version:
            return
        state.preview, state.preview_observed = version, 0
        self.previews_started += 1

    def preview(self, rollout: str) -> PreviewObservation | None:
        self.observations.record(Need.PREVIEW)
        state = self.rollouts.get(rollout)
        if state is None or state.preview is None:
            return None
        if self.preview_failure:
            return PreviewObservation(None, False, failure=self.preview_failure)
        state.preview_observed += 1
        if self.never_ready or state.preview_observed < self.ready_after:
            return PreviewObservation(None, False)
        return PreviewObservation(state.preview, True)

    def active_version(self, rollout: str) -> str | None:
        self.observations.record(Need.ACTIVE)
        state = self.rollouts.get(rollout)
        return state.active if state else None

    def promote(self, rollout: str, model: str, version: str, image: str | None = None) -> None:
        state = self.rollouts.setdefault(rollout, _Rollout())
        state.template_image = image or state.images.get(version) or state.template_image
        state.images[version] = state.template_image
        if state.active != version:
            state.standby, state.active = state.active, version
            self.switches += 1
        if state.preview == version:
            state.preview = None
        self.fuse.point("switched")

    def abort(self, rollout: str) -> None:
        state = self.rollouts.get(rollout)
        if state is not None and state.preview is not None:
            state.preview = None
            self.aborts += 1

    def serving_image(self, rollout: str) -> str | None:
        return self.rollouts.setdefault(rollout, _Rollout()).template_image


class InMemoryProvenance:
    """Plays operator/argo_cd.py: a promotion is traced to `commit` once Argo CD has listed it
    (after `lag` observations); with `refusal` set, it was applied by hand."""

    def __init__(self, observations: Observations, commit: str, lag: int = 0, refusal: str = "") -> None:
        self.observations, self.commit, self.lag, self.refusal = observations, commit, lag, refusal
        self.traced = 0

    def trace(self, promotion: ModelPromotion) -> ProvenanceObservation:
        self.observations.record(Need.PROVENANCE)
        self.traced += 1
        if self.refusal:
            return ProvenanceObservation(None, refusal=self.refusal)
        if self.traced <= self.lag:
            return ProvenanceObservation(None, waiting="waiting for Argo CD to list it")
        return ProvenanceObservation(self.commit)


@dataclass
class PublishedRecord:
    version: str
    image: str | None
    status: PromotionStatus


class InMemoryRecords:
    """Plays src/promoter/gitops/repository.py's GitRecords: one file per promotion on a branch; a
    record already there is not committed again. Point `pushed`: the commit is on the branch, the
    call dies before returning."""

    def __init__(self, fuse: Fuse, observations: Observations) -> None:
        self.fuse, self.observations = fuse, observations
        self.branch: dict[str, PublishedRecord] = {}  # path -> record
        self.commits = 0

    def publish(
        self, promotion: ModelPromotion, version: str, status: PromotionStatus, image: str | None
    ) -> None:
        path = record_path(promotion)
        if path in self.branch:
            return
        self.branch[path] = PublishedRecord(version, image, status)
        self.commits += 1
        self.fuse.point("pushed")

    def observe(self, promotion: ModelPromotion) -> RecordObservation:
        self.observations.record(Need.RECORD)
        path = record_path(promotion)
        return RecordObservation(f"commit-{path}" if path in self.branch else None)


class InMemoryLoadTests:
    """Plays the load tests (src/promoter/local/loadtests.py, operator/load_test_jobs.py): one test
    per key (`driver.load_test_key`: promotion and version), started once, against the rollout's
    preview (no preview: an error result), its outcome visible after `observations_to_finish`
    observations. `outcome` is what it measured, or the error it crashed with.
    """

    def __init__(
        self,
        rollouts: InMemoryRollouts,
        observations: Observations,
        outcome: LoadTestResult | str,
        observations_to_finish: int = 2,
    ) -> None:
        self.rollouts = rollouts
        self.observations = observations
        self.outcome = outcome
        self.observations_to_finish = observations_to_finish
        self.tests: dict[str, int] = {}  # key -> observations so far
        self.errors: dict[str, str] = {}

    def run(self, key: str, rollout: str, profile: LoadTest) -> None:
        if key in self.tests:
            return
        self.tests[key] = 0
        state = self.rollouts.rollouts.get(rollout)
        if state is None or state.preview is None:
            self.errors[key] = f"rollout {rollout} has no preview to load-test"

    def observe(self, key: str) -> LoadTestObservation | None:
        self.observations.record(Need.LOAD_TEST)
        if key not in self.tests:
            return None
        self.tests[key] += 1
        if self.tests[key] < self.observations_to_finish:
            return None
        error = self.errors.get(key) or (self.outcome if isinstance(self.outcome, str) else "")
        if error:
            return LoadTestObservation(None, error=error)
        assert isinstance(self.outcome, LoadTestResult)
        return LoadTestObservation(self.outcome)


def measured(**overrides: float) -> LoadTestResult:
    """A load test result well within the budgets the driver tests use."""
    values: dict[str, float] = {
        "requests": 500,
        "failures": 0,
        "rps": 100.0,
        "p50_ms": 5.0,
        "p95_ms": 20.0,
        "p99_ms": 30.0,
        "duration_seconds": 5.0,
    }
    return LoadTestResult.model_validate(values | overrides)


def failing_gate(name: str = "absolute.accuracy") -> GateResult:
    """An enforced offline gate that failed: what a rejected candidate's report holds."""
    return GateResult(
        name=name,
        kind="absolute",
        metric="accuracy",
        actual=0.5,
        threshold=0.9,
        verdict="fail",
        enforced=True,
    )


@dataclass
class World:
    """Everything the driver talks to, sharing one fuse and one observation log."""

    fuse: Fuse
    observations: Observations
    store: InMemoryStore
    registry: InMemoryRegistry
    workflows: InMemoryWorkflows
    rollouts: InMemoryRollouts
    load_tests: InMemoryLoadTests
    provenance: InMemoryProvenance | None = None
    records: InMemoryRecords | None = None

    @property
    def backends(self) -> Backends:
        return Backends(
            self.workflows, self.registry, self.rollouts, self.load_tests, self.provenance, self.records
        )


def world(
    gates: GateSummary | None = None,
    fail_step: str | None = None,
    load_test: LoadTestResult | str | None = None,
    never_ready: bool = False,
    preview_failure: str = "",
) -> World:
    fuse, observations = Fuse(), Observations()
    registry = InMemoryRegistry(fuse, observations)
    rollouts = InMemoryRollouts(fuse, observations, never_ready=never_ready, preview_failure=preview_failure)
    return World(
        fuse=fuse,
        observations=observations,
        store=InMemoryStore(fuse),
        registry=registry,
        workflows=InMemoryWorkflows(
            registry, fuse, observations, gates or GateSummary(passed=True), fail_step
        ),
        rollouts=rollouts,
        load_tests=InMemoryLoadTests(rollouts, observations, measured() if load_test is None else load_test),
    )
