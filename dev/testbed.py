#!/usr/bin/env python3
"""A real Kubernetes control plane on loopback, from binaries built here: etcd and kube-apiserver.

No Docker and no images: etcd comes from Debian's etcd-server package (extracted, never installed as
a service) and kube-apiserver is built from Go modules (`dev/kube/`, a wrapper module pinning
k8s.io/kubernetes). Both are cached under ~/.cache/promoter/ by version, so a machine builds them once.

    python3 dev/testbed.py build          # fetch and build what is missing (minutes, once)
    python3 dev/testbed.py up [--dir D]   # start on free ports; prints the kubeconfig path
    python3 dev/testbed.py down [--dir D]

Standard library and the openssl command only: it runs before any virtual environment exists.
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
import urllib.request
from dataclasses import dataclass
from pathlib import Path

KUBERNETES_VERSION = "v1.34.4"
ETCD_DEB_VERSION = "3.4.23-4+b4"  # Debian's etcd-server; kube-apiserver accepts 3.4 (slower watches)
CACHE = Path(os.environ.get("PROMOTER_CACHE", Path.home() / ".cache" / "promoter"))
KUBE_MODULE = Path(__file__).resolve().parent / "kube"
DEFAULT_DIR = Path(tempfile.gettempdir()) / "promoter-testbed"
START_SECONDS = 120.0


class TestbedError(RuntimeError):
    pass


def kube_apiserver() -> Path:
    return CACHE / f"kubernetes-{KUBERNETES_VERSION}" / "bin" / "kube-apiserver"


def etcd() -> Path:
    return CACHE / f"etcd-{ETCD_DEB_VERSION}" / "usr" / "bin" / "etcd"


def _run(command: list[str], **kwargs: object) -> None:
    completed = subprocess.run(command, check=False, **kwargs)  # type: ignore[call-overload]
    if completed.returncode != 0:
        raise TestbedError(f"{' '.join(command)} failed with exit {completed.returncode}")


def build() -> None:
    """Fetch etcd and build kube-apiserver unless the cache already holds this version."""
    if not etcd().exists():
        with tempfile.TemporaryDirectory() as scratch:
            _run(["apt-get", "download", f"etcd-server={ETCD_DEB_VERSION}"], cwd=scratch)
            package = next(Path(scratch).glob("etcd-server_*.deb"))
            _run(["dpkg-deb", "-x", str(package), str(etcd().parents[2])])
        if not etcd().exists():
            raise TestbedError(f"etcd-server {ETCD_DEB_VERSION} did not contain {etcd()}")
    if not kube_apiserver().exists():
        version = KUBERNETES_VERSION
        minor = version.split(".")[1]
        ldflags = " ".join(
            [
                "-s -w",
                f"-X k8s.io/component-base/version.gitVersion={version}",
                "-X k8s.io/component-base/version.gitMajor=1",
                f"-X k8s.io/component-base/version.gitMinor={minor}",
                f"-X k8s.io/client-go/pkg/version.gitVersion={version}",
            ]
        )
        env = os.environ | {
            "GOMODCACHE": str(CACHE / "go" / "mod"),
            "GOCACHE": str(CACHE / "go" / "build"),
            "GOTOOLCHAIN": "local",
            "CGO_ENABLED": "0",
            "GOFLAGS": "-mod=readonly",
        }
        partial = kube_apiserver().with_suffix(".partial")
        partial.parent.mkdir(parents=True, exist_ok=True)
        print(
            f"building kube-apiserver {version} (first time on this machine: several minutes)",
            file=sys.stderr,
        )
        _run(
            [
                "go",
                "build",
                "-trimpath",
                "-ldflags",
                ldflags,
                "-o",
                str(partial),
                "k8s.io/kubernetes/cmd/kube-apiserver",
            ],
            cwd=KUBE_MODULE,
            env=env,
        )
        partial.replace(kube_apiserver())


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


def up(directory: Path) -> ControlPlane:
    for binary in (etcd(), kube_apiserver()):
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
    processes = {
        "etcd": [
            str(etcd()),
            f"--data-dir={directory / 'etcd'}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
            f"--initial-cluster=default=http://127.0.0.1:{peer_port}",
            "--unsafe-no-fsync",
        ],
        "kube-apiserver": [
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
            "--disable-admission-plugins=ServiceAccount",  # no controller-manager to create tokens
        ],
    }
    pids = {}
    for name, command in processes.items():
        log = (directory / f"{name}.log").open("w")
        pids[name] = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        ).pid
        (directory / "pids.json").write_text(json.dumps(pids))
    plane = ControlPlane(directory, f"https://127.0.0.1:{api_port}", token)
    deadline = time.monotonic() + START_SECONDS
    while not _ready(plane.server, token, plane.ca_file):
        if time.monotonic() > deadline:
            down(directory)
            tail = (directory / "kube-apiserver.log").read_text(errors="replace").splitlines()[-20:]
            raise TestbedError("kube-apiserver did not become ready:\n" + "\n".join(tail))
        time.sleep(0.3)
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
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
    (directory / "pids.json").unlink(missing_ok=True)


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
