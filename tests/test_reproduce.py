"""`promoter reproduce`: a run retrained from its recorded lineage, on real torch and a real MLflow store.

The candidate is trained here (two epochs) as an image would train it, its commit baked in
(PROMOTER_GIT_COMMIT): its lineage is then clean whatever state this checkout is in.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from promoter.cli import app
from promoter.lineage import GIT_COMMIT_ENV
from promoter.pipelines.data import Dataset, InMemorySource
from promoter.pipelines.digits import DigitsConfig, DigitsPipeline, load_digits_v1
from promoter.pipelines.reproduce import ReproductionError, recorded_resources, reproduce_run
from promoter.pipelines.tracking import store_client, tracking_uri
from promoter.pipelines.train import resolved_config, train_candidate
from promoter.promotion.names import CONFIG_SHA_TAG, GIT_DIRTY_TAG
from promoter.promotion.spec import DataRef, Resources, TrainSource, load_promotion
from promoter.redaction import flatten

from .conftest import EXAMPLES, REPO, write_spec

pytestmark = pytest.mark.slow

runner = CliRunner()
HEAD = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()


@dataclass(frozen=True)
class Candidate:
    workdir: Path
    client: MlflowClient
    run_id: str


@pytest.fixture(scope="module")
def candidate(tmp_path_factory: pytest.TempPathFactory) -> Candidate:
    workdir = tmp_path_factory.mktemp("reproduce")
    example = (EXAMPLES / "digits" / "promotion.yaml").read_text()
    assert "epochs: 8" in example
    spec = write_spec(workdir / "promotion.yaml", example.replace("epochs: 8", "epochs: 2"))
    # module fixtures run before the per-test environment cleanup (conftest's _local_tracking)
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
        monkeypatch.setenv(GIT_COMMIT_ENV, HEAD)
        trained = train_candidate(load_promotion(spec), workdir)
    return Candidate(workdir, store_client(tracking_uri(workdir)), trained.run_id)


@pytest.fixture(autouse=True)
def _code_of_the_candidate(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process runs the commit the candidate was trained from, as its image would."""
    monkeypatch.setenv(GIT_COMMIT_ENV, HEAD)


@pytest.fixture
def changed_data(monkeypatch: pytest.MonkeyPatch) -> Dataset:
    """The digits source now serves other bytes under the same version `v1`: one pixel moved."""
    original = load_digits_v1()
    features = original.features.copy()
    features[0, 0, 0, 0] += 1.0
    changed = replace(original, features=features)
    monkeypatch.setattr(
        DigitsPipeline, "data_source", lambda self: InMemorySource("digits", {"v1": lambda: changed})
    )
    return changed


def rows(printed: str) -> dict[str, list[str]]:
    """A printed table's rows by their first cell: the other cells, stripped."""
    cells = [
        [cell.strip() for cell in line.split("│" if "│" in line else "┃")[1:-1]]
        for line in printed.splitlines()
    ]
    return {row[0]: row[1:] for row in cells if row}


def runs(client: MlflowClient) -> int:
    return sum(len(client.search_runs([e.experiment_id])) for e in client.search_experiments())


def test_a_cpu_run_reproduces_with_every_held_out_metric_identical(candidate: Candidate) -> None:
    before = runs(candidate.client)
    epochs: list[int] = []

    reproduction = reproduce_run(
        candidate.run_id, candidate.workdir, on_epoch=lambda m: epochs.append(m.epoch)
    )

    assert reproduction.reproduced and reproduction.problems == ()
    assert reproduction.device == reproduction.original_device == "cpu" and reproduction.tolerance == 0.0
    names = {diff.name for diff in reproduction.diffs}
    assert {"accuracy", "macro_f1", "class/0/recall", "class/9/ap"} <= names and len(names) == 2 + 10 * 4
    assert all(diff.difference == 0.0 for diff in reproduction.diffs)  # exactly: CPU is bit-for-bit
    assert reproduction.reproduced_config_sha256 == reproduction.recorded_config_sha256
    assert reproduction.current_data_sha256 == reproduction.recorded_data_sha256 == load_digits_v1().sha256
    assert reproduction.git_commit == HEAD and epochs == [1, 2]
    assert runs(candidate.client) == before  # retraining logged nothing: it is never a candidate


def test_a_run_whose_data_changed_is_not_reproduced_and_not_retrained(
    candidate: Candidate, changed_data: Dataset
) -> None:
    epochs: list[int] = []

    reproduction = reproduce_run(
        candidate.run_id, candidate.workdir, on_epoch=lambda m: epochs.append(m.epoch)
    )

    recorded = load_digits_v1().sha256
    assert not reproduction.reproduced and reproduction.diffs == () and epochs == []
    assert reproduction.recorded_data_sha256 == recorded
    assert reproduction.current_data_sha256 == changed_data.sha256 != recorded
    [problem] = reproduction.problems
    assert problem.startswith("data changed:") and recorded in problem and changed_data.sha256 in problem


def test_a_run_whose_record_does_not_add_up_is_not_reproduced_even_with_identical_metrics(
    candidate: Candidate,
) -> None:
    recorded = candidate.client.get_run(candidate.run_id).data.tags
    candidate.client.set_tag(candidate.run_id, GIT_DIRTY_TAG, "true")
    candidate.client.set_tag(candidate.run_id, CONFIG_SHA_TAG, "0" * 64)
    try:
        reproduction = reproduce_run(candidate.run_id, candidate.workdir)
    finally:
        for tag in (GIT_DIRTY_TAG, CONFIG_SHA_TAG):
            candidate.client.set_tag(candidate.run_id, tag, recorded[tag])

    assert reproduction.diffs and all(diff.difference == 0.0 for diff in reproduction.diffs)
    assert reproduction.problems == (
        f"the checkout the run trained from has uncommitted changes: its code is not commit {HEAD}",
        f"config differs: the run's config.sha256 is {'0' * 64}, but the config it records (its model's "
        f"params, data, commit and resources) hashes to {recorded[CONFIG_SHA_TAG]}",
    )


def test_resources_come_back_from_the_params_training_logged() -> None:
    resources = Resources.model_validate(
        {
            "gpu": 2,
            "memory": "4Gi",
            "nodeSelector": {"kubernetes.io/arch": "amd64", "pool": "gpu"},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}, {"key": "a", "value": "b"}],
        }
    )
    source = TrainSource(pipeline="digits", data=DataRef(version="v1"), resources=resources)
    resolved = resolved_config("digits", source, DigitsConfig(), load_digits_v1(), HEAD)
    params = {key: str(value) for key, value in flatten(resolved).items()}  # as MLflow keeps them

    assert recorded_resources(params) == resources
    assert recorded_resources({}) == Resources()


def test_another_commit_than_the_run_s_is_refused_naming_both(
    candidate: Candidate, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = "0123456789abcdef" * 2 + "01234567"
    monkeypatch.setenv(GIT_COMMIT_ENV, other)

    with pytest.raises(ReproductionError) as refused:
        reproduce_run(candidate.run_id, candidate.workdir)

    assert (
        candidate.run_id in str(refused.value) and HEAD in str(refused.value) and other in str(refused.value)
    )


def test_a_run_without_lineage_is_refused(candidate: Candidate) -> None:
    experiment = candidate.client.get_run(candidate.run_id).info.experiment_id
    bare = candidate.client.create_run(experiment, run_name="not-trained-by-promoter").info.run_id

    with pytest.raises(
        ReproductionError, match=f"run {bare} has no lineage to retrain from: it lacks the tags git.commit"
    ):
        reproduce_run(bare, candidate.workdir)


def test_cli_prints_the_summary_and_exits_0_when_reproduced(candidate: Candidate) -> None:
    result = runner.invoke(app, ["reproduce", candidate.run_id, "--workdir", str(candidate.workdir)])

    assert result.exit_code == 0, result.output
    assert "epoch 2: loss" in result.stderr  # progress, on stderr
    table = rows(result.stdout)
    assert list(table) == ["metric", "accuracy", "macro_f1"]  # identical per-class metrics are not listed
    original, reproduced, difference = table["accuracy"]
    assert original == reproduced and float(original) > 0.5 and difference == "0"
    assert "40 per-class metrics identical, not shown" in result.stdout
    assert result.stdout.splitlines()[-1] == "verdict: REPRODUCED: every held-out metric identical"


def test_cli_exits_3_with_the_problem_when_not_reproduced(
    candidate: Candidate, changed_data: Dataset
) -> None:
    result = runner.invoke(app, ["reproduce", candidate.run_id, "--workdir", str(candidate.workdir)])

    assert result.exit_code == 3, result.output
    assert f"problem: data changed: digits@v1 was recorded as {load_digits_v1().sha256}" in result.stdout
    assert result.stdout.splitlines()[-1] == "verdict: NOT REPRODUCED: 1 problem(s)"

    as_json = runner.invoke(
        app, ["reproduce", candidate.run_id, "--workdir", str(candidate.workdir), "--json"]
    )
    assert as_json.exit_code == 3
    printed = json.loads(as_json.stdout)
    assert printed["reproduced"] is False and printed["diffs"] == []
    assert printed["current_data_sha256"] == changed_data.sha256 and printed["run_id"] == candidate.run_id


def test_cli_refuses_an_unknown_run_naming_it(candidate: Candidate) -> None:
    unknown = "f" * 32

    result = runner.invoke(app, ["reproduce", unknown, "--workdir", str(candidate.workdir)])

    assert result.exit_code == 2
    assert f"error: no MLflow run '{unknown}'" in result.stderr and "Traceback" not in result.output
