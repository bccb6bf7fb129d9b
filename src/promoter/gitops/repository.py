"""Production records committed to a git branch: the `Records` port of the promotion driver.

Every call works in a fresh clone in a temporary directory (nothing is kept between rounds, so a
restarted operator needs no state), and is idempotent: a record already on the branch, with the same
text, is not committed again, and its commit is what `observe` reports. A push that loses a race
(someone else pushed first) clones again and retries. git runs with a fixed identity and never asks
for a password (GIT_TERMINAL_PROMPT=0): credentials, where the remote needs them, come from the
environment the operator's Deployment gives git (a mounted SSH key, a credential helper).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from promoter.gitops.record import production_record
from promoter.promotion.engine import RecordObservation, record_path
from promoter.promotion.spec import ModelPromotion
from promoter.promotion.status import PromotionStatus

PUSH_ATTEMPTS = 3


class GitError(RuntimeError):
    """A git command failed; the message has the command and what git said."""


@dataclass(frozen=True)
class GitIdentity:
    name: str = "promoter-operator"
    email: str = "promoter-operator@users.noreply.promoter.dev"


class GitBranch:
    """One branch of one repository, as the operator reads and writes it."""

    def __init__(self, url: str, branch: str, identity: GitIdentity = GitIdentity()) -> None:
        self.url, self.branch, self.identity = url, branch, identity

    def _git(self, *args: str, cwd: Path | None = None) -> str:
        env = {
            **os.environ,
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_AUTHOR_NAME": self.identity.name,
            "GIT_AUTHOR_EMAIL": self.identity.email,
            "GIT_COMMITTER_NAME": self.identity.name,
            "GIT_COMMITTER_EMAIL": self.identity.email,
            "GIT_CONFIG_NOSYSTEM": "1",
        }
        done = subprocess.run(
            ["git", "-c", "init.defaultBranch=main", *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise GitError(f"git {' '.join(args[:2])} ({self.url} {self.branch}): {done.stderr.strip()}")
        return done.stdout.strip()

    def _clone(self, into: Path) -> Path:
        clone = into / "clone"
        self._git("clone", "--quiet", "--single-branch", "--branch", self.branch, self.url, str(clone))
        return clone

    def last_commit(self, path: PurePosixPath) -> str | None:
        """The commit on the branch that last wrote `path`; None while the branch has no such file."""
        with tempfile.TemporaryDirectory(prefix="promoter-git-") as scratch:
            clone = self._clone(Path(scratch))
            return self._last_commit_in(clone, path) if (clone / path).is_file() else None

    def _last_commit_in(self, clone: Path, path: PurePosixPath) -> str:
        return self._git("log", "-1", "--format=%H", "--", str(path), cwd=clone)

    def commit_file(self, path: PurePosixPath, text: str, message: str) -> str:
        """Commit `text` as `path` on the branch and push it; the commit that holds it."""
        for attempt in range(1, PUSH_ATTEMPTS + 1):
            with tempfile.TemporaryDirectory(prefix="promoter-git-") as scratch:
                clone = self._clone(Path(scratch))
                target = clone / path
                if target.is_file() and target.read_text() == text:
                    return self._last_commit_in(clone, path)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text)
                self._git("add", "--", str(path), cwd=clone)
                (Path(scratch) / "message").write_text(message)
                self._git("commit", "--quiet", "--file", str(Path(scratch) / "message"), cwd=clone)
                try:
                    self._git("push", "--quiet", "origin", f"HEAD:{self.branch}", cwd=clone)
                except GitError:
                    if attempt == PUSH_ATTEMPTS:
                        raise
                    continue  # someone pushed first: clone their branch again and retry
                return self._git("rev-parse", "HEAD", cwd=clone)
        raise AssertionError("unreachable")


class GitRecords:
    """Production records as files `<directory>/<promotion>.yaml` on a branch (the `Records` port)."""

    def __init__(self, branch: GitBranch, directory: str) -> None:
        self.branch, self.directory = branch, PurePosixPath(directory)

    def publish(
        self, promotion: ModelPromotion, version: str, status: PromotionStatus, image: str | None
    ) -> None:
        record = production_record(promotion, version, status, image)
        self.branch.commit_file(self.directory / record.path, record.text(), record.message)

    def observe(self, promotion: ModelPromotion) -> RecordObservation:
        return RecordObservation(self.branch.last_commit(self.directory / record_path(promotion)))
