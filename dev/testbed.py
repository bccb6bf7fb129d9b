#!/usr/bin/env python3
"""A real Kubernetes control plane on loopback, from binaries built here, with Argo Rollouts.

No Docker and no images. etcd comes from Debian's etcd-server package (extracted, never installed
as a service); kube-apiserver, kube-controller-manager and kube-scheduler are built from Go modules
(`dev/kube/`, a wrapper module pinning k8s.io/kubernetes); kwok gives fake nodes whose pods become
Running and Ready without a kubelet; the Argo Rollouts controller is built from `dev/rollouts/`.
Everything is cached under ~/.cache/promoter/ by version, so a machine builds it once.

    python3 dev/testbed.py build                      # fetch and build what is missing (once)
    .venv/bin/python dev/testbed.py up [--dir D]      # start on free ports; prints the kubeconfig
    python3 dev/testbed.py down [--dir D]

`build` and `down` need the standard library and openssl only (they run before any virtual
environment exists); `up` reads the CRD YAMLs with PyYAML.
"""

from __future__ import annotations

import argparse
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
CACHE = Path(os.environ.get("PROMOTER_CACHE", Path.home() / ".cache" / "promoter"))
DEV = Path(__file__).resolve().parent
KUBE_MODULE = DEV / "kube"
ROLLOUTS_MODULE = DEV / "rollouts"
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


def _go_env() -> dict[str, str]:
    return os.environ | {
        "GOMODCACHE": str(CACHE / "go" / "mod"),
        "GOCACHE": str(CACHE / "go" / "build"),
        "GOTOOLCHAIN": "local",
        "CGO_ENABLED": "0",
        "GOFLAGS": "-mod=readonly",
    }


def _go_build(module: Path, package: str, target: Path, ldflags: str = "-s -w") -> None:
    if target.exists():
        return
    partial = target.with_suffix(".partial")
    partial.parent.mkdir(parents=True, exist_ok=True)
    print(f"building {target.name} (first time on this machine: minutes)", file=sys.stderr)
    _run(
        ["go", "build", "-trimpath", "-ldflags", ldflags, "-o", str(partial), package],
        cwd=module,
        env=_go_env(),
    )
    partial.replace(target)


def _module_dir(path: str) -> Path:
    """Where the Go module cache keeps `path@version` (downloading it if needed)."""
    listed = subprocess.run(
        ["go", "mod", "download", "-json", path],
        cwd=DEV,
        env=_go_env() | {"GOFLAGS": ""},
        capture_output=True,
        text=True,
        check=False,
    )
    if listed.returncode != 0:
        raise TestbedError(f"go mod download {path} failed: {listed.stdout}{listed.stderr}")
    return Path(json.loads(listed.stdout)["Dir"])


def _debian_binary(package: str, version: str, binary: Path) -> None:
    """Unpack one Debian package into the cache (apt-get download + dpkg-deb: no root, no install)."""
    if binary.exists():
        return
    with tempfile.TemporaryDirectory() as scratch:
        _run(["apt-get", "download", f"{package}={version}"], cwd=scratch)
        deb = next(Path(scratch).glob(f"{package}_*.deb"))
        _run(["dpkg-deb", "-x", str(deb), str(binary.parents[2])])
    if not binary.exists():
        raise TestbedError(f"{package} {version} did not contain {binary}")


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
    pids: dict[str, int] = {}

    def start(name: str, command: list[str]) -> None:
        log = (directory / f"{name}.log").open("w")
        pids[name] = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        ).pid
        (directory / "pids.json").write_text(json.dumps(pids))

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


def down(directory: Path) -> None:
    try:
        pids = json.loads((directory / "pids.json").read_text())
    except (OSError, ValueError):
        return
    for pid in reversed(list(pids.values())):  # apiserver first, then etcd
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        for _ in range(100):
            if _exited(pid):
                break
            time.sleep(0.1)
    (directory / "pids.json").unlink(missing_ok=True)


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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["build", "up", "down"])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    args = parser.parse_args()
    try:
        if args.command == "build":
            build()
        elif args.command == "up":
            build()
            print(up(args.dir).kubeconfig)
        else:
            down(args.dir)
    except TestbedError as exc:
        sys.exit(f"testbed: {exc}")


if __name__ == "__main__":
    main()
