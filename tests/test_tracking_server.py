"""`promoter tracking-server` against the real OpenBao: MLflow's own server behind its basic-auth app,
every component with its own MLflow user whose password it reads from OpenBao, and exactly the
rights promoter.tracking_server gives it. Nothing is stubbed: the server, the auth store, the
registry and the served artifact store are MLflow's."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import mlflow
import pytest
import requests
from mlflow.exceptions import MlflowException, RestException
from mlflow.pyfunc.model import PythonModel
from mlflow.tracking import MlflowClient

from promoter.registry import MlflowRegistry

from .conftest import run_cli
from .openbao import Vault
from .tracking import (
    MLFLOW_COMPONENTS,
    TrackingServer,
    mlflow_login,
    provision_mlflow_users,
    start_tracking_server,
    stop_tracking_server,
)


class Model(PythonModel):
    """The least model MLflow registers and serves: what matters here is who may log and load it."""

    def predict(
        self, context: Any, model_input: list[float], params: dict[str, Any] | None = None
    ) -> list[float]:
        return model_input


def act_as(monkeypatch: pytest.MonkeyPatch, server: TrackingServer, login: tuple[str, str]) -> MlflowClient:
    """An MLflow client that sends `login` (MLflow's client reads these variables at every request).

    Both URIs point at the server, the registry's too: MLflow keeps a process-wide registry URI, and
    one an earlier test in this process set (a SQLite store) would otherwise take the registry calls
    away from the server and its permission checks. The module-level URIs are put back afterwards.
    """
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    monkeypatch.setattr(registry_utils, "_registry_uri", server.uri)
    monkeypatch.setattr(tracking_utils, "_tracking_uri", server.uri)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.uri)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", login[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", login[1])
    return MlflowClient(server.uri, registry_uri=server.uri)


def kv(vault: Vault, path: str) -> tuple[dict[str, str], int]:
    answer = vault.admin.secrets.kv.v2.read_secret_version(path=path, mount_point="secret")
    return answer["data"]["data"], answer["data"]["metadata"]["version"]


def denied(call: object) -> int:
    assert callable(call)
    with pytest.raises((MlflowException, RestException)) as refused:
        call()
    text = str(refused.value)
    assert "PERMISSION_DENIED" in text or "403" in text, text
    return 403


def test_vault_setup_gives_each_component_its_own_mlflow_user_and_the_server_only_hashes(
    vault: Vault, tracking_server: TrackingServer, tmp_path: Path
) -> None:
    before = {c: kv(vault, f"promoter/{c}") for c in (*MLFLOW_COMPONENTS, "tracking")}
    again = provision_mlflow_users(vault)  # the fixture ran it once: a second run changes nothing
    assert again.returncode == 0, again.stderr
    after = {c: kv(vault, f"promoter/{c}") for c in (*MLFLOW_COMPONENTS, "tracking")}
    assert after == before
    passwords = {c: before[c][0]["mlflow_tracking_password"] for c in MLFLOW_COMPONENTS}
    tracking = before["tracking"][0]
    for name in MLFLOW_COMPONENTS:
        user, password = mlflow_login(vault, name, tmp_path)  # as the component itself
        assert (user, password) == (f"promoter-{name}", passwords[name])
        assert before[name][0]["mlflow_tracking_token"] == vault.canaries[name]  # merged, not replaced
    secrets = [*passwords.values(), tracking["mlflow_admin_password"], tracking["flask_secret_key"]]
    assert not any(secret in again.stdout + again.stderr for secret in secrets)
    assert "server: MLflow user promoter-server, password in secret/promoter/server" in again.stdout
    assert not any(password in json.dumps(tracking) for password in passwords.values())
    assert set(json.loads(tracking["mlflow_user_password_hashes"])) == {
        f"promoter-{c}" for c in MLFLOW_COMPONENTS
    }
    loadtester, _ = kv(vault, "promoter/loadtester")
    assert "mlflow_tracking_password" not in loadtester  # it never talks to MLflow


def test_a_component_can_do_its_part_and_nothing_more(
    vault: Vault, tracking_server: TrackingServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trainer, operator, server = (mlflow_login(vault, c, tmp_path) for c in ("trainer", "operator", "server"))

    client = act_as(monkeypatch, tracking_server, trainer)
    experiment = client.create_experiment("rights")
    with mlflow.start_run(experiment_id=experiment) as run:
        mlflow.log_param("lr", 0.1)
        mlflow.log_metric("accuracy", 0.97)
        mlflow.pyfunc.log_model(name="model", python_model=Model())
    run_id = run.info.run_id
    assert any(tracking_server.artifacts.rglob("MLmodel")), "the model went to the served artifact store"

    client = act_as(monkeypatch, tracking_server, operator)
    registry = MlflowRegistry(client, "system:serviceaccount:promoter:promoter-operator")
    version = registry.register("rights", run_id, "rights-1")
    registry.move_champion("rights", version, "test")
    assert registry.champion("rights") == version
    denied(lambda: client.log_metric(run_id, "accuracy", 1.0))  # it reads runs, never writes them
    denied(lambda: client.delete_run(run_id))
    denied(lambda: client.delete_experiment(experiment))

    client = act_as(monkeypatch, tracking_server, server)
    assert str(client.get_model_version_by_alias("rights", "champion").version) == version
    loaded = mlflow.pyfunc.load_model(f"models:/rights/{version}")
    assert loaded.predict([1.0, 2.0]) == [1.0, 2.0]
    denied(lambda: client.set_registered_model_alias("rights", "champion", version))
    denied(lambda: client.create_model_version("rights", f"models:/{run_id}", run_id))
    denied(lambda: client.log_metric(run_id, "accuracy", 1.0))

    client = act_as(monkeypatch, tracking_server, trainer)
    assert str(client.get_model_version_by_alias("rights", "champion").version) == version  # evaluate's read
    denied(lambda: client.set_registered_model_alias("rights", "champion", version))
    denied(lambda: client.create_model_version("rights", f"runs:/{run_id}/model", run_id))


def test_wrong_password_unknown_user_and_no_credentials_get_401(
    vault: Vault, tracking_server: TrackingServer, tmp_path: Path
) -> None:
    user, password = mlflow_login(vault, "server", tmp_path)
    url = f"{tracking_server.uri}/api/2.0/mlflow/experiments/search?max_results=5"
    assert requests.get(url, auth=(user, password), timeout=10).status_code == 200
    assert requests.get(url, auth=(user, password + "x"), timeout=10).status_code == 401
    assert requests.get(url, auth=("promoter-loadtester", password), timeout=10).status_code == 401
    assert requests.get(url, timeout=10).status_code == 401
    artifacts = f"{tracking_server.uri}/api/2.0/mlflow-artifacts/artifacts"
    assert requests.get(artifacts, timeout=10).status_code == 401


def test_secrets_stay_off_command_lines_and_logs_and_the_auth_config_is_private(
    vault: Vault, tracking_server: TrackingServer
) -> None:
    tracking, _ = kv(vault, "promoter/tracking")
    secrets = [tracking["mlflow_admin_password"], tracking["flask_secret_key"]]
    secrets += [kv(vault, f"promoter/{c}")[0]["mlflow_tracking_password"] for c in MLFLOW_COMPONENTS]
    group = os.getpgid(tracking_server.process.pid)
    command_lines = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if os.getpgid(int(proc.name)) == group:
                    command_lines.append((proc / "cmdline").read_bytes().decode(errors="replace"))
            except (OSError, ProcessLookupError):
                continue
    assert any("mlflow" in line and "server" in line for line in command_lines), command_lines
    assert not any(secret in line for secret in secrets for line in command_lines)
    log = tracking_server.log_text()
    assert "MLflow users ready: promoter-operator, promoter-server, promoter-trainer" in log
    assert not any(secret in log for secret in secrets)
    assert "Warning" not in log and "WARNING" not in log, log  # no third-party warnings either
    config = tracking_server.run_dir / "basic_auth.ini"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert "default_permission = NO_PERMISSIONS" in config.read_text()


def test_bad_invocations_exit_2_naming_what_is_missing(vault: Vault, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAULT_ADDR", vault.addr)
    monkeypatch.setenv("VAULT_TOKEN", "root")
    lone = run_cli("vault-setup", "--rotate-mlflow-passwords")
    assert lone.returncode == 2 and "need --mlflow-users" in lone.stderr
    monkeypatch.delenv("VAULT_ADDR")
    server = run_cli("tracking-server", "--port", "0")
    assert server.returncode == 2 and "set VAULT_ADDR, VAULT_ROLE and VAULT_SECRET_PATH" in server.stderr
    monkeypatch.setenv("VAULT_ADDR", vault.addr)
    monkeypatch.delenv("VAULT_ROLE", raising=False)
    unnamed = run_cli("tracking-server", "--port", "0")
    assert unnamed.returncode == 2 and "VAULT_ROLE is not set" in unnamed.stderr
    assert "Traceback" not in lone.stderr + server.stderr + unnamed.stderr


def test_a_server_reached_by_its_service_name_needs_allowed_hosts(
    vault: Vault, tracking_server: TrackingServer, tmp_path: Path
) -> None:
    """In a cluster clients send `Host: <service>.<namespace>.svc`; MLflow's middleware refuses any
    host but localhost (DNS-rebinding protection) unless the chart passes --allowed-hosts."""
    login = mlflow_login(vault, "server", tmp_path)
    service = {"Host": "promoter-mlflow.promoter.svc:5000"}
    path = "/api/2.0/mlflow/experiments/search?max_results=1"
    refused = requests.get(f"{tracking_server.uri}{path}", auth=login, headers=service, timeout=10)
    assert refused.status_code == 403
    server = start_tracking_server(
        vault, tmp_path / "named", "--allowed-hosts", "promoter-mlflow.promoter.svc:5000,localhost:*"
    )
    try:
        answer = requests.get(f"{server.uri}{path}", auth=login, headers=service, timeout=10)
        assert answer.status_code == 200, answer.text
    finally:
        stop_tracking_server(server)
