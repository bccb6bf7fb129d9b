#!/usr/bin/env python3
"""A real Kubernetes control plane on loopback, from binaries built here, with Argo Rollouts.

No Docker and no images. etcd comes from Debian's etcd-server package (extracted, never installed
as a service); kube-apiserver, kube-controller-manager and kube-scheduler are built from Go modules
(`dev/kube/`, a wrapper module pinning k8s.io/kubernetes); kwok gives fake nodes whose pods become
Running and Ready without a kubelet; the Argo Rollouts controller is built from `dev/rollouts/`.
Argo CD (`dev/argocd/`: its application-controller and repo-server, with Debian's redis) is the
GitOps part, started by `up --argocd` or the tests' `argocd` fixture. Everything is cached under
~/.cache/promoter/ by version, so a machine builds it once.

    python3 dev/testbed.py build                      # fetch and build what is missing (once)
    .venv/bin/python dev/testbed.py up [--dir D] [--argocd]
                                                      # start on free ports; prints the kubeconfig
    python3 dev/testbed.py down [--dir D]             # stops everything `up` started, Argo CD too

`build` and `down` need the standard library and openssl only (they run before any virtual
environment exists); `up` reads the CRD YAMLs with PyYAML.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KUBERNETES_VERSION = "v1.34.4"
ETCD_DEB_VERSION = "3.4.23-4+b4"  # Debian's etcd-server; kube-apiserver accepts 3.4 (slower watches)
KWOK_VERSION = "v0.7.0"
ROLLOUTS_VERSION = "v1.9.1"
HELM_VERSION = "v4.3.1"  # the helm Argo CD v3.6 runs (its hack/tool-versions.sh); no replaces in its go.mod
PROMETHEUS_DEB_VERSION = "2.42.0+ds-5+deb12u1"  # Debian's prometheus: static prometheus and promtool
ARGOCD_VERSION = "v3.6.1"  # v3.3-v3.5 require a gitops-engine pseudo-version the Go proxy does not serve
ARGOCD_GO_TOOLCHAIN = "go1.27.4"  # v3.6.1's go.mod says `go 1.27.0`; the proxy serves golang.org/toolchain
# Argo CD needs a redis (no in-memory option for these two processes): Debian's redis-tools holds the
# server binary (redis-check-rdb, which runs as the server when called as redis-server), and needs
# libjemalloc2 and liblzf1 beside it
REDIS_DEB_VERSION = "5:7.0.15-1~deb12u10"
JEMALLOC_DEB_VERSION = "5.3.0-1"
LZF_DEB_VERSION = "3.6-3"
ARGOCD_NAMESPACE = "argocd"
CACHE = Path(os.environ.get("PROMOTER_CACHE", Path.home() / ".cache" / "promoter"))
DEV = Path(__file__).resolve().parent
KUBE_MODULE = DEV / "kube"
ROLLOUTS_MODULE = DEV / "rollouts"
ARGOCD_MODULE = DEV / "argocd"
KUBE_COMMANDS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
# kwok's own "fast" stages, minus pod-complete: a load-test Job's pod ends when the test says so.
KWOK_STAGES = (
    "kustomize/stage/node/fast/node-initialize.yaml",
    "kustomize/stage/node/heartbeat/node-heartbeat.yaml",
    "kustomize/stage/pod/fast/pod-ready.yaml",
    "kustomize/stage/pod/fast/pod-delete.yaml",
)
FAKE_NODE = "kwok-node-0"
DEFAULT_DIR = Path(tempfile.gettempdir()) / "promoter-testbed"
START_SECONDS = 120.0


class TestbedError(RuntimeError):
    pass


def kube_binary(command: str) -> Path:
    return CACHE / f"kubernetes-{KUBERNETES_VERSION}" / "bin" / command


def kube_apiserver() -> Path:
    return kube_binary("kube-apiserver")


def kwok() -> Path:
    return CACHE / f"kwok-{KWOK_VERSION}" / "bin" / "kwok"


def kwok_stages() -> Path:
    return CACHE / f"kwok-{KWOK_VERSION}" / "stages.yaml"


def rollouts_controller() -> Path:
    return CACHE / f"argo-rollouts-{ROLLOUTS_VERSION}" / "bin" / "rollouts-controller"


def helm() -> Path:
    return CACHE / f"helm-{HELM_VERSION}" / "bin" / "helm"


def prometheus_binary(command: str) -> Path:
    """`prometheus` or `promtool`, unpacked from Debian's package (never installed system-wide)."""
    return CACHE / f"prometheus-{PROMETHEUS_DEB_VERSION}" / "usr" / "bin" / command


def argocd() -> Path:
    """Argo CD's one binary: the command it runs is picked by $ARGOCD_BINARY_NAME (or argv[0])."""
    return CACHE / f"argocd-{ARGOCD_VERSION}" / "bin" / "argocd"


def argocd_crds() -> list[Path]:
    """Application and AppProject (ApplicationSet's 1.5 MB CRD is not needed)."""
    crds = CACHE / f"argocd-{ARGOCD_VERSION}" / "crds"
    return [crds / "application-crd.yaml", crds / "appproject-crd.yaml"]


def git_verify_wrapper() -> Path:
    """Argo CD 3.6's repo-server runs `git-verify-wrapper.sh <revision>` from $PATH on every manifest
    generation, GPG off or not (deprecated, argoproj/argo-cd#27695); without it every Application
    fails with "permission denied". Beside the binary, so `argocd().parent` on PATH finds it."""
    return argocd().parent / "git-verify-wrapper.sh"


def _redis_root() -> Path:
    # without the epoch: a ':' in the directory would split LD_LIBRARY_PATH (and PATH) in two
    return CACHE / f"redis-{REDIS_DEB_VERSION.split(':')[-1]}"


def redis_server() -> Path:
    """Debian's redis server: a link named redis-server to redis-check-rdb (the name selects it)."""
    return _redis_root() / "redis-server"


def third_party_crds() -> list[Path]:
    """The CRDs of the controllers the operator talks to: Argo Rollouts' own, and Argo Workflows'."""
    rollouts = sorted((CACHE / f"argo-rollouts-{ROLLOUTS_VERSION}" / "crds").glob("*.yaml"))
    return [*rollouts, DEV / "crds" / "argo-workflows.yaml"]


def etcd() -> Path:
    return CACHE / f"etcd-{ETCD_DEB_VERSION}" / "usr" / "bin" / "etcd"


def _run(command: list[str], **kwargs: object) -> None:
    completed = subprocess.run(command, check=False, **kwargs)  # type: ignore[call-overload]
    if completed.returncode != 0:
        raise TestbedError(f"{' '.join(command)} failed with exit {completed.returncode}")


def _go_env(toolchain: str = "local") -> dict[str, str]:
    """`toolchain` other than "local": a Go release the go command fetches from the module proxy
    (cached in GOMODCACHE), for a module whose go.mod asks for a newer Go than this machine's."""
    return os.environ | {
        "GOMODCACHE": str(CACHE / "go" / "mod"),
        "GOCACHE": str(CACHE / "go" / "build"),
        "GOTOOLCHAIN": toolchain,
        "CGO_ENABLED": "0",
        "GOFLAGS": "-mod=readonly",
    }


def _go_build(
    module: Path,
    package: str,
    target: Path,
    ldflags: str = "-s -w",
    toolchain: str = "local",
    note: str = "minutes",
) -> None:
    if target.exists():
        return
    partial = target.with_suffix(".partial")
    partial.parent.mkdir(parents=True, exist_ok=True)
    # two builds at once (two test workers' session fixtures) would write the same .partial: the
    # second waits for the first, then finds the target there
    with target.with_suffix(".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.exists():
            return
        print(f"building {target.name} (first time on this machine: {note})", file=sys.stderr)
        _run(
            ["go", "build", "-trimpath", "-ldflags", ldflags, "-o", str(partial), package],
            cwd=module,
            env=_go_env(toolchain),
        )
        partial.replace(target)


def _module_dir(path: str, toolchain: str = "local") -> Path:
    """Where the Go module cache keeps `path@version` (downloading it if needed)."""
    listed = subprocess.run(
        ["go", "mod", "download", "-json", path],
        cwd=DEV,
        env=_go_env(toolchain) | {"GOFLAGS": ""},
        capture_output=True,
        text=True,
        check=False,
    )
    if listed.returncode != 0:
        raise TestbedError(f"go mod download {path} failed: {listed.stdout}{listed.stderr}")
    return Path(json.loads(listed.stdout)["Dir"])


def _debian_binary(package: str, version: str, binary: Path, root: Path | None = None) -> None:
    """Unpack one Debian package into the cache (apt-get download + dpkg-deb: no root, no install),
    at `root` (default: the directory holding usr/bin/<binary>)."""
    if binary.exists():
        return
    with tempfile.TemporaryDirectory() as scratch:
        _run(["apt-get", "download", f"{package}={version}"], cwd=scratch)
        deb = next(Path(scratch).glob(f"{package}_*.deb"))
        _run(["dpkg-deb", "-x", str(deb), str(root or binary.parents[2])])
    if not binary.exists():
        raise TestbedError(f"{package} {version} did not contain {binary}")


def _redis_libraries() -> Path:
    return _redis_root() / "usr" / "lib" / "x86_64-linux-gnu"


def _build_redis() -> None:
    if redis_server().is_symlink():
        return
    root = _redis_root()
    _debian_binary("libjemalloc2", JEMALLOC_DEB_VERSION, _redis_libraries() / "libjemalloc.so.2", root)
    _debian_binary("liblzf1", LZF_DEB_VERSION, _redis_libraries() / "liblzf.so.1", root)
    _debian_binary("redis-tools", REDIS_DEB_VERSION, root / "usr" / "bin" / "redis-check-rdb", root)
    redis_server().symlink_to(Path("usr") / "bin" / "redis-check-rdb")


def _build_argocd() -> None:
    """The binary (one for every Argo CD command), its two CRDs and git-verify-wrapper.sh, all
    from the argo-cd module this wrapper module pins."""
    ldflags = f"-s -w -X github.com/argoproj/argo-cd/v3/common.version={ARGOCD_VERSION.lstrip('v')}"
    _go_build(
        ARGOCD_MODULE,
        "github.com/argoproj/argo-cd/v3/cmd",
        argocd(),
        ldflags,
        toolchain=ARGOCD_GO_TOOLCHAIN,
        note="~15 CPU-minutes, 30 on 2 busy cores",
    )
    crds = argocd_crds()[0].parent
    if crds.is_dir() and git_verify_wrapper().exists():
        return
    source = _module_dir(f"github.com/argoproj/argo-cd/v3@{ARGOCD_VERSION}", ARGOCD_GO_TOOLCHAIN)
    if not crds.is_dir():
        partial = crds.with_suffix(".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        for crd in argocd_crds():
            shutil.copyfile(source / "manifests" / "crds" / crd.name, partial / crd.name)
        partial.replace(crds)
    if not git_verify_wrapper().exists():
        partial = git_verify_wrapper().with_suffix(".partial")
        shutil.copyfile(source / "hack" / "git-verify-wrapper.sh", partial)
        partial.chmod(0o755)  # the module cache's copy is read-only
        partial.replace(git_verify_wrapper())


def build() -> None:
    """Fetch and build whatever of this version the cache does not hold yet."""
    _debian_binary("etcd-server", ETCD_DEB_VERSION, etcd())
    _debian_binary("prometheus", PROMETHEUS_DEB_VERSION, prometheus_binary("promtool"))
    version, minor = KUBERNETES_VERSION, KUBERNETES_VERSION.split(".")[1]
    kube_ldflags = " ".join(
        [
            "-s -w",
            f"-X k8s.io/component-base/version.gitVersion={version}",
            "-X k8s.io/component-base/version.gitMajor=1",
            f"-X k8s.io/component-base/version.gitMinor={minor}",
            f"-X k8s.io/client-go/pkg/version.gitVersion={version}",
        ]
    )
    for command in KUBE_COMMANDS:
        _go_build(KUBE_MODULE, f"k8s.io/kubernetes/cmd/{command}", kube_binary(command), kube_ldflags)
    _go_build(
        ROLLOUTS_MODULE, "github.com/argoproj/argo-rollouts/cmd/rollouts-controller", rollouts_controller()
    )
    crds = CACHE / f"argo-rollouts-{ROLLOUTS_VERSION}" / "crds"
    if not crds.is_dir():
        source = _module_dir(f"github.com/argoproj/argo-rollouts@{ROLLOUTS_VERSION}")
        partial = crds.with_suffix(".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        for crd in (source / "manifests" / "crds").glob("*-crd.yaml"):
            shutil.copyfile(crd, partial / crd.name)
        partial.replace(crds)
    if not kwok().exists():
        # kwok has no replace directives: `go install` of the pinned version (checked by sum.golang.org)
        print(f"building kwok {KWOK_VERSION}", file=sys.stderr)
        env = _go_env() | {"GOBIN": str(kwok().parent), "GOFLAGS": ""}
        kwok_package = f"sigs.k8s.io/kwok/cmd/kwok@{KWOK_VERSION}"
        _run(["go", "install", "-trimpath", "-ldflags", "-s -w", kwok_package], env=env)
    if not helm().exists():
        # helm has no replace directives either; without the -X its `version` says only "v4.3"
        print(f"building helm {HELM_VERSION} (first time on this machine: ~5 CPU-minutes)", file=sys.stderr)
        env = _go_env() | {"GOBIN": str(helm().parent), "GOFLAGS": ""}
        ldflags = f"-s -w -X helm.sh/helm/v4/internal/version.version={HELM_VERSION}"
        package = f"helm.sh/helm/v4/cmd/helm@{HELM_VERSION}"
        _run(["go", "install", "-trimpath", "-ldflags", ldflags, package], env=env)
    if not kwok_stages().exists():
        source = _module_dir(f"sigs.k8s.io/kwok@{KWOK_VERSION}")
        stages = "---\n".join((source / stage).read_text() for stage in KWOK_STAGES)
        kwok_stages().write_text(stages)
    _build_redis()
    _build_argocd()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class ControlPlane:
    directory: Path
    server: str
    token: str

    @property
    def kubeconfig(self) -> Path:
        return self.directory / "kubeconfig"

    @property
    def ca_file(self) -> Path:
        return self.directory / "pki" / "apiserver.crt"


def _ready(server: str, token: str, ca_file: Path) -> bool:
    if not ca_file.exists():
        return False
    context = ssl.create_default_context(cafile=str(ca_file))
    request = urllib.request.Request(f"{server}/readyz", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=2, context=context) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def _api(plane: ControlPlane, method: str, path: str, body: object = None) -> dict[str, Any]:
    """One request to the API server as the admin; HTTP errors raise urllib's HTTPError."""
    context = ssl.create_default_context(cafile=str(plane.ca_file))
    request = urllib.request.Request(
        f"{plane.server}{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {plane.token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30, context=context) as answer:
        document: dict[str, Any] = json.loads(answer.read() or b"{}")
        return document


def _until(what: str, check: Callable[[], bool], seconds: float = START_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise TestbedError(f"timed out waiting for {what}")
        time.sleep(0.3)


def _create(plane: ControlPlane, path: str, body: dict[str, Any]) -> None:
    try:
        _api(plane, "POST", path, body)
    except urllib.error.HTTPError as exc:
        if exc.code != 409:  # already there (a second `up` on the same data)
            raise TestbedError(f"POST {path}: {exc.code} {exc.read().decode(errors='replace')}") from None


def install_crds(plane: ControlPlane, files: list[Path]) -> None:
    """Create every CRD in `files` and wait until the API server serves them."""
    import yaml  # the project's virtual environment has it; `build` does not need it

    names = []
    for path in files:
        for crd in yaml.safe_load_all(path.read_text()):
            if crd and crd.get("kind") == "CustomResourceDefinition":
                _create(plane, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
                names.append(crd["metadata"]["name"])

    def established(name: str) -> bool:
        crd = _api(plane, "GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
        conditions = (crd.get("status") or {}).get("conditions") or []  # null until the server sets them
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

    for name in names:
        _until(f"CRD {name}", lambda name=name: established(name))  # type: ignore[misc]


def _node_ready(plane: ControlPlane) -> bool:
    try:
        node = _api(plane, "GET", f"/api/v1/nodes/{FAKE_NODE}")
    except urllib.error.HTTPError:
        return False
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def _fake_node() -> dict[str, Any]:
    capacity = {"cpu": "32", "memory": "256Gi", "pods": "110"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": FAKE_NODE,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {"kubernetes.io/hostname": FAKE_NODE, "type": "kwok"},
        },
        "spec": {},
        "status": {"allocatable": capacity, "capacity": capacity},
    }


def up(directory: Path) -> ControlPlane:
    """etcd, kube-apiserver, kube-controller-manager, kube-scheduler, a kwok node and the Argo Rollouts
    controller with its CRDs (and Argo Workflows' CRD), on free loopback ports."""
    binaries = [etcd(), *map(kube_binary, KUBE_COMMANDS), kwok(), kwok_stages(), rollouts_controller()]
    for binary in binaries:
        if not binary.exists():
            raise TestbedError(f"{binary} is missing: run `python3 dev/testbed.py build`")
    down(directory)
    shutil.rmtree(directory, ignore_errors=True)
    (directory / "pki").mkdir(parents=True)
    token = os.urandom(16).hex()
    (directory / "tokens.csv").write_text(f"{token},admin,admin,system:masters\n")
    key = directory / "sa.key"
    _run(["openssl", "genrsa", "-out", str(key), "2048"], stderr=subprocess.DEVNULL)
    etcd_port, peer_port, api_port = _free_port(), _free_port(), _free_port()
    etcd_url = f"http://127.0.0.1:{etcd_port}"

    def start(name: str, command: list[str]) -> None:
        _start(directory, name, command)

    start(
        "etcd",
        [
            str(etcd()),
            f"--data-dir={directory / 'etcd'}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
            f"--initial-cluster=default=http://127.0.0.1:{peer_port}",
            "--unsafe-no-fsync",
        ],
    )
    start(
        "kube-apiserver",
        [
            str(kube_apiserver()),
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={api_port}",
            f"--cert-dir={directory / 'pki'}",
            f"--token-auth-file={directory / 'tokens.csv'}",
            "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={key}",
            f"--service-account-signing-key-file={key}",
            "--service-cluster-ip-range=10.0.0.0/24",
            # pods need no token (kwok runs no containers), and a pod created in a brand-new
            # namespace must not wait for the controller-manager to make its default ServiceAccount
            "--disable-admission-plugins=ServiceAccount",
        ],
    )
    plane = ControlPlane(directory, f"https://127.0.0.1:{api_port}", token)
    try:
        _until("kube-apiserver", lambda: _ready(plane.server, token, plane.ca_file))
    except TestbedError:
        down(directory)
        tail = (directory / "kube-apiserver.log").read_text(errors="replace").splitlines()[-20:]
        raise TestbedError("kube-apiserver did not become ready:\n" + "\n".join(tail)) from None
    plane.kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "testbed",
                        "cluster": {"server": plane.server, "certificate-authority": str(plane.ca_file)},
                    }
                ],
                "users": [{"name": "admin", "user": {"token": token}}],
                "contexts": [{"name": "testbed", "context": {"cluster": "testbed", "user": "admin"}}],
                "current-context": "testbed",
            },
            indent=2,
        )
    )
    kubeconfig = f"--kubeconfig={plane.kubeconfig}"
    try:
        start(
            "kube-controller-manager",
            [
                str(kube_binary("kube-controller-manager")),
                kubeconfig,
                "--leader-elect=false",
                f"--service-account-private-key-file={key}",
                f"--root-ca-file={plane.ca_file}",
                "--bind-address=127.0.0.1",
                f"--secure-port={_free_port()}",
            ],
        )
        start(
            "kube-scheduler",
            [
                str(kube_binary("kube-scheduler")),
                kubeconfig,
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={_free_port()}",
            ],
        )
        install_crds(plane, third_party_crds())
        _create(plane, "/api/v1/nodes", _fake_node())
        start(
            "kwok",
            [
                str(kwok()),
                kubeconfig,
                f"--config={kwok_stages()}",
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                f"--server-address=127.0.0.1:{_free_port()}",
            ],
        )
        healthz = _free_port()
        start(
            "rollouts-controller",
            [
                str(rollouts_controller()),
                kubeconfig,
                "--leader-elect=false",
                f"--healthzPort={healthz}",
                f"--metricsPort={_free_port()}",
            ],
        )
        _until("the kwok node to be Ready", lambda: _node_ready(plane))
        _until("the Argo Rollouts controller", lambda: _healthy(f"http://127.0.0.1:{healthz}/healthz"))
    except (TestbedError, OSError) as exc:
        down(directory)
        raise TestbedError(f"{exc}; logs in {directory}") from None
    return plane


def _start(directory: Path, name: str, command: list[str], env: dict[str, str] | None = None) -> None:
    """Start `command` in a session of its own (so `down` stops its children too), logging to
    `directory`/<name>.log, and record its pid in `directory`/pids.json, in start order."""
    pids_file = directory / "pids.json"
    pids = json.loads(pids_file.read_text()) if pids_file.exists() else {}
    log = (directory / f"{name}.log").open("w")
    pids[name] = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env
    ).pid
    pids_file.write_text(json.dumps(pids))


def down(directory: Path, names: tuple[str, ...] | None = None) -> None:
    """Stop what `up` (and `argocd_up`) started in `directory`, last started first; `names`: only those."""
    pids_file = directory / "pids.json"
    try:
        pids = json.loads(pids_file.read_text())
    except (OSError, ValueError):
        return
    for name, pid in reversed(list(pids.items())):  # apiserver first, then etcd
        if names is not None and name not in names:
            continue
        del pids[name]
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        for _ in range(100):
            if _exited(pid):
                break
            time.sleep(0.1)
    if pids:
        pids_file.write_text(json.dumps(pids))
    else:
        pids_file.unlink(missing_ok=True)


def _exited(pid: int) -> bool:
    """True once `pid` has exited. A child of this process (`up` and `down` in one test session)
    stays a zombie until reaped, and `kill(pid, 0)` succeeds on a zombie: without reaping it here,
    every `down` waited out its full 10 s per process (a minute per test session)."""
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # not our child (`testbed.py down` from a shell): its parent reaps it
        reaped = 0
    if reaped == pid:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


ARGOCD_PROCESSES = ("argocd-redis", "argocd-repo-server", "argocd-application-controller")


@dataclass(frozen=True)
class ArgoCD:
    """Argo CD's application-controller and repo-server (and their own redis) on loopback, acting on
    the Applications in `namespace` of the test bed's API server. Logs in `directory`."""

    directory: Path
    namespace: str
    redis_port: int
    repo_server_port: int
    repo_server_metrics_port: int
    controller_metrics_port: int

    def log(self, process: str) -> Path:
        """The log of one of ARGOCD_PROCESSES."""
        return self.directory / f"{process}.log"

    @property
    def controller_log(self) -> Path:
        return self.log("argocd-application-controller")

    @property
    def repo_server_log(self) -> Path:
        return self.log("argocd-repo-server")


def _tail(log: Path, lines: int = 20) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def _redis_ready(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as connection:
            connection.sendall(b"PING\r\n")
            return connection.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _argocd_objects() -> list[tuple[str, dict[str, Any]]]:
    """What argocd-server and the install manifests would create, and the controller needs."""
    namespace = ARGOCD_NAMESPACE
    metadata = {"namespace": namespace, "labels": {"app.kubernetes.io/part-of": "argocd"}}
    return [
        ("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}),
        (
            # without it, or without the label its informer selects on, the controller exits at once:
            # "error loading cache settings: configmap \"argocd-cm\" not found"
            f"/api/v1/namespaces/{namespace}/configmaps",
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "argocd-cm", **metadata}},
        ),
        (
            f"/apis/argoproj.io/v1alpha1/namespaces/{namespace}/appprojects",
            {
                "apiVersion": "argoproj.io/v1alpha1",
                "kind": "AppProject",
                "metadata": {"name": "default", "namespace": namespace},
                "spec": {
                    "sourceRepos": ["*"],
                    "destinations": [{"namespace": "*", "server": "*"}],
                    "clusterResourceWhitelist": [{"group": "*", "kind": "*"}],
                },
            },
        ),
    ]


def argocd_up(plane: ControlPlane, directory: Path) -> ArgoCD:
    """Argo CD's CRDs, namespace, argocd-cm and AppProject `default` in `plane`, then a fresh redis, the
    repo-server and the application-controller on free loopback ports; logs and pids in `directory`
    (`plane.directory` or another: `down` of that directory stops them).

    Out of a pod: ARGOCD_FAKE_IN_CLUSTER=true makes the built-in destination
    https://kubernetes.default.svc use $KUBECONFIG (not --kubeconfig) instead of the pod's service
    account. A refresh annotation on an Application plays the Git webhook (argocd-server's, not run
    here); `--app-resync=10` and a 5 s revision cache bound the wait without one. The redis is new
    each time: the revision cache lives there and would outlive a restart with other flags."""
    for path in [argocd(), *argocd_crds(), git_verify_wrapper(), redis_server(), helm()]:
        if not path.exists():
            raise TestbedError(f"{path} is missing: run `python3 dev/testbed.py build`")
    argocd_down(directory)
    run = directory / "argocd"
    shutil.rmtree(run, ignore_errors=True)
    scratch = {name: run / name for name in ("tmp", "tls", "ssh", "gnupg", "gpg", "home")}
    for path in scratch.values():
        path.mkdir(parents=True, mode=0o700)
    install_crds(plane, argocd_crds())
    for url, body in _argocd_objects():
        _create(plane, url, body)
    bed = ArgoCD(directory, ARGOCD_NAMESPACE, *(_free_port() for _ in range(4)))
    redis = f"127.0.0.1:{bed.redis_port}"
    env = os.environ | {
        "ARGOCD_FAKE_IN_CLUSTER": "true",
        "KUBECONFIG": str(plane.kubeconfig),
        # the defaults are fixed paths (/app/config/..., a socket in the temp directory): two test
        # beds on one machine would share them
        "TMPDIR": str(scratch["tmp"]),  # the repo-server clones into $TMPDIR/_argocd-repo/
        "ARGOCD_ASK_PASS_SOCK": str(run / "askpass.sock"),
        "ARGOCD_GPG_ENABLED": "false",
        "ARGOCD_TLS_DATA_PATH": str(scratch["tls"]),
        "ARGOCD_SSH_DATA_PATH": str(scratch["ssh"]),
        "ARGOCD_GNUPGHOME": str(scratch["gnupg"]),
        "ARGOCD_GPG_DATA_PATH": str(scratch["gpg"]),
        # git without the developer's ~/.gitconfig (url rewrites, credential helpers)
        "HOME": str(scratch["home"]),
        # git (the system's), git-verify-wrapper.sh and helm: the repo-server's tools
        "PATH": os.pathsep.join([str(argocd().parent), str(helm().parent), os.environ.get("PATH", "")]),
    }
    redis_command = [str(redis_server()), "--port", str(bed.redis_port), "--bind", "127.0.0.1"]
    repo_server_command = [
        str(argocd()),
        *("--address", "127.0.0.1", "--port", str(bed.repo_server_port)),
        *("--metrics-address", "127.0.0.1", "--metrics-port", str(bed.repo_server_metrics_port)),
        *("--redis", redis, "--revision-cache-expiration=5s", "--logformat", "text"),
        # --disable-tls alone fails: --client-ca-path has a default, and both may not be given
        *("--disable-tls", "--client-ca-path="),
    ]
    controller_command = [
        str(argocd()),
        *("--namespace", ARGOCD_NAMESPACE, "--redis", redis, "--logformat", "text"),
        *("--repo-server", f"127.0.0.1:{bed.repo_server_port}", "--repo-server-plaintext"),
        *("--metrics-port", str(bed.controller_metrics_port), "--app-resync=10", "--app-resync-jitter=0"),
    ]
    try:
        _start(
            directory,
            "argocd-redis",
            [*redis_command, "--save", "", "--appendonly", "no"],
            env | {"LD_LIBRARY_PATH": str(_redis_libraries())},
        )
        _until("Argo CD's redis", lambda: _redis_ready(bed.redis_port), 30)
        _start(
            directory,
            "argocd-repo-server",
            repo_server_command,
            env | {"ARGOCD_BINARY_NAME": "argocd-repo-server"},
        )
        controller_env = env | {"ARGOCD_BINARY_NAME": "argocd-application-controller"}
        _start(directory, "argocd-application-controller", controller_command, controller_env)
        repo_server = f"http://127.0.0.1:{bed.repo_server_metrics_port}/healthz?full=true"
        _until("Argo CD's repo-server", lambda: _healthy(repo_server), 60)
        controller = f"http://127.0.0.1:{bed.controller_metrics_port}/healthz"
        _until("Argo CD's application-controller", lambda: _healthy(controller), 60)
    except (TestbedError, OSError) as exc:
        argocd_down(directory)
        logs = [bed.log(process) for process in ARGOCD_PROCESSES if bed.log(process).exists()]
        tails = [f"== {log}\n{_tail(log)}" for log in logs]
        raise TestbedError("\n".join([str(exc), *tails])) from None
    return bed


def argocd_down(directory: Path) -> None:
    """Stop what `argocd_up(..., directory)` started (the objects it created stay in the API server)."""
    down(directory, ARGOCD_PROCESSES)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["build", "up", "down"])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    parser.add_argument(
        "--argocd", action="store_true", help="up: also Argo CD (controller, repo-server, redis)"
    )
    args = parser.parse_args()
    try:
        if args.command == "build":
            build()
        elif args.command == "up":
            build()
            plane = up(args.dir)
            if args.argocd:
                argocd_up(plane, args.dir)
            print(plane.kubeconfig)
        else:
            down(args.dir)
    except TestbedError as exc:
        sys.exit(f"testbed: {exc}")


if __name__ == "__main__":
    main()
