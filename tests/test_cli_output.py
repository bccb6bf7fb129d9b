"""What a person sees: output that can be copied, no third-party noise, and refusals instead of tracebacks."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from promoter.cli import app
from promoter.local.store import claim
from promoter.promotion.spec import PROMOTION_NAME_MAX, ModelPromotion
from promoter.promotion.status import PromotionStatus, Transition, utc_now
from promoter.serving.client import served_version

from .conftest import PROMOTER, run_cli

runner = CliRunner()

# As long as a promotion name may be: its row is wider than an 80-column terminal.
LONG_NAME = "digits-promotion-whose-name-is-the-longest"


def _stored_promotion(workdir: Path, name: str, message: str) -> None:
    promotion = ModelPromotion.model_validate(
        {
            "apiVersion": "mlops.promoter.dev/v1alpha1",
            "kind": "ModelPromotion",
            "metadata": {"name": name},
            "spec": {
                "model": "digits",
                "source": {"train": {"pipeline": "digits", "data": {"version": "v1"}}},
                "gates": {"absolute": {"accuracy": 0.9}},
            },
        }
    )
    with claim(workdir, promotion) as store:
        entry = Transition(phase="Failed", at=utc_now(), reason="WorkflowFailed", message=message)
        store.save(PromotionStatus(phase="Failed", reason="WorkflowFailed", message=message, history=[entry]))


def test_piped_output_is_neither_wrapped_nor_truncated(tmp_path: Path) -> None:
    path = "/".join(["a-rather-long-directory-name"] * 8) + "/run-0123456789abcdef0123456789abcdef.log"
    assert len(LONG_NAME) == PROMOTION_NAME_MAX
    _stored_promotion(tmp_path, LONG_NAME, f"see {path}")

    listing = runner.invoke(app, ["status", "--workdir", str(tmp_path)])
    one = runner.invoke(app, ["status", LONG_NAME, "--workdir", str(tmp_path)])

    assert listing.exit_code == 0, listing.output
    row = next(line for line in listing.stdout.splitlines() if LONG_NAME in line)
    assert "WorkflowFailed" in row  # the whole row on one line, the name uncut
    assert f"{LONG_NAME}: Failed" in one.stdout
    assert f"see {path}" in one.stdout  # a path a person can copy


def test_history_of_an_unknown_model_is_refused_in_one_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["history", "nosuch", "--workdir", str(tmp_path)])

    assert result.exit_code == 2
    assert f"no registered model 'nosuch' in {tmp_path.resolve()}" in result.stderr
    assert "Traceback" not in result.output


def test_serve_refuses_a_port_out_of_range_naming_the_option() -> None:
    result = runner.invoke(app, ["serve", "--model-uri", "models:/digits/1", "--port", "70000"])

    assert result.exit_code == 2
    assert "--port" in result.output and "65535" in result.output


def test_serve_on_a_busy_port_says_so_and_exits_1_before_serving(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = runner.invoke(
            app, ["serve", "--model-uri", "models:/digits/1", "--port", str(port), "--workdir", str(tmp_path)]
        )

    assert result.exit_code == 1  # not 3: that means "rejected by a gate"
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in result.stderr
    assert "serving" not in result.stderr


def test_serve_of_a_missing_model_is_refused_without_a_traceback(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["serve", "--model-uri", "models:/nosuch@champion", "--port", "0", "--workdir", str(tmp_path)]
    )

    assert result.exit_code == 2
    assert "cannot resolve 'models:/nosuch@champion'" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_commands_that_touch_mlflow_print_no_third_party_warning(registered_digits: Path) -> None:
    """MLflow colours its warnings (escape codes in a log or a CI page) and they say nothing a user
    can act on. Each command's stderr holds only our own lines."""
    fresh = registered_digits.parent / "fresh-for-warnings"
    commands = [
        ("history", "digits", "--workdir", registered_digits),
        ("history", "digits", "--at", "2020-01-01T00:00:00", "--workdir", registered_digits),
        ("status", "--workdir", registered_digits),
        ("rollback", "digits", "--workdir", registered_digits),  # refused: no previous champion
        ("serve", "--model-uri", "models:/digits/999", "--port", "0", "--workdir", registered_digits),
        ("history", "digits", "--workdir", fresh),  # a fresh store: MLflow logs its migrations
    ]
    for command in commands:
        completed = run_cli(*command)
        noise = [
            line
            for line in completed.stderr.splitlines()
            if "Warning" in line or "\x1b" in line or " INFO " in line or "Traceback" in line
        ]
        assert noise == [], (command, completed.stderr)


@pytest.mark.slow
def test_serve_on_port_0_listens_where_its_port_file_says(registered_digits: Path, tmp_path: Path) -> None:
    port_file = tmp_path / "port"
    log = (tmp_path / "serve.log").open("w")
    command = [str(PROMOTER), "serve", "--model-uri", "models:/digits@champion", "--port", "0"]
    command += ["--port-file", str(port_file), "--workdir", str(registered_digits)]
    server = subprocess.Popen(
        command,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not port_file.exists():
            assert server.poll() is None, (tmp_path / "serve.log").read_text()
            time.sleep(0.2)
        port = int(port_file.read_text())
        assert port != 0
        while time.monotonic() < deadline:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        assert served_version(f"http://127.0.0.1:{port}") == "1"
        assert f"on http://127.0.0.1:{port} " in (tmp_path / "serve.log").read_text()
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()


@pytest.mark.slow
def test_training_prints_only_our_own_lines(tmp_path: Path) -> None:
    """Logging a model made MLflow narrate its choices (pickling, pip's version, type hints)."""
    spec = tmp_path / "wine.yaml"
    spec.write_text(
        "apiVersion: mlops.promoter.dev/v1alpha1\nkind: ModelPromotion\nmetadata: {name: wine-quiet}\n"
        "spec:\n  model: wine\n"
        "  source: {train: {pipeline: wine, data: {version: v1}, params: {seed: 3}}}\n"
        "  gates: {absolute: {accuracy: 0.5}}\n"
    )

    completed = run_cli("train", spec, "--workdir", tmp_path / "work")

    assert completed.returncode == 0, completed.stderr
    lines = completed.stderr.strip().splitlines()
    assert [line for line in lines if not line.startswith(("train wine", "trained models:/"))] == []


def test_the_gate_table_prints_a_gate_name_with_brackets_whole(capsys: pytest.CaptureFixture[str]) -> None:
    """`latency.p50Ratio[batch32]` is a name, not rich markup: printed as such it lost `[batch32]`."""
    from promoter.cli.pipeline import _print_gate_report
    from promoter.promotion.gates import GateReport, GateResult, ModelEvidence

    gate = GateResult(
        name="latency.p50Ratio[batch32]",
        kind="latency",
        metric="latency/batch32/p95_ms",
        actual=2.31,
        threshold=1.2,
        comparison="<=",
        verdict="fail",
        enforced=True,
        detail="p95 2.310 ms against the champion's 1.000 ms at batch 32 [sic]",
    )
    report = GateReport(
        model="digits",
        promotion="digits-a",
        data_version="v1",
        data_sha256="a" * 64,
        split="test",
        samples=270,
        candidate=ModelEvidence(run_id="c" * 32, metrics={}),
        champion=None,
        gates=[gate],
    )

    _print_gate_report(report)

    printed = capsys.readouterr().out
    assert "latency.p50Ratio[batch32]" in printed and "at batch 32 [sic]" in printed
    assert "decision: FAILED: latency.p50Ratio[batch32]" in printed
