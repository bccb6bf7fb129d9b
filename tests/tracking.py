"""A real MLflow tracking server (`promoter tracking-server`: MLflow's basic-auth app) whose users come
from the real OpenBao of tests/openbao.py, and each component's MLflow login as Vault gives it."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from promoter.local.rollout import free_port
from promoter.secrets import SecretStore, VaultSettings
from promoter.tracking_server import STARLETTE_WSGI_NOTICE

from .openbao import Vault, service_account_token, wait_until

PROMOTER = Path(sys.executable).parent / "promoter"
MLFLOW_COMPONENTS = ("operator", "trainer", "server")


@dataclass(frozen=True)
class TrackingServer:
    uri: str
    process: subprocess.Popen[bytes]
    run_dir: Path
    log: Path
    artifacts: Path
    backend: Path  # the SQLite file of runs and the registry

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def auth_store(self) -> Any:
        """MLflow's own reader of the server's auth database (users, grants); dispose its engine after."""
        with warnings.catch_warnings():  # importing mlflow.server: see promoter.tracking_server
            warnings.filterwarnings("ignore", message=STARLETTE_WSGI_NOTICE)
            from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore

        store = SqlAlchemyStore()
        store.init_db(f"sqlite:///{self.run_dir / 'basic_auth.db'}")  # type: ignore[no-untyped-call]
        return store


def vault_env(vault: Vault, component: str, token_dir: Path) -> dict[str, str]:
    """The VAULT_* variables one component's process gets: its own role and path, a JWT login."""
    found = vault.layout.component(component)
    token = service_account_token(vault, found.service_account, token_dir / f"{component}.jwt")
    return {
        "VAULT_ADDR": vault.addr,
        "VAULT_AUTH_METHOD": "jwt",
        "VAULT_ROLE": found.role_name,
        "VAULT_SECRET_PATH": found.secret_path,
        "VAULT_CREDENTIAL_FILE": str(token),
    }


def mlflow_login(vault: Vault, component: str, token_dir: Path) -> tuple[str, str]:
    """The component's MLflow user and password, read from Vault as that component (its own login)."""
    env = vault_env(vault, component, token_dir)
    store = SecretStore(
        VaultSettings(
            addr=env["VAULT_ADDR"],
            role=env["VAULT_ROLE"],
            secret_path=env["VAULT_SECRET_PATH"],
            auth_method="jwt",
            credential_file=Path(env["VAULT_CREDENTIAL_FILE"]),
        )
    )
    secrets = store.read()
    return secrets["mlflow_tracking_username"], secrets["mlflow_tracking_password"]


def provision_mlflow_users(vault: Vault, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VAULT_ADDR": vault.addr, "VAULT_TOKEN": "root"}
    return subprocess.run(
        [str(PROMOTER), "vault-setup", "--mlflow-users", *extra],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def start_tracking_server(
    vault: Vault | None, directory: Path, *options: str, identity: Mapping[str, str] | None = None
) -> TrackingServer:
    """`promoter tracking-server` on loopback, SQLite backend and served artifacts under `directory`.

    `identity`: its VAULT_* variables (e.g. a Kubernetes login); default: a JWT login to `vault`."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "MLFLOW_", "PROMOTER_"))}
    if identity is None:
        assert vault is not None
        identity = vault_env(vault, "tracking", directory)
    env.update(identity)
    env["PROMOTER_TRACKING_RUN_DIR"] = str(directory / "run")
    log = directory / "tracking-server.log"
    backend = directory / "mlflow.db"
    artifacts = directory / "artifacts"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [
                str(PROMOTER),
                "tracking-server",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--backend-store-uri",
                f"sqlite:///{backend}",
                "--artifacts-destination",
                str(artifacts),
                *options,
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # mlflow server starts uvicorn workers: stopped as a group
        )
    uri = _answering(process, f"http://127.0.0.1:{port}", log)
    return TrackingServer(uri, process, directory / "run", log, artifacts, backend)


def _answering(process: subprocess.Popen[bytes], uri: str, log: Path) -> str:
    """`uri`, once the server behind it answers /health (its log's end if it exits or never does)."""

    def healthy() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"{uri} exited {process.returncode}: {log.read_text()[-3000:]}")
        try:
            return requests.get(f"{uri}/health", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    assert wait_until(healthy, 90), f"{uri} did not answer: {log.read_text()[-3000:]}"
    return uri


def start_mlflow_server(directory: Path) -> TrackingServer:
    """MLflow's own server (`mlflow server`, no auth app) on loopback, SQLite backend and served
    artifacts under `directory`: for tests about something else than logins (GitOps), whose pods
    then need no MLflow password."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "MLFLOW_", "PROMOTER_"))}
    log, backend, artifacts = (
        directory / "mlflow-server.log",
        directory / "mlflow.db",
        directory / "artifacts",
    )
    command = [
        str(PROMOTER.parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
        "--workers", "1",
        "--backend-store-uri", f"sqlite:///{backend}", "--artifacts-destination", str(artifacts),
    ]  # fmt: skip
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command, stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    uri = _answering(process, f"http://127.0.0.1:{port}", log)
    return TrackingServer(uri, process, directory, log, artifacts, backend)


def stop_tracking_server(server: TrackingServer) -> None:
    import signal

    if server.process.poll() is None:
        os.killpg(server.process.pid, signal.SIGTERM)
        try:
            server.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait(timeout=10)


@pytest.fixture(scope="session")
def tracking_server(vault: Vault, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrackingServer]:
    provisioned = provision_mlflow_users(vault)
    assert provisioned.returncode == 0, provisioned.stderr
    server = start_tracking_server(vault, tmp_path_factory.mktemp("tracking"))
    try:
        yield server
    finally:
        stop_tracking_server(server)
