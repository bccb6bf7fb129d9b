"""The operator's Prometheus metrics: what promotions do, how long each phase takes, what breaks.

The dashboards (`promoter.observability.dashboards`) and the alert rules read these names. Counters
whose label values are known in advance are initialised at zero, so "none yet" is a 0 on a dashboard
(and `rate()` works from the first failure) instead of a series that does not exist.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import get_args

from prometheus_client import Counter, Gauge, Histogram

from promoter.promotion.gates import declared_gates, gate_family
from promoter.promotion.spec import PromotionSpec
from promoter.promotion.status import TERMINAL_PHASES, Phase, PromotionStatus, Transition

PHASES: tuple[Phase, ...] = get_args(Phase)
OUTCOME_PHASES: tuple[Phase, ...] = tuple(p for p in PHASES if p in TERMINAL_PHASES)

TRANSITIONS = Counter(
    "promoter_promotion_transitions",
    "Phases entered by promotions, by phase and reason.",
    ["phase", "reason"],
)
OUTCOMES = Counter(
    "promoter_promotions_finished",
    "Promotions that reached a terminal phase, by outcome (Promoted, Rejected, Failed, RolledBack).",
    ["outcome"],
)
PHASE_SECONDS = Histogram(
    "promoter_phase_duration_seconds",
    "Wall time spent in a phase, observed when the promotion leaves it.",
    ["phase"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200, 3600, 7200),
)
RECONCILE_ERRORS = Counter(
    "promoter_reconcile_errors",
    "Reconciles that raised, by exception type (they are retried).",
    ["error"],
)
RECONCILE_ROUNDS = Counter(
    "promoter_reconcile_rounds",
    "Reconcile rounds run (observe, decide, save, act), whatever their outcome.",
)
PROMOTIONS = Gauge(
    "promoter_promotions",
    "Promotions currently in each phase, as the operator's watch sees them.",
    ["phase"],
)
GATE_FAILURES = Counter(
    "promoter_gate_failures",
    "Gates that failed in finished promotions, by gate; enforced=false: advisory, reported, not blocking.",
    ["gate", "enforced"],
)
ROLLBACKS = Counter("promoter_rollbacks", "Promotions rolled back, by model.", ["model"])
TIME_TO_PROMOTE = Histogram(
    "promoter_time_to_promote_seconds",
    "From a promotion's creation to Promoted.",
    buckets=(30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 43200, 86400),
)
REACTION_SECONDS = Histogram(
    "promoter_reaction_seconds",
    "From the start of the reconcile round that saw a change to the transition it caused being saved.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
# The API server is the one dependency every round talks to: its errors (conflicts, timeouts) are the
# expected kind, so they are shown as 0 until one happens. Other types appear when they happen.
EXPECTED_ERRORS = ("ApiException",)

for _outcome in OUTCOME_PHASES:
    OUTCOMES.labels(_outcome)
for _error in EXPECTED_ERRORS:
    RECONCILE_ERRORS.labels(_error)


def record_transition(history: list[Transition], index: int) -> None:
    """Count `history[index]`, and the time spent in the phase it ended."""
    transition = history[index]
    TRANSITIONS.labels(transition.phase, transition.reason).inc()
    if index > 0:
        left = history[index - 1]
        PHASE_SECONDS.labels(left.phase).observe((transition.at - left.at).total_seconds())
    if transition.phase in TERMINAL_PHASES:
        OUTCOMES.labels(transition.phase).inc()


def record_outcome(model: str, created: datetime | None, status: PromotionStatus, index: int) -> None:
    """What a terminal `status.history[index]` says beyond its phase: the gates that failed (once
    per promotion: at its first terminal phase), the time it took to promote, a rollback."""
    history = status.history
    transition = history[index]
    if transition.phase not in TERMINAL_PHASES:
        return
    if not any(entry.phase in TERMINAL_PHASES for entry in history[:index]):
        offline = status.gates
        failed = [*(offline.failures + offline.advisory_failures if offline else [])]
        failed += [g for g in status.load_test_gates if g.verdict == "fail"]
        for gate in failed:
            # one series per rule the spec declares, not one per class of every model
            GATE_FAILURES.labels(gate_family(gate.name), _flag(gate.enforced)).inc()
    if transition.phase == "Promoted" and created is not None:
        TIME_TO_PROMOTE.observe(max(0.0, (transition.at - created).total_seconds()))
    if transition.phase == "RolledBack":
        ROLLBACKS.labels(model).inc()


def _flag(enforced: bool) -> str:
    return "true" if enforced else "false"


class PhaseBook:
    """Which phase each promotion is in, kept from the operator's watch (its initial listing
    included), so `promoter_promotions` is right from the first scrape after a restart: it is
    recomputed from what the watch says, never incremented or decremented on transitions.

    Seeing a promotion also initialises its model's rollback counter and its gates' failure counters
    at zero (label values are only known from the specs)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._phases: dict[tuple[str, str], Phase] = {}
        for phase in PHASES:
            PROMOTIONS.labels(phase).set(0)

    def seen(self, namespace: str, name: str, phase: Phase, spec: PromotionSpec | None) -> None:
        """`spec`: None when it does not parse (the promotion is refused; its phase still counts)."""
        if spec is not None:
            ROLLBACKS.labels(spec.model)
            for gate, enforced in declared_gates(spec):
                GATE_FAILURES.labels(gate, _flag(enforced))
        with self._lock:
            self._phases[(namespace, name)] = phase
            self._publish()

    def gone(self, namespace: str, name: str) -> None:
        with self._lock:
            self._phases.pop((namespace, name), None)
            self._publish()

    def _publish(self) -> None:
        counts = dict.fromkeys(PHASES, 0)
        for phase in self._phases.values():
            counts[phase] += 1
        for phase, count in counts.items():
            PROMOTIONS.labels(phase).set(count)
