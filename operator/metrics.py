"""The operator's Prometheus metrics: what promotions do, how long each phase takes, what breaks."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from promoter.promotion.status import TERMINAL_PHASES, Transition

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


def record_transition(history: list[Transition], index: int) -> None:
    """Count `history[index]`, and the time spent in the phase it ended."""
    transition = history[index]
    TRANSITIONS.labels(transition.phase, transition.reason).inc()
    if index > 0:
        left = history[index - 1]
        PHASE_SECONDS.labels(left.phase).observe((transition.at - left.at).total_seconds())
    if transition.phase in TERMINAL_PHASES:
        OUTCOMES.labels(transition.phase).inc()
