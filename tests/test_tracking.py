"""Which MLflow store a process writes to: the user's MLFLOW_TRACKING_URI, else the workdir's own."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from promoter.pipelines.tracking import TRACKING_ENV, configure_tracking


def test_each_workdir_gets_its_own_store_in_one_process(tmp_path: Path) -> None:
    first = configure_tracking(tmp_path / "a")
    second = configure_tracking(tmp_path / "b")

    assert first.tracking_uri == f"sqlite:///{tmp_path / 'a' / 'mlflow.db'}"
    assert second.tracking_uri == f"sqlite:///{tmp_path / 'b' / 'mlflow.db'}"
    # mlflow.set_tracking_uri exports the variable; we must not leave it behind
    assert TRACKING_ENV not in os.environ


def test_a_users_tracking_uri_wins_and_is_left_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chosen = f"sqlite:///{tmp_path / 'team.db'}"
    monkeypatch.setenv(TRACKING_ENV, chosen)

    client = configure_tracking(tmp_path / "work")

    assert client.tracking_uri == chosen
    assert os.environ[TRACKING_ENV] == chosen
