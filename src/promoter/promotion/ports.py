"""The small interfaces the promotion driver needs from the world, one per kind of backend.

Locally they are subprocesses, loopback servers and a SQLite MLflow store; in a cluster they are
Argo Workflows, Argo Rollouts and an in-cluster load test. Every request is idempotent: asking twice
for the same thing (after a crash) must not do it twice.
"""

from __future__ import annotations

from typing import Protocol

from promoter.promotion.engine import (
    LoadTestObservation,
    PreviewObservation,
    ProvenanceObservation,
    RecordObservation,
    WorkflowObservation,
)
from promoter.promotion.spec import LoadTest, ModelPromotion
from promoter.promotion.status import GateSummary, PromotionStatus


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

    def proven_image(self, model: str, version: str) -> str | None:
        """The image `version` was promoted with where a record was published; None if never."""

    def record_proven_image(self, model: str, version: str, image: str, promotion: str) -> None:
        """Remember that `promotion` proved `version` with `image` (before its record is published)."""


class RolloutNotFound(LookupError):
    """The Rollout a spec names does not exist (yet): the promotion waits for it. Raised by any
    `Rollouts` method; the message names the Rollout and where it was looked for."""


class Rollouts(Protocol):
    def deploy_preview(self, rollout: str, model: str, version: str, image: str | None = None) -> None:
        """Make the preview serve `version`, in `image` if given; else in the image this version ran
        in before (a rollback: its pods are still hot), or the template's."""

    def preview(self, rollout: str) -> PreviewObservation | None: ...

    def active_version(self, rollout: str) -> str | None: ...

    def promote(self, rollout: str, model: str, version: str, image: str | None = None) -> None:
        """Switch the active side to `version`; the side it replaces stays hot as the rollback target."""

    def serving_image(self, rollout: str) -> str | None:
        """The image the Rollout's server runs now; None where images do not apply (on one machine)."""

    def abort(self, rollout: str) -> None:
        """Tear the preview down; the active side is left untouched."""


class LoadTests(Protocol):
    def run(self, key: str, rollout: str, profile: LoadTest) -> None:
        """Load-test the rollout's preview; `key` names this test so a repeat finds its result."""

    def observe(self, key: str) -> LoadTestObservation | None: ...


class Provenance(Protocol):
    """Where a promotion came from, in an environment where only git may promote (GitOps)."""

    def trace(self, promotion: ModelPromotion) -> ProvenanceObservation: ...


class Records(Protocol):
    """Production records: the ModelPromotion a promoting environment commits for the next one."""

    def publish(
        self, promotion: ModelPromotion, version: str, status: PromotionStatus, image: str | None
    ) -> None:
        """Commit the record (idempotent: a record already on the branch is not committed again)."""

    def observe(self, promotion: ModelPromotion) -> RecordObservation: ...
