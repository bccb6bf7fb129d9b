"""A ModelPromotion's status: where it is, what it produced, and how it got there.

It is the promotion's only memory. The engine reads it back after a crash, so every identifier a
later phase needs (run id, model version, previous champion) is written here before the action that
depends on it is taken. Like the spec, it is camelCase on the wire (the CRD's `.status`).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from promoter.promotion.gates import Decision, GateResult

Phase = Literal[
    "Pending",
    "Training",
    "Evaluating",
    "Gating",
    "Deploying",
    "LoadTesting",
    "AwaitingApproval",
    "Promoting",
    "Promoted",
    "Rejected",
    "Failed",
    "RolledBack",
]
TERMINAL_PHASES: frozenset[Phase] = frozenset({"Promoted", "Rejected", "Failed", "RolledBack"})


def utc_now() -> datetime:
    return datetime.now(UTC)


class _Status(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    def to_document(self) -> dict[str, object]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class Transition(_Status):
    """One entry of the promotion's history: the phase entered, when, and why."""

    phase: Phase
    at: datetime
    reason: str
    message: str = ""


class Condition(_Status):
    """Kubernetes-style condition, so `kubectl wait --for=condition=Promoted` works."""

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str = ""
    last_transition_time: datetime


class LoadTestResult(_Status):
    """What the load generator measured against the preview; a result always has requests in it."""

    requests: int
    failures: int
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    duration_seconds: float

    @property
    def error_rate(self) -> float:
        return self.failures / self.requests if self.requests else 1.0


class GateSummary(_Status):
    """The decision of a gate report and the gates behind it; the full report is an MLflow artifact.

    `inconclusive` holds the evidence a person approves or not (AwaitingApproval): the paired
    statistics of every class that could not be shown no worse, nor worse."""

    passed: bool
    decision: Decision | None = None  # None in statuses saved before it existed: `passed` says it
    failures: list[GateResult] = Field(default_factory=list)
    inconclusive: list[GateResult] = Field(default_factory=list)
    advisory_failures: list[GateResult] = Field(default_factory=list)
    report_uri: str = ""

    @property
    def outcome(self) -> Decision:
        if self.decision is not None:
            return self.decision
        return "pass" if self.passed else "fail"


class ProductionRecord(_Status):
    """The record a promoting environment commits for the next one (a ModelPromotion pinning the
    version and image it proved): pending until the commit is observed on the branch."""

    path: str
    commit: str | None = None  # the commit that wrote it; None: not published yet

    @property
    def published(self) -> bool:
        return self.commit is not None


class PromotionStatus(_Status):
    phase: Phase = "Pending"
    reason: str = ""
    message: str = ""
    workflow: str | None = None
    run_id: str | None = None
    model_version: str | None = None
    previous_champion: str | None = None
    gates: GateSummary | None = None
    load_test: LoadTestResult | None = None
    load_test_gates: list[GateResult] = Field(default_factory=list)
    approved_by: str | None = None
    rollback_requested_by: str | None = None
    git_commit: str | None = None  # the commit Argo CD synced this promotion from (GitOps)
    record: ProductionRecord | None = None
    conditions: list[Condition] = Field(default_factory=list)
    history: list[Transition] = Field(default_factory=list)

    @property
    def terminal(self) -> bool:
        """Settled: nothing more to do unless a person asks. A Promoted promotion is not settled
        while a rollback is asked for, or while its production record is not published yet."""
        if self.phase != "Promoted":
            return self.phase in TERMINAL_PHASES
        return self.rollback_requested_by is None and (self.record is None or self.record.published)

    def entered_at(self) -> datetime | None:
        return self.history[-1].at if self.history else None

    def phase_seconds(self, now: datetime | None = None) -> list[tuple[Phase, float]]:
        """Wall time spent in each phase, in order (the last one up to `now`)."""
        spans: list[tuple[Phase, float]] = []
        for entry, following in zip(self.history, self.history[1:], strict=False):
            spans.append((entry.phase, (following.at - entry.at).total_seconds()))
        if self.history and not self.terminal:
            last = self.history[-1]
            spans.append((last.phase, ((now or utc_now()) - last.at).total_seconds()))
        return spans

    def to_json(self) -> str:
        return json.dumps(self.to_document(), indent=2) + "\n"


def load_status(path: Path) -> PromotionStatus:
    return PromotionStatus.model_validate_json(path.read_text()) if path.exists() else PromotionStatus()
