"""The reference pipeline end to end through the CLI, on real torch and a real MLflow SQLite store.

Trains the example twice (reproducibility), the deliberately bad candidate once, and checks what a
user would look at: the run's lineage, metrics, plots and model, and the gate reports.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from promoter.pipelines.digits import load_digits_v1
from promoter.pipelines.tracking import configure_tracking, store_client, tracking_uri

from .conftest import EXAMPLES, REPO, run_cli, write_spec

pytestmark = pytest.mark.slow

GOOD = EXAMPLES / "digits" / "promotion.yaml"
BAD = EXAMPLES / "digits" / "bad-candidate.yaml"


@dataclass(frozen=True)
class Trained:
    workdir: Path
    client: MlflowClient
    good: tuple[str, str]
    bad: str


def train(spec: Path, workdir: Path) -> str:
    result = run_cli("train", spec, "--workdir", workdir)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def evaluate(spec: Path, run_id: str, workdir: Path) -> subprocess.CompletedProcess[str]:
    return run_cli("evaluate", spec, "--run-id", run_id, "--workdir", workdir)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    workdir = tmp_path_factory.mktemp("digits")
    good = (train(GOOD, workdir), train(GOOD, workdir))
    for run_id in good:  # every test reads the evaluation's metrics and report, whichever runs first
        assert evaluate(GOOD, run_id, workdir).returncode == 0
    bad = train(BAD, workdir)
    client = store_client(tracking_uri(workdir))
    return Trained(workdir=workdir, client=client, good=good, bad=bad)


def history(client: MlflowClient, run_id: str) -> dict[str, list[tuple[int, float]]]:
    run = client.get_run(run_id)
    return {
        key: [(m.step, m.value) for m in client.get_metric_history(run_id, key)]
        for key in run.data.metrics
        # timings: throughput, epoch time, and the forward latency the latency gate measures
        if key != "train/samples_per_second"
        and not key.endswith("epoch_seconds")
        and not key.startswith("latency/")
    }


def test_the_same_seed_on_cpu_gives_identical_metrics(trained: Trained) -> None:
    first, second = (history(trained.client, run_id) for run_id in trained.good)
    assert "val/accuracy" in first and "accuracy" in first and "class/7/f1" in first
    assert first == second
    assert len(first["val/accuracy"]) == 8  # one point per epoch


def test_the_run_carries_its_lineage(trained: Trained) -> None:
    run = trained.client.get_run(trained.good[0])
    tags = run.data.tags
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    assert tags["git.commit"] == head
    assert tags["git.dirty"] in ("true", "false")
    assert tags["data.version"] == "v1"
    assert tags["data.sha256"] == load_digits_v1().sha256
    assert len(tags["config.sha256"]) == 64
    assert tags["config.sha256"] == trained.client.get_run(trained.good[1]).data.tags["config.sha256"]
    assert tags["config.sha256"] != trained.client.get_run(trained.bad).data.tags["config.sha256"]
    assert tags["device"] == "cpu"
    assert tags["torch.version"].startswith("2.") and tags["cuda.version"]
    params = run.data.params
    assert params["params.epochs"] == "8" and params["params.seed"] == "7" and params["params.lr"] == "0.002"
    assert (
        params["data.version"] == "v1" and params["pipeline"] == "digits" and params["git.revision"] == "HEAD"
    )


def test_metrics_plots_and_report_are_logged(trained: Trained) -> None:
    run_id = trained.good[0]
    metrics = trained.client.get_run(run_id).data.metrics
    for digit in range(10):
        for metric in ("precision", "recall", "f1", "ap"):
            assert 0.0 <= metrics[f"class/{digit}/{metric}"] <= 1.0
    assert metrics["accuracy"] >= 0.95 and metrics["macro_f1"] >= 0.95
    artifacts = {a.path for a in trained.client.list_artifacts(run_id, "plots")}
    assert artifacts == {"plots/confusion_matrix.png", "plots/pr_curves.png", "plots/failures.png"}
    local = Path(trained.client.download_artifacts(run_id, "plots/confusion_matrix.png"))
    assert local.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads(Path(trained.client.download_artifacts(run_id, "gate_report.json")).read_text())
    assert report["passed"] is True and report["candidate"]["run_id"] == run_id
    assert report["data_sha256"] == load_digits_v1().sha256 and report["samples"] > 250


def test_the_model_resolves_as_runs_uri_with_signature(trained: Trained, tmp_path: Path) -> None:
    configure_tracking(trained.workdir)
    model = mlflow.pyfunc.load_model(f"runs:/{trained.good[0]}/model")
    inputs = model.metadata.get_input_schema().inputs[0]
    assert inputs.shape == (-1, 1, 8, 8) and inputs.type == np.dtype(np.float32)
    example = load_digits_v1().features[:5]
    probabilities = model.predict(example)
    assert probabilities.shape == (5, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert (probabilities.argmax(axis=1) == load_digits_v1().labels[:5]).mean() >= 0.8

    # pyfunc runs the inference server's compiled graphs, answering as the network itself does
    bundle = model.unwrap_python_model().bundle
    assert bundle.compiled
    with torch.no_grad():
        eager = torch.softmax(bundle.network(torch.from_numpy(example)), dim=1).numpy()
    np.testing.assert_allclose(probabilities, eager, atol=1e-5)
    np.testing.assert_allclose(model.predict(example[:1]), eager[:1], atol=1e-5)

    # and those graphs can be written out for another server to run (benchmarks/serving.py's peers)
    single, batched = bundle.save_compiled(tmp_path / "graphs")
    graphs = {path: torch.jit.load(str(path)) for path in (single, batched)}  # type: ignore[no-untyped-call]
    if batched.name == "batched.frozen.pt":  # torch cannot load the oneDNN graph back: rebuild it
        graphs[batched] = torch.jit.optimize_for_inference(graphs[batched])
    with torch.no_grad():
        for graph, inputs in ((graphs[single], example[:1]), (graphs[batched], example)):
            logits = graph(torch.from_numpy(inputs))
            np.testing.assert_allclose(
                torch.softmax(logits, dim=1).numpy(), bundle.forward(inputs), atol=1e-6
            )


def test_the_bad_candidate_trains_but_fails_its_gates(trained: Trained) -> None:
    report_path = trained.workdir / "bad-report.json"
    result = run_cli(
        "evaluate", BAD, "--run-id", trained.bad, "--workdir", trained.workdir, "--report", report_path
    )
    assert result.returncode == 3, result.stdout + result.stderr
    assert "decision: FAILED" in result.stdout
    report = json.loads(report_path.read_text())
    failed = {g["name"] for g in report["gates"] if g["verdict"] == "fail"}
    assert {"absolute.accuracy", "absolute.macro_f1"} <= failed
    assert report["passed"] is False
    assert trained.client.get_run(trained.bad).data.tags["gate.decision"] == "fail"


def test_the_champion_is_evaluated_on_the_same_split_and_guards_regressions(trained: Trained) -> None:
    # tracking AND registry: MLflow keeps both per process, and a test that ran earlier in this
    # process (another module's fixture) may have pointed the registry at its own store
    configure_tracking(trained.workdir)
    version = mlflow.register_model(f"runs:/{trained.good[0]}/model", "digits").version
    trained.client.set_registered_model_alias("digits", "champion", version)

    # a spec whose only gate is the regression check, so the verdict is about the champion alone
    spec = write_spec(
        trained.workdir / "regression-only.yaml",
        BAD.read_text().replace(
            "    absolute: {accuracy: 0.95, macro_f1: 0.95}\n    perClass: {f1: 0.85}\n", ""
        ),
    )
    result = run_cli(
        "evaluate",
        spec,
        "--run-id",
        trained.bad,
        "--workdir",
        trained.workdir,
        "--report",
        trained.workdir / "regression.json",
    )
    assert result.returncode == 3
    report = json.loads((trained.workdir / "regression.json").read_text())
    [gate] = report["gates"]
    champion_accuracy = report["champion"]["metrics"]["accuracy"]
    assert report["champion"]["version"] == str(version)
    assert gate["name"] == "regression.accuracy" and gate["verdict"] == "fail"
    assert gate["threshold"] == champion_accuracy and gate["actual"] < champion_accuracy

    # the identical retrain matches the champion exactly, and maxDrop 0.0 lets equal through
    result = run_cli("evaluate", GOOD, "--run-id", trained.good[1], "--workdir", trained.workdir)
    assert result.returncode == 0, result.stdout
    assert "champion v1" in result.stdout


def test_evaluating_against_the_wrong_spec_or_run_is_refused(trained: Trained, tmp_path: Path) -> None:
    wrong_pipeline = write_spec(
        tmp_path / "wine.yaml", GOOD.read_text().replace("pipeline: digits", "pipeline: wine")
    )
    result = run_cli("evaluate", wrong_pipeline, "--run-id", trained.good[0], "--workdir", trained.workdir)
    assert result.returncode == 2 and "trained by pipeline 'digits' on data 'v1'" in result.stderr
    result = run_cli("evaluate", GOOD, "--run-id", "0" * 32, "--workdir", trained.workdir)
    assert result.returncode == 2 and "no MLflow run" in result.stderr


def test_a_stricter_gate_definition_replays_on_the_reports_evaluate_wrote(trained: Trained) -> None:
    """`promoter gates replay` reads what `promoter evaluate` recorded: a floor above the good runs'
    held-out accuracy (0.989) would have blocked both, and says which gate, at what value."""
    stricter = write_spec(
        trained.workdir / "stricter.yaml",
        GOOD.read_text().replace("absolute: {accuracy: 0.95,", "absolute: {accuracy: 0.995,"),
    )

    result = run_cli("gates", "replay", stricter, "--workdir", trained.workdir, "--json")

    assert result.returncode == 0, result.stderr
    replayed = {entry["run_id"]: entry for entry in json.loads(result.stdout)}
    for run_id in trained.good:
        entry = replayed[run_id]
        assert entry["error"] is None and (entry["then"], entry["now"]) == ("pass", "fail")
        [change] = entry["changed"]
        assert change["gate"]["name"] == "absolute.accuracy" and change["gate"]["threshold"] == 0.995
        assert change["was"]["verdict"] == "pass" and change["gate"]["verdict"] == "fail"
        assert change["gate"]["actual"] == change["was"]["actual"] < 0.995
