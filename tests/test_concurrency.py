"""Several commands at once on a FRESH workdir: one creates the MLflow store, the others wait for it;
one process drives a promotion, a second driver of it is told so; different promotions both finish."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from .conftest import PROMOTER

_OPEN_STORE_WHEN_TOLD = """
import sys, time
from pathlib import Path
from promoter.pipelines.tracking import configure_tracking
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.01)
client = configure_tracking(Path(sys.argv[1]))
client.search_registered_models()
"""


def test_processes_opening_a_fresh_store_at_the_same_moment_all_succeed(tmp_path: Path) -> None:
    """MLflow migrates a new SQLite schema in whichever process comes first, without a lock: with
    several at once the losers died with `duplicate column name`. Each process imports first, then
    all open the store at the same instant."""
    go = tmp_path / "go"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _OPEN_STORE_WHEN_TOLD, str(tmp_path / "work"), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    time.sleep(15)  # every process has imported mlflow and waits
    go.touch()
    results = [process.communicate(timeout=300) for process in processes]

    for process, (_, stderr) in zip(processes, results, strict=True):
        assert process.returncode == 0, stderr
        assert "Traceback" not in stderr and "INFO" not in stderr, stderr


def _wine_promotion(directory: Path, name: str) -> Path:
    path = directory / f"{name}.yaml"
    document = {
        "apiVersion": "mlops.promoter.dev/v1alpha1",
        "kind": "ModelPromotion",
        "metadata": {"name": name},
        "spec": {
            "model": "wine",
            "source": {"train": {"pipeline": "wine", "data": {"version": "v1"}, "params": {"seed": 3}}},
            "gates": {"absolute": {"accuracy": 0.5}},
        },
    }
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.mark.slow
def test_promotions_started_at_once_on_a_fresh_workdir(tmp_path: Path) -> None:
    """Two drivers of one promotion: one drives, the other says another process does (exit 1).
    A different promotion of the same model, started at the same time, is promoted too."""
    workdir = tmp_path / "work"
    first, second = _wine_promotion(tmp_path, "wine-a"), _wine_promotion(tmp_path, "wine-b")
    processes = [
        subprocess.Popen(
            [str(PROMOTER), "run", str(spec), "--workdir", str(workdir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for spec in (first, first, second)
    ]
    results = [(process.communicate(timeout=900), process.returncode) for process in processes]

    for (_, stderr), _code in results:
        assert "Traceback" not in stderr, stderr
    same = sorted(code for _, code in results[:2])
    assert same == [0, 1], results
    loser = next(stderr for (_, stderr), code in results[:2] if code == 1)
    assert "promotion 'wine-a' is being driven by another process" in loser
    assert results[2][1] == 0, results[2]
