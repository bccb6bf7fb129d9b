"""Shared fixtures. Nothing here is mocked: training is real torch, tracking is a real MLflow store."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
PROMOTER = Path(sys.executable).parent / "promoter"


@pytest.fixture(autouse=True)
def _local_tracking(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Tests own their MLflow store: a developer's MLFLOW_TRACKING_URI must never receive test runs."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("PROMOTER_WORKDIR", raising=False)
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
