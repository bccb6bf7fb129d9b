"""The embedded default: every backend of a promotion, wired for one machine and one workdir."""

from __future__ import annotations

import getpass
import socket
from dataclasses import dataclass
from pathlib import Path

from promoter.local.identities import log_in_as_operator
from promoter.local.loadtests import LocalLoadTests
from promoter.local.rollout import LocalRollouts
from promoter.local.workflows import LocalWorkflows
from promoter.pipelines.tracking import configure_tracking
from promoter.promotion.driver import Backends
from promoter.registry import MlflowRegistry


def local_actor() -> str:
    """Who is recorded as moving an alias when a person runs the CLI."""
    return f"{getpass.getuser()}@{socket.gethostname()}"


@dataclass(frozen=True)
class LocalPlatform:
    workdir: Path
    registry: MlflowRegistry
    rollouts: LocalRollouts
    backends: Backends


def local_platform(workdir: Path, serve_args: tuple[str, ...] = ()) -> LocalPlatform:
    """Every backend for `workdir`; with per-component Vault identities (promoter.local.identities)
    this process acts as the operator, each child as its own component."""
    log_in_as_operator()
    client = configure_tracking(workdir)
    registry = MlflowRegistry(client, local_actor())
    rollouts = LocalRollouts(workdir, client.tracking_uri, serve_args)
    backends = Backends(
        workflows=LocalWorkflows(workdir, client.tracking_uri),
        registry=registry,
        rollouts=rollouts,
        load_tests=LocalLoadTests(workdir, rollouts),
    )
    return LocalPlatform(workdir, registry, rollouts, backends)
