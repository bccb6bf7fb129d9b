"""Where runs and models are recorded: MLFLOW_TRACKING_URI, or a SQLite file in the work directory."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException
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
    return _open_store(uri)


def store_client(uri: str) -> MlflowClient:
    """A client of one store, for runs AND registered models.

    `MlflowClient(tracking_uri=X)` alone takes its registry from the process-wide
    `mlflow.set_registry_uri` whenever anything in the process set one (`configure_tracking` does):
    it then registers into, and reads models from, another workdir's store. Always name both.
    """
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _open_store(uri: str) -> MlflowClient:
    """Create a SQLite store's tables, one process at a time.

    MLflow creates and migrates a SQLite schema in whichever process opens the file first, with no
    lock: two commands started at once on a fresh workdir both run the migrations, and the loser dies
    with `duplicate column name`. Opening both stores (tracking and registry) under a file lock beside
    the database makes the first process create the schema and every other one find it complete.
    Its progress lines ("Creating initial MLflow database tables...") say nothing a user needs.
    """
    if not uri.startswith("sqlite:///"):
        return store_client(uri)  # a server or shared DB migrates itself
    database = Path(uri.removeprefix("sqlite:///"))
    database.parent.mkdir(parents=True, exist_ok=True)
    try:
        lock = database.with_name(database.name + ".init-lock").open("a")
    except OSError:  # a read-only store (a pod's read-only root filesystem): nothing to create here
        return store_client(uri)
    with lock, quiet_loggers("mlflow.store.db.utils", "alembic"):
        fcntl.flock(lock, fcntl.LOCK_EX)
        client = store_client(uri)
        client.search_experiments(max_results=1)
        client.search_registered_models(max_results=1)
    return client


@contextlib.contextmanager
def quiet_loggers(*names: str, level: int = logging.WARNING) -> Iterator[None]:
    """Only `level` and above from these loggers while the block runs: MLflow narrates its own
    bookkeeping, which says nothing a user of promoter can act on."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(level)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def experiment_id(client: MlflowClient, name: str, workdir: Path) -> str:
    """The experiment for a registered model; local stores keep artifacts beside the database."""
    existing = client.get_experiment_by_name(name)
    if existing is not None:
        return str(existing.experiment_id)
    location = (workdir / "artifacts").as_uri() if _is_local(client.tracking_uri) else None
    try:
        return str(client.create_experiment(name, artifact_location=location))
    except MlflowException as exc:
        created = client.get_experiment_by_name(name)
        if exc.error_code != "RESOURCE_ALREADY_EXISTS" or created is None:
            raise
        return str(created.experiment_id)  # another promotion of the same model created it just now
