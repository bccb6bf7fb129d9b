"""`promoter operator` with mandatory peering and no peering object says what it waits for, instead of
waiting silently forever (kopf's behaviour). Against the real API server of the test bed."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

from promoter.local.rollout import free_port
from promoter.pipelines.tracking import tracking_uri

from .conftest import PROMOTER


def test_an_operator_without_its_peering_object_says_what_it_waits_for(
    control_plane: Any, kube: Any, tmp_path: Path
) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"},
        "KUBECONFIG": str(control_plane.kubeconfig),
        "MLFLOW_TRACKING_URI": tracking_uri(tmp_path),
        "PROMOTER_IMAGE": "promoter:test",
    }
    log_path = tmp_path / "operator.log"
    with log_path.open("w") as log:
        operator = subprocess.Popen(
            [
                str(PROMOTER), "operator", "--namespace", "default", "--peering", "nosuch-peering",
                "--host", "127.0.0.1",
                "--liveness-port", str(free_port()), "--metrics-port", str(free_port()),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and "waiting for the KopfPeering" not in log_path.read_text():
            assert operator.poll() is None, log_path.read_text()
            time.sleep(0.5)
        said = log_path.read_text()
    finally:
        operator.terminate()
        operator.wait(timeout=60)

    assert "waiting for the KopfPeering 'nosuch-peering' in namespace 'default'" in said, said
    assert "(the Helm chart charts/promoter does)" in said
