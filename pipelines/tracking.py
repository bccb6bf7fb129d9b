"""Where runs and models are recorded: MLFLOW_TRACKING_URI, or a SQLite file in the work directory."""

from __future__ import annotations

import os
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

TRACKING_ENV = "MLFLOW_TRACKING_URI"
DEFAULT_WORKDIR = Path(".promoter")


def workdir_path(workdir: Path | None) -> Path:
    """The workdir a command would use, not created: a refused spec must leave nothing behind."""
    return (workdir or Path(os.environ.get("PROMOTER_WORKDIR", DEFAULT_WORKDIR))).resolve()


def resolve_workdir(workdir: Path | None) -> Path:
    chosen = workdir_path(workdir)
    chosen.mkdir(parents=True, exist_ok=True)
    return chosen


def tracking_uri(workdir: Path) -> str:
    return os.environ.get(TRACKING_ENV) or f"sqlite:///{workdir / 'mlflow.db'}"


def _is_local(uri: str) -> bool:
    return uri.startswith(("sqlite:", "file:", "/"))


def configure_tracking(workdir: Path) -> MlflowClient:
    """Point mlflow's fluent API at this workdir's store without touching the environment.

    `mlflow.set_tracking_uri` also exports MLFLOW_TRACKING_URI "for subprocesses"; left in place,
    the next workdir configured in the same process would silently log into this one's store.
    Subprocesses we start get their URI explicitly instead.
    """
    uri = tracking_uri(workdir)
    user_choice = os.environ.get(TRACKING_ENV)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    if user_choice is None:
        os.environ.pop(TRACKING_ENV, None)
    else:
        os.environ[TRACKING_ENV] = user_choice
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def experiment_id(client: MlflowClient, name: str, workdir: Path) -> str:
    """The experiment for a registered model; local stores keep artifacts beside the database."""
    existing = client.get_experiment_by_name(name)
    if existing is not None:
        return str(existing.experiment_id)
    location = (workdir / "artifacts").as_uri() if _is_local(client.tracking_uri) else None
    return str(client.create_experiment(name, artifact_location=location))
