"""The small interfaces the promotion driver needs from the world, one per kind of backend.

Locally they are subprocesses, loopback servers and a SQLite MLflow store; in a cluster they are
Argo Workflows, Argo Rollouts and an in-cluster load test. Every request is idempotent: asking twice
for the same thing (after a crash) must not do it twice.
"""

from __future__ import annotations

from typing import Protocol

from promoter.promotion.engine import LoadTestObservation, PreviewObservation, WorkflowObservation
from promoter.promotion.spec import LoadTest, ModelPromotion
from promoter.promotion.status import GateSummary


class Workflows(Protocol):
    def run(self, promotion: ModelPromotion, name: str) -> None:
        """Make sure the promotion's workflow `name` (train -> evaluate, or evaluate a registered
        version only) exists and is progressing."""

    def observe(self, promotion: ModelPromotion, name: str) -> WorkflowObservation | None:
        """None when it was never submitted."""


class Registry(Protocol):
    def gate_summary(self, run_id: str) -> GateSummary | None: ...

    def registered_version(self, model: str, run_id: str) -> str | None: ...

    def has_version(self, model: str, version: str) -> bool: ...

    def champion(self, model: str) -> str | None: ...

    def register(self, model: str, run_id: str, promotion: str) -> str:
        """Register the run's model; returns the existing version if it was registered before."""

    def move_champion(self, model: str, version: str, reason: str) -> None:
        """Point @champion at `version` and @previous-champion at the old one, and record the move."""


class RolloutNotFound(LookupError):
    """The Rollout a spec names does not exist (yet): the promotion waits for it. Raised by any
    `Rollouts` method; the message names the Rollout and where it was looked for."""


class Rollouts(Protocol):
    def deploy_preview(self, rollout: str, model: str, version: str) -> None: ...

    def preview(self, rollout: str) -> PreviewObservation | None: ...

    def active_version(self, rollout: str) -> str | None: ...

    def promote(self, rollout: str, model: str, version: str) -> None:
        """Switch the active side to `version`; the side it replaces stays hot as the rollback target."""

    def abort(self, rollout: str) -> None:
        """Tear the preview down; the active side is left untouched."""


class LoadTests(Protocol):
    def run(self, key: str, rollout: str, profile: LoadTest) -> None:
        """Load-test the rollout's preview; `key` names this test so a repeat finds its result."""

    def observe(self, key: str) -> LoadTestObservation | None: ...
