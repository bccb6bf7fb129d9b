from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from promoter.lineage import GIT_COMMIT_ENV, LineageError, code_revision, config_sha256


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@e", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv(GIT_COMMIT_ENV, raising=False)
    git(tmp_path, "init", "-q")
    (tmp_path / "train.py").write_text("print(1)\n")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-qm", "first")
    git(tmp_path, "tag", "v1")
    return tmp_path


def test_clean_checkout_reports_its_commit(repo: Path) -> None:
    revision = code_revision("HEAD", repo)
    assert revision.commit == git(repo, "rev-parse", "HEAD") and not revision.dirty
    assert code_revision("v1", repo).commit == revision.commit


def test_uncommitted_changes_mark_the_revision_dirty(repo: Path) -> None:
    (repo / "train.py").write_text("print(2)\n")
    assert code_revision("HEAD", repo).dirty


def test_a_revision_that_is_not_the_running_code_is_refused(repo: Path) -> None:
    (repo / "train.py").write_text("print(3)\n")
    git(repo, "commit", "-qam", "second")
    with pytest.raises(LineageError, match=r"revision: 'v1' is [0-9a-f]{12} but the checked-out code is"):
        code_revision("v1", repo)


def test_outside_a_checkout_the_error_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(GIT_COMMIT_ENV, raising=False)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    with pytest.raises(LineageError, match=GIT_COMMIT_ENV):
        code_revision("HEAD", tmp_path)


def test_an_image_reports_the_commit_it_was_built_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(GIT_COMMIT_ENV, "a" * 40)
    assert code_revision("HEAD", tmp_path).commit == "a" * 40
    with pytest.raises(LineageError, match="this image was built from"):
        code_revision("b" * 40, tmp_path)


def test_config_hash_ignores_key_order_but_not_values() -> None:
    assert config_sha256({"a": 1, "b": {"c": 2}}) == config_sha256({"b": {"c": 2}, "a": 1})
    assert config_sha256({"a": 1}) != config_sha256({"a": 2})
