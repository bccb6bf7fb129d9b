"""Where a candidate came from: the code revision, the data version and hash, the exact config."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Container images carry no .git: the build bakes the commit in (see the Dockerfile).
GIT_COMMIT_ENV = "PROMOTER_GIT_COMMIT"


class LineageError(RuntimeError):
    pass


class UnknownRevision(LineageError):
    """The spec's git.revision names no commit, or not the code that would train: the spec is at
    fault (exit 2), unlike a LineageError about the environment (no checkout, no git)."""

    FIELD = "spec.source.train.git.revision"

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"{self.FIELD}: {reason}")


@dataclass(frozen=True)
class CodeRevision:
    commit: str
    dirty: bool


def _git(args: list[str], cwd: Path) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=30)
    if result.returncode != 0:
        raise LineageError(f"git {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout.strip()


def code_revision(requested: str = "HEAD", cwd: Path | None = None) -> CodeRevision:
    """The commit of the code that is running, checked against the revision the spec asked for.

    Training code that is not the requested revision would make the lineage a lie, so a mismatch is
    an error rather than a warning.
    """
    baked = os.environ.get(GIT_COMMIT_ENV)
    if baked:
        if requested not in ("HEAD", baked) and not baked.startswith(requested):
            raise UnknownRevision(f"{requested!r} is not {baked}, the commit this image was built from")
        return CodeRevision(commit=baked, dirty=False)
    where = cwd or Path.cwd()
    try:
        head = _git(["rev-parse", "HEAD"], where)
    except (LineageError, FileNotFoundError) as exc:
        raise LineageError(
            f"cannot determine the code revision in {where} ({exc}); run inside the git checkout "
            f"or set {GIT_COMMIT_ENV}"
        ) from None
    try:
        wanted = _git(["rev-parse", "--verify", "--quiet", f"{requested}^{{commit}}"], where)
    except LineageError:
        raise UnknownRevision(f"{requested!r} is not a commit of the checkout in {where}") from None
    if wanted != head:
        raise UnknownRevision(
            f"{requested!r} is {wanted[:12]} but the checked-out code is {head[:12]}; "
            "check out that revision first"
        )
    dirty = bool(_git(["status", "--porcelain", "--untracked-files=no"], where))
    return CodeRevision(commit=head, dirty=dirty)


def config_sha256(config: Any) -> str:
    """Hash of the canonical JSON of a config: equal configs hash equal whatever their key order."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()
