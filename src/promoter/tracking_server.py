"""`promoter tracking-server`: MLflow's tracking server behind its basic-auth app, its users from OpenBao.

The process logs into Vault as the `tracking` component (VAULT_* variables, as every component
does) and reads its own path only: the admin's user name and password, a static Flask secret key
(MLflow's auth app needs one shared by every worker for CSRF), the backend store URI when no
`--backend-store-uri` is given (PostgreSQL with its password), and each component's MLflow
password *hash* as `promoter vault-setup --mlflow-users` wrote it. It never holds a component's
password.

Before `mlflow server` starts, it writes MLflow's auth ini (`MLFLOW_AUTH_CONFIG_PATH`, mode 0600) into
`$PROMOTER_TRACKING_RUN_DIR` (default `/run/mlflow`, a memory emptyDir in the chart) and creates or
updates every user and its grants directly in the auth database, so no client can reach the server
before its user exists (no race between a pod's first request and a user-creation call). Then it
execs `mlflow server --app-name basic-auth`; secrets reach it through the environment and the ini
file, never its command line (readable by anyone on the node through /proc) nor a log line.

Least privilege, with `default_permission = NO_PERMISSIONS` (a user without a grant sees nothing;
a request without valid credentials gets 401):

- promoter-trainer: experiment `*` EDIT, registered model `*` READ. Train and evaluate log runs,
  metrics, artifacts and models into the promotion's experiment; evaluate reads today's `@champion`.
- promoter-operator: experiment `*` READ, registered model `*` EDIT. It reads the evaluate run and
  its gate report, registers versions, moves aliases and writes the alias-history tags; it cannot
  write or delete a run.
- promoter-server: experiment `*` READ, registered model `*` READ. It loads `models:/NAME/VERSION`
  and that version's artifacts.
- the load tester has no MLflow user: it only calls the preview Service.

Creating an experiment or a registered model is open to every authenticated user in MLflow (with
workspaces off), and the creator gets MANAGE on what it created; the grants above are the floor
each component needs on what another one created. Grants are wildcard (`*`) because promotions
create experiments and models by name at run time.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic_settings import SettingsConfigDict

from promoter.settings import EnvSettings
from promoter.vault_setup import (
    ADMIN_PASSWORD_KEY,
    ADMIN_USERNAME_KEY,
    BACKEND_STORE_URI_KEY,
    FLASK_SECRET_KEY,
    USER_HASHES_KEY,
    mlflow_username,
)

log = logging.getLogger("promoter.tracking_server")

AUTH_CONFIG_NAME = "basic_auth.ini"
AUTH_DATABASE_NAME = "basic_auth.db"
DEFAULT_PERMISSION = "NO_PERMISSIONS"
STARLETTE_WSGI_NOTICE = "starlette.middleware.wsgi is deprecated"
EXPERIMENT, REGISTERED_MODEL = "experiment", "registered_model"
# The least each MLflow user needs (see the module's docstring); applied at every start.
GRANTS: dict[str, dict[str, str]] = {
    mlflow_username("trainer"): {EXPERIMENT: "EDIT", REGISTERED_MODEL: "READ"},
    mlflow_username("operator"): {EXPERIMENT: "READ", REGISTERED_MODEL: "EDIT"},
    mlflow_username("server"): {EXPERIMENT: "READ", REGISTERED_MODEL: "READ"},
}


class TrackingServerSettings(EnvSettings):
    """Where the server keeps its auth files; never a secret."""

    model_config = SettingsConfigDict(env_prefix="PROMOTER_TRACKING_")

    run_dir: Path = Path("/run/mlflow")
    # The auth database (users and grants). Default: SQLite in run_dir, rebuilt at every start
    # from Vault (every user and grant is re-applied, so nothing is lost with it).
    auth_database_uri: str = ""


@dataclass(frozen=True)
class TrackingSecrets:
    """What the tracking server reads from its own Vault path."""

    admin_username: str
    admin_password: str
    flask_secret_key: str
    user_password_hashes: dict[str, str]
    backend_store_uri: str | None

    @classmethod
    def from_vault(cls, values: Mapping[str, str]) -> TrackingSecrets:
        missing = [k for k in (ADMIN_PASSWORD_KEY, FLASK_SECRET_KEY, USER_HASHES_KEY) if k not in values]
        if missing:
            raise ValueError(
                f"the tracking server's Vault path has no {', '.join(missing)}: "
                "run `promoter vault-setup --mlflow-users`"
            )
        hashes = json.loads(values[USER_HASHES_KEY])
        return cls(
            admin_username=values.get(ADMIN_USERNAME_KEY, "promoter-admin"),
            admin_password=values[ADMIN_PASSWORD_KEY],
            flask_secret_key=values[FLASK_SECRET_KEY],
            user_password_hashes={str(k): str(v) for k, v in hashes.items()},
            backend_store_uri=values.get(BACKEND_STORE_URI_KEY),
        )


def write_auth_config(run_dir: Path, secrets_: TrackingSecrets, database_uri: str) -> Path:
    """MLflow's basic-auth ini, readable by this user only (it holds the admin password)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / AUTH_CONFIG_NAME
    text = (
        "[mlflow]\n"
        f"default_permission = {DEFAULT_PERMISSION}\n"
        f"database_uri = {database_uri}\n"
        f"admin_username = {secrets_.admin_username}\n"
        f"admin_password = {secrets_.admin_password}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        "grant_default_workspace_access = false\n"
    )
    # created 0600 (never world-readable, not even for an instant), replaced atomically
    temporary = run_dir / f".{AUTH_CONFIG_NAME}.{secrets.token_hex(4)}"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    temporary.replace(path)
    return path


def prepare_auth_store(database_uri: str, secrets_: TrackingSecrets) -> list[str]:
    """Create or update the admin, every component's user (its password hash as Vault has it) and its grants.

    Done in the auth database before the server starts, so the first request of any component
    finds its user. Idempotent: run at every start; a rotated password (a new hash in Vault)
    replaces the old one. Returns the user names it made sure of.
    """
    with warnings.catch_warnings():
        # importing mlflow.server imports its FastAPI app: Starlette's notice (see `server_env`)
        warnings.filterwarnings("ignore", message=STARLETTE_WSGI_NOTICE)
        from mlflow.server.auth.db.models import SqlUser
        from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore()
    store.init_db(database_uri)  # type: ignore[no-untyped-call]
    if store.has_user(secrets_.admin_username):
        store.update_user(secrets_.admin_username, password=secrets_.admin_password, is_admin=True)
    else:
        store.create_user(secrets_.admin_username, secrets_.admin_password, is_admin=True)
    for username, password_hash in sorted(secrets_.user_password_hashes.items()):
        if not store.has_user(username):
            # created with a throwaway password, replaced by the hash below in the same start
            store.create_user(username, secrets.token_urlsafe(32))
        with store.ManagedSessionMaker(read_only=False) as session:
            user = session.query(SqlUser).filter(SqlUser.username == username).one()
            user.password_hash = password_hash
            user.is_admin = False
        for resource_type, permission in GRANTS.get(username, {}).items():
            store.grant_user_permission(username, resource_type, "*", permission)
    store.engine.dispose()
    return sorted(secrets_.user_password_hashes)


def server_argv(
    *, host: str, port: int, artifacts_destination: str, workers: int, allowed_hosts: str | None
) -> list[str]:
    """`mlflow server`'s command line: no secret on it (the backend URI goes through the environment)."""
    argv = [
        "mlflow",
        "server",
        "--app-name",
        "basic-auth",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--serve-artifacts",
        "--artifacts-destination",
        artifacts_destination,
    ]
    if allowed_hosts:
        argv += ["--allowed-hosts", allowed_hosts]
    return argv


def server_env(
    base: Mapping[str, str], secrets_: TrackingSecrets, *, auth_config: Path, backend_store_uri: str
) -> dict[str, str]:
    """The server's environment: its secrets travel here, the Vault login variables do not."""
    env = {k: v for k, v in base.items() if not k.startswith("VAULT_")}
    env.update(
        MLFLOW_AUTH_CONFIG_PATH=str(auth_config),
        MLFLOW_FLASK_SERVER_SECRET_KEY=secrets_.flask_secret_key,
        MLFLOW_BACKEND_STORE_URI=backend_store_uri,
        # MLflow's background job runner (GenAI evaluation jobs) is not used by the platform
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
        MLFLOW_DISABLE_TELEMETRY="true",
        DO_NOT_TRACK="true",
    )
    # No third-party warnings in the server's output: Starlette's notice about the WSGI bridge
    # MLflow's FastAPI app still uses (a UserWarning, raised in every uvicorn worker, so set through
    # the environment), and MLflow logs "This feature is still experimental" at WARNING in every
    # worker that builds the basic-auth app. MLflow's own lines below ERROR go with it; a deployment
    # that wants them sets MLFLOW_LOGGING_LEVEL itself.
    env.setdefault("PYTHONWARNINGS", f"ignore:{STARLETTE_WSGI_NOTICE}")
    env.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")
    return env
