"""Every invalid spec is refused before anything runs, by every entry point, with the field named.

A user who gets a spec wrong must learn it at once (exit 2, the field, no traceback), with nothing
trained, nothing written and the promotion's name still free for the corrected spec.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from promoter.cli import app
from promoter.local.store import claim, promotions_dir
from promoter.operator.promotion_resource import promotion_of
from promoter.pipelines import catalogue, steps
from promoter.pipelines.metrics import OVERALL_METRICS, PER_CLASS_METRICS, classification_report
from promoter.promotion.engine import refuse_spec
from promoter.promotion.spec import SpecError, load_promotion, parse_promotion
from promoter.promotion.status import PromotionStatus
from promoter.validation import InvalidPromotion, check_promotion, validate_document

from .conftest import EXAMPLES, run_cli
from .invalid_specs import INVALID_SPECS, InvalidSpec, example

BY_ID = {spec.id: spec for spec in INVALID_SPECS}
# How long a refusal takes is measured by benchmarks/refusal_time.py (each in its own process, as a
# user waits for it): a timed assertion here would measure the other pytest worker's load.


def write(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def invoke(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(arg) for arg in args], env={"COLUMNS": "200"})
    return result.exit_code, result.output


def assert_refused(code: int, output: str, field: str) -> None:
    assert code == 2, output
    assert field in output, output
    assert "Traceback" not in output


def test_the_table_covers_every_kind_of_mistake() -> None:
    assert len(INVALID_SPECS) >= 45
    assert len(BY_ID) == len(INVALID_SPECS), "ids must be unique"


@pytest.mark.parametrize("path", sorted(EXAMPLES.rglob("*.yaml")), ids=lambda p: p.name)
def test_the_examples_pass_every_check(path: Path) -> None:
    assert check_promotion(load_promotion(path)) == []


@pytest.mark.parametrize("invalid", INVALID_SPECS, ids=lambda s: s.id)
def test_run_refuses_before_anything_runs(invalid: InvalidSpec, tmp_path: Path) -> None:
    workdir = tmp_path / "workdir"
    spec = write(tmp_path / "promotion.yaml", invalid.document())
    assert_refused(*invoke("run", spec, "--workdir", workdir), invalid.field)
    assert not workdir.exists(), "a refused spec must leave nothing behind"


SAMPLE = [
    "unknown-pipeline",
    "epochs-zero",
    "lr-nan",
    "wrong-sha256",
    "git-no-such-rev",
    "regression-metric-typo",
]


@pytest.mark.parametrize("invalid_id", SAMPLE)
@pytest.mark.parametrize("command", ["render", "train"])
def test_render_and_train_refuse_before_anything_runs(command: str, invalid_id: str, tmp_path: Path) -> None:
    invalid = BY_ID[invalid_id]
    workdir = tmp_path / "workdir"
    spec = write(tmp_path / "promotion.yaml", invalid.document())
    options: list[str | Path] = ["--workdir", workdir] if command == "train" else []
    code, output = invoke(command, spec, *options)
    assert_refused(code, output, invalid.field)
    assert "apiVersion: argoproj.io" not in output, "no Workflow is printed for a refused spec"
    assert not workdir.exists()


def test_evaluate_refuses_a_gate_on_a_metric_never_produced(tmp_path: Path) -> None:
    invalid = BY_ID["per-class-metric-typo"]
    spec = write(tmp_path / "promotion.yaml", invalid.document())
    code, output = invoke("evaluate", spec, "--run-id", "0" * 32, "--workdir", tmp_path / "wd")
    assert_refused(code, output, invalid.field)


def test_every_problem_is_reported_at_once() -> None:
    document = example()
    train = document["spec"]["source"]["train"]
    train["params"] = {"epochz": 3, "precision": "fp3"}
    train["data"]["version"] = "v9"
    document["spec"]["gates"] = {"absolute": {"acuracy": 0.9}, "perClass": {"f2": 0.8}}
    with pytest.raises(InvalidPromotion) as refused:
        validate_document(document)
    assert {problem.field for problem in refused.value.problems} == {
        "spec.source.train.params.epochz",
        "spec.source.train.params.precision",
        "spec.source.train.data.version",
        "spec.gates.absolute.acuracy",
        "spec.gates.perClass.f2",
    }


def test_gates_are_checked_against_exactly_the_metrics_the_evaluation_logs() -> None:
    """The declared names and the logged ones cannot drift: the evaluation is built from them."""
    class_names = ("a", "b", "c")
    probabilities = np.eye(3, dtype=np.float32)[[0, 1, 2, 1]]
    report = classification_report(np.array([0, 1, 2, 2], dtype=np.int64), probabilities, class_names)
    expected = set(OVERALL_METRICS) | {f"class/{c}/{m}" for c in class_names for m in PER_CLASS_METRICS}
    assert set(report.flat()) == expected
    for pipeline in catalogue().values():
        assert (pipeline.overall_metrics, pipeline.per_class_metrics) == (OVERALL_METRICS, PER_CLASS_METRICS)


def test_a_class_gate_on_a_real_class_is_accepted() -> None:
    document = example()
    document["spec"]["gates"]["absolute"] = {"class/3/recall": 0.9}
    document["spec"]["gates"]["regression"] = {"metric": "class/3/f1"}
    assert check_promotion(parse_promotion(document)) == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", "not a text file"),
        (b"- a\n- list\n", "expected a ModelPromotion mapping, got a list"),
        (b"", "got an empty document"),
        (b"spec: [unclosed", "not valid YAML"),
    ],
    ids=["binary", "list", "empty", "broken-yaml"],
)
def test_spec_files_that_are_not_promotions_exit_2(content: bytes, message: str, tmp_path: Path) -> None:
    spec = tmp_path / "promotion.yaml"
    spec.write_bytes(content)
    code, output = invoke("run", spec, "--workdir", tmp_path / "wd")
    assert code == 2 and message in output and "Traceback" not in output, output
    assert not (tmp_path / "wd").exists()


@pytest.mark.parametrize("which", ["directory", "missing", "under-a-file", "unreadable"])
def test_spec_paths_that_cannot_be_read_exit_2(which: str, tmp_path: Path) -> None:
    spec = tmp_path / "promotion.yaml"
    if which == "directory":
        spec.mkdir()
    elif which == "under-a-file":
        spec = write(spec, example()) / "promotion.yaml"
    elif which == "unreadable":
        write(spec, example()).chmod(0)
        try:
            spec.read_text()
            pytest.skip("running as root: every file is readable")
        except PermissionError:
            pass
    code, output = invoke("train", spec, "--workdir", tmp_path / "wd")
    assert code == 2 and "cannot read" in output and "Traceback" not in output, output


def test_a_refused_spec_leaves_its_name_usable(tmp_path: Path) -> None:
    """Real processes: the user's view. No traceback, and the corrected spec is accepted under the
    same name (claimed here directly rather than trained: training takes tens of seconds)."""
    workdir = tmp_path / "workdir"
    bad = write(tmp_path / "bad.yaml", BY_ID["epochs-zero"].document())
    refused = run_cli("run", bad, "--workdir", workdir, timeout=120)
    assert refused.returncode == 2, refused.stderr
    assert "spec.source.train.params.epochs" in refused.stderr
    assert "Traceback" not in refused.stdout + refused.stderr
    assert not workdir.exists()

    good = write(tmp_path / "good.yaml", example())
    rendered = run_cli("render", good, timeout=120)
    assert rendered.returncode == 0, rendered.stderr
    assert yaml.safe_load(rendered.stdout)["kind"] == "Workflow"
    with claim(workdir, load_promotion(good)) as store:  # "already exists ... different spec" if not
        assert store.directory == promotions_dir(workdir) / example()["metadata"]["name"]


def test_a_binary_spec_file_exits_2_without_a_traceback(tmp_path: Path) -> None:
    spec = tmp_path / "model.pt"
    spec.write_bytes(bytes(range(256)) * 4)
    refused = run_cli("run", spec, "--workdir", tmp_path / "wd", timeout=120)
    assert refused.returncode == 2, refused.stderr
    assert "not a text file" in refused.stderr and "Traceback" not in refused.stderr


def resource(document: dict[str, Any], status: dict[str, Any] | None = None) -> dict[str, Any]:
    document = {**document, "metadata": {**document["metadata"], "namespace": "ml"}}
    return document if status is None else {**document, "status": status}


@pytest.mark.parametrize("invalid_id", ["absolute-metric-typo", "unknown-data-version", "seed-beyond-torch"])
def test_the_operator_fails_an_invalid_promotion_naming_the_field(invalid_id: str) -> None:
    invalid = BY_ID[invalid_id]
    with pytest.raises(SpecError) as refused:
        promotion_of(resource(invalid.document()))
    assert invalid.field in str(refused.value)
    now = datetime(2026, 11, 24, tzinfo=UTC)
    status = refuse_spec(PromotionStatus(), str(refused.value), now).status
    assert (status.phase, status.reason) == ("Failed", "InvalidSpec")
    assert invalid.field in status.message


def test_the_operator_does_not_fail_a_promotion_under_way_on_what_moved_since() -> None:
    """Checked when it started; a data version retired by a newer image must not strand its preview."""
    moved = BY_ID["unknown-data-version"].document()
    under_way = resource(moved, {"phase": "AwaitingApproval", "modelVersion": "3"})
    assert promotion_of(under_way).train.data.version == "v9"
    with pytest.raises(SpecError, match=r"metadata\.name"):  # but the schema still holds
        promotion_of(resource(BY_ID["name-too-long"].document(), {"phase": "AwaitingApproval"}))


def test_a_workflow_step_refuses_with_exit_2_and_the_field_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(steps.WORKDIR_ENV, str(tmp_path / "step"))
    invalid = BY_ID["regression-metric-typo"]
    with caplog.at_level(logging.ERROR, logger="promoter.steps"), pytest.raises(SystemExit) as exited:
        steps.train(json.dumps(invalid.document()))
    assert exited.value.code == 2
    assert invalid.field in caplog.text
    assert not list((tmp_path / "step").rglob("*.db")), "no MLflow store: nothing was tracked"


def test_validating_a_spec_never_imports_torch() -> None:
    """A refusal (and the operator's admission webhook) must not wait for torch: over a second of
    start-up, and its memory in the operator's pod. Checked in a fresh interpreter, on the example,
    whose params, data version and gate metrics need the pipeline catalogue."""
    script = (
        "import sys, yaml\n"
        "from promoter.validation import validate_document\n"
        f"validate_document(yaml.safe_load(open({str(EXAMPLES / 'digits' / 'promotion.yaml')!r})))\n"
        "print('torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
