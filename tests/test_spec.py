from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from promoter.pipelines import get_pipeline
from promoter.promotion.spec import ModelPromotion, SpecError, load_promotion, parse_promotion

from .conftest import EXAMPLES

VALID = yaml.safe_load((EXAMPLES / "digits" / "promotion.yaml").read_text())


DELETE = object()


def with_spec(**changes: object) -> dict[str, object]:
    """The valid example with changes; `spec__source__train` addresses a nested key."""
    document: dict[str, object] = yaml.safe_load(yaml.safe_dump(VALID))
    for dotted, value in changes.items():
        node: Any = document
        *parents, leaf = dotted.split("__")
        for key in parents:
            node = node[key]
        if value is DELETE:
            del node[leaf]
        else:
            node[leaf] = value
    return document


@pytest.mark.parametrize("path", sorted(EXAMPLES.rglob("*.yaml")), ids=lambda p: p.name)
def test_every_example_is_a_valid_promotion(path: Path) -> None:
    promotion = load_promotion(path)
    assert promotion.kind == "ModelPromotion"
    # and its params are valid for its pipeline
    get_pipeline(promotion.train.pipeline).parse_config(promotion.train.params)


def test_the_example_reads_as_written() -> None:
    promotion = load_promotion(EXAMPLES / "digits" / "promotion.yaml")
    assert promotion.spec.gates.absolute["accuracy"].min == 0.95
    assert promotion.spec.gates.per_class["f1"].min == 0.85
    assert promotion.spec.gates.regression is not None and promotion.spec.gates.regression.max_drop == 0.0
    assert promotion.train.resources.gpu == 1
    assert promotion.spec.rollout is not None and promotion.spec.rollout.load_test.duration_seconds == 15.0


def test_manifest_round_trips_with_every_default_spelled_out() -> None:
    promotion = load_promotion(EXAMPLES / "digits" / "promotion.yaml")
    manifest = promotion.to_manifest()
    assert parse_promotion(manifest) == promotion
    assert manifest["spec"]["source"]["train"]["git"] == {"revision": "HEAD"}
    assert manifest["spec"]["gates"]["regression"] == {"metric": "accuracy", "maxDrop": 0.0, "enforce": False}
    assert manifest["spec"]["gates"]["paired"] == {
        "margin": 0.2,
        "confidence": 0.95,
        "minRows": 20,
        "enforce": True,
    }


INVALID = [
    ("no model", {"spec__model": DELETE}, "spec.model: Field required"),
    (
        "two sources",
        {"spec__source__modelVersion": "3"},
        "spec.source: Value error, exactly one of 'train' or 'modelVersion'",
    ),
    ("no source", {"spec__source": {}}, "spec.source: Value error, exactly one of"),
    (
        "threshold above one",
        {"spec__gates__absolute": {"accuracy": 1.5}},
        "spec.gates.absolute.accuracy.min: Input should be less than or equal to 1",
    ),
    (
        "negative maxDrop",
        {"spec__gates__regression": {"maxDrop": -0.1}},
        "spec.gates.regression.maxDrop: Input should be greater than or equal to 0",
    ),
    (
        "bad duration",
        {"spec__rollout__loadTest": {"duration": "15 seconds"}},
        "spec.rollout.loadTest.duration: Value error, must be a duration",
    ),
    (
        "bad rollout name",
        {"spec__rollout__name": "Digits_Serving"},
        "spec.rollout.name: Value error, must be a lowercase RFC 1123 name",
    ),
    ("unknown field", {"spec__gate": {}}, "spec.gate: Extra inputs are not permitted"),
    ("wrong kind", {"kind": "Deployment"}, "kind: Input should be 'ModelPromotion'"),
    (
        "wrong group",
        {"apiVersion": "mlops.example.com/v1"},
        "apiVersion: Input should be 'mlops.promoter.dev/v1alpha1'",
    ),
    (
        "bad metadata name",
        {"metadata": {"name": "Digits 1"}},
        "metadata.name: Value error, must be a lowercase RFC 1123 name",
    ),
    (
        "bad version",
        {"spec__source": {"modelVersion": "latest"}},
        "spec.source.modelVersion: String should match pattern",
    ),
    (
        "gpu count",
        {"spec__source__train__resources": {"gpu": -1}},
        "spec.source.train.resources.gpu: Input should be greater than or equal to 0",
    ),
    (
        "bad data pin",
        {"spec__source__train__data": {"version": "v1", "sha256": "abc"}},
        "spec.source.train.data.sha256: String should match pattern",
    ),
]


@pytest.mark.parametrize(
    ("change", "message"), [(c, m) for _, c, m in INVALID], ids=[i for i, _, _ in INVALID]
)
def test_invalid_promotions_are_rejected_naming_the_field(change: dict[str, object], message: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_promotion(with_spec(**change), origin="bad.yaml")
    assert message in str(caught.value)
    assert str(caught.value).startswith("bad.yaml: invalid ModelPromotion")


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(SpecError) as caught:
        parse_promotion(with_spec(spec__model=DELETE, spec__rollout__name="UPPER"))
    assert "spec.model" in str(caught.value) and "spec.rollout.name" in str(caught.value)


def test_unknown_and_malformed_pipeline_params_name_the_param() -> None:
    digits = get_pipeline("digits")
    with pytest.raises(
        SpecError, match=r"spec\.source\.train\.params\.epoch: Extra inputs are not permitted"
    ):
        digits.parse_config({"epoch": 3})
    with pytest.raises(SpecError, match=r"spec\.source\.train\.params\.lr: Input should be greater than 0"):
        digits.parse_config({"lr": 0})
    with pytest.raises(SpecError, match=r"unknown pipeline 'mnist' \(known: digits, wine\)"):
        get_pipeline("mnist")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("spec: [unclosed", "not valid YAML"),
        ("- a\n- list", "expected a ModelPromotion mapping, got a list"),
        ("", "expected a ModelPromotion mapping, got an empty document"),
    ],
)
def test_unreadable_files_get_a_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "promotion.yaml"
    path.write_text(text)
    with pytest.raises(SpecError, match=message):
        load_promotion(path)
    with pytest.raises(SpecError, match="cannot read"):
        load_promotion(tmp_path / "missing.yaml")


def test_promoting_an_existing_version_has_no_training_source() -> None:
    promotion = ModelPromotion.model_validate(with_spec(spec__source={"modelVersion": "4"}))
    assert promotion.spec.source.model_version == "4"
    with pytest.raises(SpecError, match="has no 'train'"):
        _ = promotion.train
