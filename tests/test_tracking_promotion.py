"""`promoter run` against a real `promoter tracking-server` (MLflow over HTTP with basic-auth), every
local component with its own MLflow user from OpenBao.

The run process gets only the shared Vault variables and PROMOTER_LOCAL_VAULT_CREDENTIALS (one
credential per component); it acts as the operator, its pipeline steps as the trainer, its servers
as the server, its load test as the load tester (promoter.local.identities). The proof of identity
is the server's own: MLflow's auth app grants MANAGE on what a user creates, so its auth database
says which user created the experiment (the trainer) and the registered model (the operator); each
process's log says which Vault role it logged in as; and no component password is left anywhere."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from .openbao import Vault, service_account_token
from .test_local_promotion import GOOD_PARAMS, write_promotion
from .test_secret_leaks import _files_containing
from .tracking import MLFLOW_COMPONENTS, TrackingServer, mlflow_login

PROMOTER = Path(sys.executable).parent / "promoter"


def test_a_local_promotion_against_the_tracking_server_acts_as_each_component(
    vault: Vault, tracking_server: TrackingServer, tmp_path: Path
) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    for item in vault.layout.components:
        service_account_token(vault, item.service_account, credentials / item.name)
    workdir = tmp_path / "work"
    spec = write_promotion(tmp_path, "over-http", GOOD_PARAMS)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "MLFLOW_", "PROMOTER_"))}
    env.update(
        VAULT_ADDR=vault.addr,
        VAULT_AUTH_METHOD="jwt",
        PROMOTER_LOCAL_VAULT_CREDENTIALS=str(credentials),
        MLFLOW_TRACKING_URI=tracking_server.uri,
    )

    def promoter(*args: str | Path) -> subprocess.CompletedProcess[str]:
        command = [str(PROMOTER), *map(str, args), "--workdir", str(workdir)]
        return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, check=False)

    try:
        completed = promoter("run", spec, "--json")
        assert completed.returncode == 0, completed.stderr[-4000:]
        status = json.loads(completed.stdout)
        assert status["phase"] == "Promoted"
        version, run_id = status["modelVersion"], status["runId"]

        train_log = (workdir / "workflows" / "over-http-train" / "steps" / "train" / "log.txt").read_text()
        assert "from secret/promoter/trainer as role promoter-trainer" in train_log
        # the servers outlive `promoter run`: what each was started with is in /proc
        state = json.loads((workdir / "rollouts" / "digits-serving" / "state.json").read_text())
        server = started_with(state["servers"][version]["pid"])
        assert (server["VAULT_ROLE"], server["VAULT_SECRET_PATH"]) == ("promoter-server", "promoter/server")
        assert server["VAULT_CREDENTIAL_FILE"] == str(credentials / "server")
        assert not any(
            name.startswith("MLFLOW_TRACKING_") and name != "MLFLOW_TRACKING_URI" for name in server
        )
        proxy = started_with(state["proxy"]["pid"])
        assert not any(name.startswith("VAULT_") for name in proxy)  # the proxy is nobody

        auth = tracking_server.auth_store()
        try:
            created_models = {p.name for p in auth.list_registered_model_permissions("promoter-operator")}
            trainer_grants = auth.list_experiment_permissions("promoter-trainer")
            server_models = auth.list_registered_model_permissions("promoter-server")
        finally:
            auth.engine.dispose()
        assert "digits" in created_models  # the driver registered it as the operator
        with sqlite3.connect(tracking_server.backend) as backend:
            (experiment,) = backend.execute(
                "select experiment_id from runs where run_uuid = ?", (run_id,)
            ).fetchone()
        created = {p.experiment_id for p in trainer_grants if p.permission == "MANAGE"}
        assert str(experiment) in created, trainer_grants  # the train step created the experiment
        assert not any(p.name == "digits" for p in server_models)  # the server only reads

        passwords = [mlflow_login(vault, c, tmp_path)[1].encode() for c in MLFLOW_COMPONENTS]
        secrets = passwords + [canary.encode() for canary in vault.canaries.values()]
        assert _files_containing(workdir, secrets) == {}
        assert not any(p.decode() in completed.stdout + completed.stderr for p in secrets)
        # the tracking server's whole directory: the MLflow store (runs, params, tags, registry), every
        # served artifact, its log, and its auth files (which hold password hashes, never a password)
        assert _files_containing(tracking_server.backend.parent, secrets) == {}
    finally:
        promoter("down")


def started_with(pid: int) -> dict[str, str]:
    """The environment a process was started with."""
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(entry.decode().split("=", 1) for entry in raw if b"=" in entry)
