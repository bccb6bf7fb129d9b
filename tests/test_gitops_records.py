"""Production records committed with real git to a real (bare, `file://`) remote: what staging's
operator pushes for a person to review and merge (src/promoter/gitops/)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest
import yaml

from promoter.gitops.record import (
    GATE_REPORT_ANNOTATION,
    LOAD_TEST_ANNOTATION,
    PROVEN_AT_COMMIT_ANNOTATION,
    PROVEN_BY_ANNOTATION,
)
from promoter.gitops.repository import GitBranch, GitError, GitRecords
from promoter.promotion.spec import ModelPromotion, parse_promotion
from promoter.promotion.status import GateSummary, LoadTestResult, PromotionStatus
from promoter.validation import validate_promotion

from .gitops import GitRemote
from .test_driver import promotion

IMAGE = "ghcr.io/promoter/promoter@sha256:" + "c" * 64
DIRECTORY = "environments/production/promotions"
STAGING_COMMIT = "1234567890abcdef1234567890abcdef12345678"
REPORT = "runs:/eval-1/gate_report.json"


def in_staging(name: str = "p1") -> ModelPromotion:
    p = promotion()
    return p.model_copy(
        update={"metadata": p.metadata.model_copy(update={"name": name, "namespace": "staging"})}
    )


def promoted() -> PromotionStatus:
    return PromotionStatus(
        phase="Promoted",
        run_id="run-42",
        model_version="7",
        git_commit=STAGING_COMMIT,
        gates=GateSummary(passed=True, report_uri=REPORT),
        load_test=LoadTestResult(
            requests=900, failures=0, rps=300.0, p50_ms=4.0, p95_ms=9.5, p99_ms=12.0, duration_seconds=3.0
        ),
    )


def records(remote: GitRemote, branch: GitBranch | None = None) -> GitRecords:
    return GitRecords(branch or GitBranch(remote.url, "staging"), DIRECTORY)


@pytest.fixture
def remote(tmp_path: Path) -> GitRemote:
    made = GitRemote.create(tmp_path / "git")
    made.commit("staging", {"environments/staging/promotions/p1.yaml": "kind: placeholder\n"}, "start")
    return made


def test_the_record_is_one_commit_a_reviewer_can_act_on_pinning_the_version_and_the_image(
    remote: GitRemote,
) -> None:
    before = remote.head("staging")
    records(remote).publish(in_staging(), "7", promoted(), IMAGE)

    commit = records(remote).observe(in_staging()).commit
    assert commit == remote.head("staging") != before
    subject, _, body = remote.message(commit).partition("\n")
    assert subject == "promote digits version 7 to production"
    for evidence in ("models:/digits/7", IMAGE, "staging/p1", STAGING_COMMIT, "p95 9.5 ms", REPORT, "run-42"):
        assert evidence in body, evidence
    assert "Merge staging into main" in body and "Revert the merge to roll back" in body

    document = yaml.safe_load(remote.read("staging", f"{DIRECTORY}/p1.yaml"))
    record = validate_promotion(parse_promotion(document, origin="record"), origin="record")
    assert record.spec.source.model_version == "7" and record.spec.source.train is None
    assert record.spec.rollout is not None and record.spec.rollout.image == IMAGE
    assert record.spec.gates == in_staging().spec.gates
    assert record.spec.rollout.load_test == promotion().spec.rollout.load_test  # type: ignore[union-attr]
    annotations = document["metadata"]["annotations"]
    assert annotations[PROVEN_BY_ANNOTATION] == "staging/p1"
    assert annotations[PROVEN_AT_COMMIT_ANNOTATION] == STAGING_COMMIT
    assert annotations[GATE_REPORT_ANNOTATION] == REPORT
    assert "p95 9.5 ms" in annotations[LOAD_TEST_ANNOTATION]
    assert "namespace" not in document["metadata"]  # the production Application's destination decides


def test_a_record_not_yet_published_is_not_seen(remote: GitRemote) -> None:
    assert records(remote).observe(in_staging()).commit is None


def test_publishing_again_commits_nothing(remote: GitRemote) -> None:
    records(remote).publish(in_staging(), "7", promoted(), IMAGE)
    first = remote.head("staging")
    records(remote).publish(in_staging(), "7", promoted(), IMAGE)
    assert remote.head("staging") == first  # a resumed operator does not commit twice


def test_a_push_that_loses_a_race_clones_again_and_lands_on_top(remote: GitRemote) -> None:
    """A colleague pushes to staging between the operator's clone and its push: git rejects the
    push (not a fast-forward); the operator clones again and commits on top, losing nothing."""
    branch = GitBranch(remote.url, "staging")
    clone = branch._clone
    raced: list[str] = []

    def clone_then_race(into: Path) -> Path:
        cloned = clone(into)
        if not raced:
            raced.append(remote.commit("staging", {"environments/staging/promotions/p2.yaml": "a: 1\n"}, "x"))
        return cloned

    branch._clone = clone_then_race  # type: ignore[method-assign]
    records(remote, branch).publish(in_staging(), "7", promoted(), IMAGE)

    assert {f"{DIRECTORY}/p1.yaml", "environments/staging/promotions/p2.yaml"} <= set(remote.files("staging"))
    assert raced and raced[0] != remote.head("staging")


def test_an_unreachable_remote_is_an_error_naming_it(tmp_path: Path) -> None:
    url = f"file://{tmp_path}/missing.git"
    with pytest.raises(GitError, match=r"missing\.git"):
        GitBranch(url, "staging").commit_file(PurePosixPath("a.yaml"), "a: 1\n", "m")
