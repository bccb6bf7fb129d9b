"""The loopback blue/green's processes: a server that cannot start says why; `promoter up` brings back
what `promoter down` stopped, at the same address."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from promoter.cli import app
from promoter.local.rollout import LocalRollouts, _alive
from promoter.pipelines.tracking import tracking_uri
from promoter.promotion.engine import PreviewObservation
from promoter.serving.client import served_version

runner = CliRunner()


def _observe_until_decided(rollouts: LocalRollouts, rollout: str, seconds: float) -> PreviewObservation:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        observed = rollouts.preview(rollout)
        assert observed is not None
        if observed.failure or observed.ready:
            return observed
        time.sleep(0.5)
    raise AssertionError(f"the preview neither failed nor became ready in {seconds}s")


def test_a_preview_server_that_cannot_start_says_how_it_ended_and_why(tmp_path: Path) -> None:
    rollouts = LocalRollouts(tmp_path, tracking_uri(tmp_path))
    try:
        rollouts.deploy_preview("r", "nosuch", "1")
        observed = _observe_until_decided(rollouts, "r", 180)
    finally:
        rollouts.down("r")

    assert observed.failure is not None
    assert "the preview server for version 1 exited with code 2" in observed.failure
    assert "cannot resolve 'models:/nosuch/1'" in observed.failure  # its log's tail


@pytest.mark.slow
def test_up_serves_the_champion_again_at_the_same_address_after_down(registered_digits: Path) -> None:
    rollouts = LocalRollouts(registered_digits, tracking_uri(registered_digits))
    try:
        rollouts.promote("up-after-down", "digits", "1")
        address = rollouts.describe("up-after-down").proxy
        assert address is not None and served_version(address.address) == "1"

        assert runner.invoke(app, ["down", "--workdir", str(registered_digits)]).exit_code == 0
        assert served_version(address.address) is None

        started = runner.invoke(app, ["up", "digits", "--workdir", str(registered_digits)])

        assert started.exit_code == 0, started.output
        assert f"up-after-down: digits version 1 at {address.address}" in started.stdout
        assert served_version(address.address) == "1"
    finally:
        rollouts.down("up-after-down")


def test_up_with_nothing_deployed_is_refused(tmp_path: Path) -> None:
    result = runner.invoke(app, ["up", "--workdir", str(tmp_path)])

    assert result.exit_code == 2
    assert "no rollout in" in result.stderr and "promoter run" in result.stderr


def test_a_process_that_has_just_started_counts_as_alive(tmp_path: Path) -> None:
    """Right after exec() its /proc command line can read empty for a moment; that is not an exit."""
    for _ in range(20):
        process = subprocess.Popen(
            [sys.executable, "-m", "promoter.local.proxy", "0", str(tmp_path / "target")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            assert _alive(process.pid)
        finally:
            process.kill()
            process.wait()
