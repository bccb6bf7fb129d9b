"""Each process of a local promotion as its own component: its own Vault role, path and credential.

In a cluster every pod is one component with its own service account. `promoter run` starts the
same components as processes on one machine, so with `PROMOTER_LOCAL_VAULT_CREDENTIALS` (a
directory holding one credential file per component, named after it: `operator`, `trainer`,
`server`, `loadtester`; e.g. each a JWT for its service account) every process gets only its own:

- `promoter run` itself (the driver: registry and aliases) logs in as the operator;
- the pipeline steps as the trainer, each `promoter serve` as the server, the load test as the
  load tester; the active proxy gets no Vault at all.

Roles and paths come from the packaged layout (manifests/vault/roles.yaml), as the operator's pods
get theirs. A child never inherits another component's VAULT_ROLE, VAULT_SECRET_PATH or credential,
nor the MLflow credentials its parent loaded (MLflow's client reads them from the environment, so an
inherited MLFLOW_TRACKING_PASSWORD would make every child act as the operator). The auth method,
address and mounts (VAULT_ADDR, VAULT_AUTH_METHOD, VAULT_AUTH_MOUNT, VAULT_KV_MOUNT) are shared; the
method must take a role *name* (kubernetes, jwt, token), not AppRole's per-role id.

Without the variable, children inherit the parent's environment as they always did.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from promoter.secrets import CLIENT_ENV, load_process_secrets
from promoter.vault_setup import load_layout, packaged_layout_directory

CREDENTIALS_ENV = "PROMOTER_LOCAL_VAULT_CREDENTIALS"
OPERATOR, TRAINER, SERVER, LOADTESTER = "operator", "trainer", "server", "loadtester"
_PER_COMPONENT = ("VAULT_ROLE", "VAULT_SECRET_PATH", "VAULT_CREDENTIAL_FILE")


def credentials_directory(environ: Mapping[str, str] | None = None) -> Path | None:
    value = (os.environ if environ is None else environ).get(CREDENTIALS_ENV)
    return Path(value) if value else None


def component_vault_env(component: str, directory: Path) -> dict[str, str]:
    """One component's own VAULT_ROLE, VAULT_SECRET_PATH and credential file; never a secret."""
    found = load_layout(packaged_layout_directory()).component(component)
    return {
        "VAULT_ROLE": found.role_name,
        "VAULT_SECRET_PATH": found.secret_path,
        "VAULT_CREDENTIAL_FILE": str(directory / component),
    }


def child_env(component: str | None, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a child process that acts as `component` (None: no Vault at all)."""
    env = dict(os.environ)
    directory = credentials_directory(env)
    if directory is not None:
        for name in (*_PER_COMPONENT, *CLIENT_ENV.values(), CREDENTIALS_ENV):
            env.pop(name, None)
        if component is None:
            env = {name: value for name, value in env.items() if not name.startswith("VAULT_")}
        else:
            env.update(component_vault_env(component, directory))
    env.update(extra or {})
    return env


def log_in_as_operator() -> None:
    """`promoter run` drives the registry as the operator: its own MLflow user, from its own Vault path."""
    directory = credentials_directory()
    if directory is None:
        return
    os.environ.update(component_vault_env(OPERATOR, directory))
    load_process_secrets()
