"""A GitOps test harness: a git remote on this machine, a real Argo CD (dev/testbed.py) against the
test bed's API server, and helpers to drive its Applications and wait for what they sync.

    def test_x(applications: Applications, tmp_path: Path) -> None:
        remote = GitRemote.create(tmp_path / "git")
        sha = remote.commit("staging", {"env/a.yaml": "..."}, "add a")  # pushed
        sources = [{"path": "env", "directory": {}}]
        applications.apply(application("x", remote.url, "staging", sources, "x-namespace"))
        applications.refresh("x")  # the Git webhook's part
        seconds = applications.wait_synced("x", sha)
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .kube import load_testbed

GROUP, VERSION, PLURAL = "argoproj.io", "v1alpha1", "applications"
IN_CLUSTER = "https://kubernetes.default.svc"  # Argo CD's built-in destination: the test bed itself
# Commits never depend on this machine's git configuration (user, signing, hooks, default branch)
GIT_ENV = {
    "GIT_AUTHOR_NAME": "promoter tests",
    "GIT_AUTHOR_EMAIL": "tests@promoter.invalid",
    "GIT_COMMITTER_NAME": "promoter tests",
    "GIT_COMMITTER_EMAIL": "tests@promoter.invalid",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


@dataclass(frozen=True)
class GitRemote:
    """A bare repository (`url`, `file://`: what Argo CD's repo-server fetches, like the remote a
    team pushes to) and a working clone of it that every helper first resets to the remote's
    branch, so commits pushed by others (the staging operator's records) are built upon, not lost."""

    bare: Path
    work: Path

    @classmethod
    def create(cls, directory: Path, initial: Mapping[str, str] | None = None) -> GitRemote:
        """A new remote under `directory` whose `main` holds `initial` (path -> text; default: a
        README), so that branches can start from it."""
        remote = cls(directory / "remote.git", directory / "work")
        directory.mkdir(parents=True, exist_ok=True)
        remote._git("init", "--quiet", "--bare", "--initial-branch=main", str(remote.bare), cwd=directory)
        remote._git("clone", "--quiet", remote.url, str(remote.work), cwd=directory)
        remote._git("checkout", "--quiet", "-b", "main")
        remote._write(initial or {"README.md": "A GitOps repository of the tests.\n"})
        remote._git("add", "--all")
        remote._git("commit", "--quiet", "-m", "initial commit")
        remote._git("push", "--quiet", "origin", "main")
        return remote

    @property
    def url(self) -> str:
        return f"file://{self.bare}"

    def commit(self, branch: str, files: Mapping[str, str | None], message: str, start: str = "main") -> str:
        """Write `files` (path -> text; None deletes the path) on `branch` (a new one starts at
        `start`), commit, push, and return the new head."""
        self._checkout(branch, start)
        self._write(files)
        self._git("add", "--all")
        self._git("commit", "--quiet", "-m", message)
        return self._push(branch)

    def merge(self, source: str = "staging", target: str = "main", message: str | None = None) -> str:
        """`git merge --no-ff` of `source` into `target` (a merge commit even when a fast-forward
        would do, as a reviewed pull request makes), pushed; returns the merge commit."""
        self._checkout(target, target)
        message = message or f"Merge {source} into {target}"
        self._git("merge", "--quiet", "--no-ff", "-m", message, f"origin/{source}")
        return self._push(target)

    def revert(self, commit: str, branch: str = "main") -> str:
        """`git revert` of `commit` on `branch` (a merge: `-m 1`, back to the first parent, the
        branch as it was before the merge), pushed; returns the new head."""
        self._checkout(branch, branch)
        parents = self._git("rev-list", "--parents", "-n", "1", commit).split()[1:]
        mainline = ["-m", "1"] if len(parents) > 1 else []
        self._git("revert", "--no-edit", *mainline, commit)
        return self._push(branch)

    def head(self, branch: str) -> str:
        """The remote's head of `branch` (what Argo CD resolves its targetRevision to)."""
        return self._git("rev-parse", f"refs/heads/{branch}", cwd=self.bare)

    def files(self, branch: str) -> list[str]:
        """Every file path on the remote's `branch`, sorted."""
        listed = self._git("ls-tree", "-r", "--name-only", f"refs/heads/{branch}", cwd=self.bare)
        return sorted(listed.splitlines())

    def read(self, branch: str, path: str) -> str:
        """The text of `path` on the remote's `branch`."""
        return self._git("show", f"refs/heads/{branch}:{path}", cwd=self.bare)

    def message(self, commit: str) -> str:
        """The whole commit message of `commit` (what a reviewer reads)."""
        return self._git("log", "-1", "--format=%B", commit, cwd=self.bare)

    def _checkout(self, branch: str, start: str) -> None:
        self._git("fetch", "--quiet", "--prune", "origin")
        remote = self._git("branch", "--remotes", "--format=%(refname:lstrip=3)").splitlines()
        self._git("checkout", "--quiet", "-B", branch, f"origin/{branch if branch in remote else start}")

    def _push(self, branch: str) -> str:
        self._git("push", "--quiet", "origin", f"HEAD:refs/heads/{branch}")
        return self._git("rev-parse", "HEAD")

    def _write(self, files: Mapping[str, str | None]) -> None:
        for name, text in files.items():
            path = self.work / name
            if text is None:
                path.unlink()
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)

    def _git(self, *args: str, cwd: Path | None = None) -> str:
        done = subprocess.run(
            ["git", *args],
            cwd=cwd or self.work,
            env=os.environ | GIT_ENV,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"git {' '.join(args)} failed ({done.returncode}): {done.stderr}")
        return done.stdout.strip()


def application(
    name: str,
    repo_url: str,
    revision: str,
    sources: list[dict[str, Any]],
    namespace: str,
    namespace_of_argocd: str = "argocd",
) -> dict[str, Any]:
    """An auto-synced (prune, self-heal) multi-source Application: each of `sources` (path, and
    `helm` or `directory`) read from `repo_url` at `revision`, into `namespace` of the test bed,
    created if missing."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Application",
        "metadata": {"name": name, "namespace": namespace_of_argocd},
        "spec": {
            "project": "default",
            "sources": [{"repoURL": repo_url, "targetRevision": revision, **s} for s in sources],
            "destination": {"server": IN_CLUSTER, "namespace": namespace},
            "syncPolicy": {
                "automated": {"prune": True, "selfHeal": True},
                "syncOptions": ["CreateNamespace=true"],
            },
        },
    }


class Applications:
    """Argo CD Applications in the test bed: apply them, play the Git webhook, wait for a sync."""

    def __init__(self, kube: Any, argocd: Any) -> None:
        """`kube`: an ApiClient (tests/kube.py); `argocd`: the ArgoCD of dev/testbed.py."""
        from kubernetes import client

        self.objects: Any = client.CustomObjectsApi(kube)
        self.argocd = argocd
        self.namespace: str = argocd.namespace

    def apply(self, document: dict[str, Any]) -> None:
        """Create the Application `document`, or replace the one of that name (its spec is git's
        to say: anything but the document is dropped)."""
        from kubernetes.client.exceptions import ApiException

        name = document["metadata"]["name"]
        try:
            current = self.get(name)
        except ApiException as exc:
            if exc.status != 404:
                raise
            self.objects.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, document)
            return
        metadata = document["metadata"] | {"resourceVersion": current["metadata"]["resourceVersion"]}
        replacement = document | {"metadata": metadata}
        self.objects.replace_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name, replacement
        )

    def get(self, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self.objects.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name
        )
        return found

    def delete(self, name: str) -> None:
        self.objects.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)

    def refresh(self, name: str) -> None:
        """What the Git webhook does after a push (argocd-server's, not run here): ask for a refresh
        that resolves the branch again, bypassing the repo-server's revision cache. The controller
        removes the annotation once done. Without it the test bed picks pushes up within ~20 s."""
        patch = {"metadata": {"annotations": {"argocd.argoproj.io/refresh": "normal"}}}
        self.objects.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name, patch)

    def wait_synced(self, name: str, sha: str, timeout: float = 60.0) -> float:
        """Wait until Application `name` has synced commit `sha` and is Healthy; the seconds it took.

        Right after a push or refresh, `status.sync` and `status.health` can still describe the
        previous revision (Healthy first, then Progressing while the new objects come up), so all of
        these must hold: the compared revision(s) are `sha` and Synced, the last operation Succeeded
        on `sha`, health is Healthy. A multi-source Application writes `revisions` (one per
        source) in place of `revision` (controller/state.go in v3.6.1)."""
        started = time.monotonic()
        deadline = started + timeout
        while True:
            app = self.get(name)
            if synced(app, sha):
                return time.monotonic() - started
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"Application {name} not synced to {sha} and Healthy after {timeout}s:\n"
                    f"{describe(app)}\n== {self.argocd.controller_log}\n{tail(self.argocd.controller_log)}"
                    f"\n== {self.argocd.repo_server_log}\n{tail(self.argocd.repo_server_log)}"
                )
            time.sleep(0.25)


def revisions(status: Mapping[str, Any]) -> list[str]:
    """`revisions` of a multi-source status part, `[revision]` of a single-source one."""
    if status.get("revisions"):
        return list(status["revisions"])
    return [status["revision"]] if status.get("revision") else []


def synced(app: Mapping[str, Any], sha: str) -> bool:
    status = app.get("status") or {}
    sync = status.get("sync") or {}
    operation = status.get("operationState") or {}
    result = operation.get("syncResult") or {}
    compared, applied = revisions(sync), revisions(result)
    return (
        sync.get("status") == "Synced"
        and bool(compared)
        and all(revision == sha for revision in compared)
        and operation.get("phase") == "Succeeded"
        and bool(applied)
        and all(revision == sha for revision in applied)
        and (status.get("health") or {}).get("status") == "Healthy"
    )


def describe(app: Mapping[str, Any]) -> str:
    """The parts of an Application's status that say why it is not synced."""
    status = app.get("status") or {}
    operation = status.get("operationState") or {}
    lines = [
        f"sync: {status.get('sync', {}).get('status')} at {revisions(status.get('sync') or {})}",
        f"health: {status.get('health')}",
        f"operation: {operation.get('phase')} {operation.get('message')!r} "
        f"at {revisions(operation.get('syncResult') or {})}",
        *(f"condition {c.get('type')}: {c.get('message')}" for c in status.get("conditions") or []),
        *(
            f"resource {r.get('kind')}/{r.get('name')}: {r.get('status')} {r.get('health')}"
            for r in status.get("resources") or []
            if r.get("status") != "Synced" or (r.get("health") or {}).get("status") not in (None, "Healthy")
        ),
    ]
    return "\n".join(lines)


def tail(log: Path, lines: int = 30) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else ""


@pytest.fixture(scope="session")
def argocd(control_plane: Any, kube: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Argo CD (application-controller, repo-server, redis) acting on the session's test bed, whose
    `kube` fixture has installed the ModelPromotion CRD first. No skip: a failed build fails."""
    bed = load_testbed()
    bed.build()
    directory = tmp_path_factory.mktemp("argocd")
    started = time.monotonic()
    instance = bed.argocd_up(control_plane, directory)
    print(f"Argo CD started in {time.monotonic() - started:.1f} s")
    try:
        yield instance
    finally:
        bed.argocd_down(directory)


@pytest.fixture(scope="session")
def applications(argocd: Any, kube: Any) -> Applications:
    """The Applications of the session's Argo CD."""
    return Applications(kube, argocd)
