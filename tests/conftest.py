"""Shared fixtures. Nothing here is mocked: training is real torch, tracking is a real MLflow store."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from promoter.local.rollout import free_port

from .admission_webhook import admission_webhook  # noqa: F401  (the webhook, for test_admission and test_rbac)
from .gitops import applications, argocd  # noqa: F401  (a real Argo CD, for the GitOps tests)
from .kube import control_plane, kube  # noqa: F401  (session fixtures shared by several modules)
from .openbao import vault  # noqa: F401
from .prometheus import prometheus  # noqa: F401  (a real Prometheus, for the dashboards' live test)
from .tracking import tracking_server  # noqa: F401  (a real MLflow server with basic-auth, users from OpenBao)

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
PROMOTER = Path(sys.executable).parent / "promoter"


# Modules that spend most of their time waiting on other processes (operator timers, controllers,
# stand-ins): `make test` runs files on two workers (pytest-xdist, --dist loadfile), and a worker
# takes files in collection order, so these go first and overlap with the CPU-bound rest.
MOSTLY_WAITING = ("test_gitops_flow.py", "test_operator_cluster.py", "test_gitops_testbed.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.path.name not in MOSTLY_WAITING)  # stable: order otherwise kept


@pytest.fixture(autouse=True)
def _local_tracking(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Tests own their MLflow store: a developer's MLFLOW_TRACKING_URI must never receive test runs."""
    for name in ("MLFLOW_TRACKING_URI", "PROMOTER_WORKDIR"):
        # setenv first so that teardown restores the original state even if code under test sets it
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    yield


def run_cli(
    *args: str | Path, cwd: Path | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "PROMOTER_WORKDIR")}
    env["COLUMNS"] = "200"  # rich wraps tables to the terminal; keep gate names on one line
    return subprocess.run(
        [str(PROMOTER), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd or REPO,
        env=env,
        timeout=timeout,
        check=False,
    )


def write_spec(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


class Server:
    """A `promoter serve` process on loopback, stopped with SIGTERM like Kubernetes does."""

    def __init__(
        self,
        workdir: Path,
        *args: str,
        launcher: tuple[str, ...] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        """`launcher` runs the server through another command (e.g. into a mount namespace); `env`:
        its own variables (a pod's), in place of any MLflow or Vault variable of this process."""
        import httpx

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        dropped = ("MLFLOW_", "VAULT_") if env is not None else ("MLFLOW_TRACKING_URI",)
        env = {
            **{
                k: v
                for k, v in os.environ.items()
                if not k.startswith(dropped) and k != "PROMETHEUS_MULTIPROC_DIR"
            },
            **(env or {}),
        }
        self.log = (workdir / f"serve-{self.port}.log").open("w")
        self.process = subprocess.Popen(
            [*launcher, str(PROMOTER), "serve", "--workdir", str(workdir), "--port", str(self.port), *args],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        self.client = httpx.Client(base_url=self.url, timeout=30)

    def wait_ready(self, timeout: float = 120) -> None:
        import time

        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"server exited with {self.process.returncode}: {Path(self.log.name).read_text()}"
                )
            try:
                if self.client.get("/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"server not ready after {timeout}s: {Path(self.log.name).read_text()}")

    def stop(self) -> bool:
        """SIGTERM and wait; True for a clean stop. After a graceful shutdown uvicorn re-raises the
        signal it caught, so "terminated by our SIGTERM" is clean, as is exit status 0."""
        import signal

        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=60)
        self.client.close()
        self.log.close()
        return code in (0, -signal.SIGTERM)


def register_digits_champion(workdir: Path, tracking: str | None = None) -> Path:
    """Train the example digits model into `workdir`'s MLflow store (or the tracking server at
    `tracking`, with this process's MLflow login) as version 1, alias @champion."""
    import mlflow

    from promoter.pipelines.tracking import configure_tracking
    from promoter.pipelines.train import train_candidate
    from promoter.promotion.spec import load_promotion

    # session fixtures run before the per-test environment cleanup above
    with pytest.MonkeyPatch.context() as monkeypatch:
        if tracking is None:
            monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
        else:
            monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking)
        candidate = train_candidate(load_promotion(EXAMPLES / "digits" / "promotion.yaml"), workdir)
        client = configure_tracking(workdir)
    version = mlflow.register_model(f"runs:/{candidate.run_id}/model", "digits").version
    client.set_registered_model_alias("digits", "champion", str(version))
    return workdir


@pytest.fixture(scope="session")
def registered_digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workdir whose MLflow registry holds the example digits model as version 1, alias @champion."""
    return register_digits_champion(tmp_path_factory.mktemp("registry"))
