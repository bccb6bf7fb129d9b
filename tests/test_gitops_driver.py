"""GitOps in the promotion core, against in-memory backends (tests/in_memory.py): an environment
that acts only on promotions traced to git, a registered version pinned to the image it was proven
with, and the production record an environment publishes once it has promoted. No I/O: the same
ports run against real Argo CD, git and MLflow in tests/test_gitops_flow.py."""

from __future__ import annotations

import pytest

from promoter.promotion.driver import reconcile
from promoter.promotion.engine import NOT_SYNCED_YET, RECORD_PUBLISHED, Need, needs

from .in_memory import AliasMove, InMemoryProvenance, InMemoryRecords, World, world
from .test_driver import (
    GITOPS_NEEDS,
    NOW,
    ROLLOUT,
    TRAINED_AND_DEPLOYED,
    phases,
    promotion,
    settle,
    with_champion,
)

COMMIT = "3f1c0ffee" + "0" * 31
IMAGE = "ghcr.io/promoter/promoter@sha256:" + "a" * 64
OTHER_IMAGE = "ghcr.io/promoter/promoter@sha256:" + "b" * 64


def gitops(w: World, lag: int = 0, refusal: str = "") -> World:
    w.provenance = InMemoryProvenance(w.observations, COMMIT, lag=lag, refusal=refusal)
    return w


def test_a_promotion_waits_until_git_is_traced_then_carries_the_commit_into_the_alias_history() -> None:
    w = gitops(with_champion(world()), lag=2)
    p = promotion()

    for _ in range(2):
        waiting = reconcile(p, w.store, w.backends, now=NOW)
        assert (waiting.status.phase, waiting.status.reason) == ("Pending", NOT_SYNCED_YET)
        assert waiting.actions == () and "Argo CD" in waiting.status.message
    status = settle(w, p)

    assert phases(status) == TRAINED_AND_DEPLOYED
    assert status.git_commit == COMMIT
    assert w.workflows.trainings == 1
    assert w.registry.alias_moves[-1] == AliasMove(
        "digits", "champion", "1", "2", f"promotion p1 (git {COMMIT})"
    )


def test_a_promotion_applied_by_hand_fails_not_from_git_and_nothing_runs() -> None:
    w = gitops(with_champion(world()), refusal="not synced from git: it has no tracking annotation")
    status = settle(w, promotion())

    assert (status.phase, status.reason) == ("Failed", "NotFromGit")
    assert "not synced from git" in status.message
    assert (w.workflows.trainings, w.workflows.evaluations, w.rollouts.previews_started) == (0, 0, 0)
    assert w.registry.alias_moves == []


def test_without_gitops_nothing_is_traced() -> None:
    w = with_champion(world())
    status = settle(w, promotion())
    assert status.phase == "Promoted" and status.git_commit is None
    assert Need.PROVENANCE not in w.observations.seen


def test_a_registered_version_runs_in_exactly_the_image_it_was_proven_with() -> None:
    w = with_champion(world())
    w.registry.add_version("digits", "staging-run")
    w.registry.record_proven_image("digits", "2", IMAGE, "p1")
    rollout = {"name": ROLLOUT, "image": IMAGE, "loadTest": {"maxP95Ms": 50}}
    status = settle(w, promotion(source={"modelVersion": "2"}, rollout=rollout))

    assert status.phase == "Promoted"
    assert w.rollouts.serving_image(ROLLOUT) == IMAGE


@pytest.mark.parametrize(
    ("proven", "says"),
    [(None, "was never promoted with an image"), (OTHER_IMAGE, f"was proven with {OTHER_IMAGE}")],
    ids=["never-proven", "another-digest"],
)
def test_a_registered_version_pinned_to_an_unproven_image_is_refused_before_anything_runs(
    proven: str | None, says: str
) -> None:
    w = with_champion(world())
    w.registry.add_version("digits", "staging-run")
    if proven is not None:
        w.registry.record_proven_image("digits", "2", proven, "p1")
    rollout = {"name": ROLLOUT, "image": IMAGE}
    status = settle(w, promotion(source={"modelVersion": "2"}, rollout=rollout))

    assert (status.phase, status.reason) == ("Failed", "ImageNotProven")
    assert says in status.message and IMAGE in status.message
    assert (w.workflows.evaluations, w.rollouts.previews_started) == (0, 0)


def test_a_rollback_goes_back_to_the_image_the_previous_champion_ran_in() -> None:
    w = with_champion(world())
    old_image = w.rollouts.rollouts[ROLLOUT].template_image
    w.rollouts.rollouts[ROLLOUT].images["1"] = old_image
    w.registry.add_version("digits", "staging-run")
    w.registry.record_proven_image("digits", "2", IMAGE, "p1")
    p = promotion(source={"modelVersion": "2"}, rollout={"name": ROLLOUT, "image": IMAGE})
    assert settle(w, p).phase == "Promoted"
    w.store.status = w.store.status.model_copy(update={"rollback_requested_by": "git revert"})

    assert settle(w, p).phase == "RolledBack"
    assert w.rollouts.serving_image(ROLLOUT) == old_image


def test_a_promoted_environment_publishes_its_record_once_and_settles_only_when_it_is_on_the_branch() -> None:
    w = with_champion(world())
    w.records = InMemoryRecords(w.fuse, w.observations)
    w.fuse.arm("pushed")  # the operator dies right after the push, before it saw the commit
    status = settle(w, promotion())

    assert phases(status) == TRAINED_AND_DEPLOYED
    assert w.records.commits == 1
    [record] = w.records.branch.values()
    assert (record.version, record.image) == ("2", w.rollouts.serving_image(ROLLOUT))
    assert record.status.load_test is not None and record.status.gates is not None
    assert status.record is not None and status.record.commit == "commit-p1.yaml"
    assert status.terminal
    published = next(c for c in status.conditions if c.type == RECORD_PUBLISHED)
    assert published.status == "True" and "commit-p1.yaml" in published.message
    # the image it ran in is what production must be pinned to
    assert w.registry.proven_image("digits", "2") == record.image


def test_an_unpublished_record_keeps_the_promotion_unsettled() -> None:
    w = with_champion(world())
    w.records = InMemoryRecords(w.fuse, w.observations)
    p = promotion()
    for _ in range(20):
        decision = reconcile(p, w.store, w.backends, now=NOW)
        if decision.status.phase == "Promoted":
            break
    assert decision.status.record is not None and not decision.status.record.published
    assert not decision.status.terminal
    assert Need.RECORD in needs(p, "Promoted", w.backends.environment)


def test_under_gitops_the_driver_still_observes_only_what_the_phase_needs() -> None:
    w = gitops(with_champion(world()), lag=1)
    w.records = InMemoryRecords(w.fuse, w.observations)
    w.registry.add_version("digits", "staging-run")
    w.registry.record_proven_image("digits", "2", IMAGE, "p1")
    p = promotion(source={"modelVersion": "2"}, rollout={"name": ROLLOUT, "image": IMAGE})
    assert settle(w, p, fenced=True).phase == "Promoted"
    assert set(w.observations.seen) >= GITOPS_NEEDS
