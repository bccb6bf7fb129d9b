"""The trainer and the packaged model, in process, on real torch (CPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from promoter.pipelines import get_pipeline
from promoter.pipelines.packaging import InputError, ModelBundle, ModelManifest
from promoter.pipelines.training import TrainResult, degrade_labels, train_classifier
from promoter.pipelines.wine import load_wine_v1


def train_wine(seed: int, epochs: int = 5, **params: object) -> TrainResult:
    pipeline = get_pipeline("wine")
    config = pipeline.parse_config({"seed": seed, "epochs": epochs, **params})
    data = load_wine_v1()
    split = data.split()
    return train_classifier(
        lambda: pipeline.build_body(config, data.input_shape, len(data.class_names)),
        config,
        (data.features[split["train"]], data.labels[split["train"]]),
        (data.features[split["val"]], data.labels[split["val"]]),
        len(data.class_names),
        torch.device("cpu"),
    )


def losses(result: TrainResult) -> list[tuple[float, float]]:
    return [(m.train_loss, m.val_loss) for m in result.history]


def test_same_seed_same_process_gives_identical_training() -> None:
    torch.rand(7)  # whatever ran before must not matter: the trainer seeds before building the network
    first = train_wine(seed=5)
    second = train_wine(seed=5)
    assert losses(first) == losses(second)
    assert losses(first) != losses(train_wine(seed=6))


def test_training_learns_and_reports_throughput() -> None:
    result = train_wine(seed=1, epochs=40)
    assert result.history[-1].val_accuracy >= 0.9
    assert result.history[-1].train_loss < result.history[0].train_loss
    assert result.samples_per_second > 0


def test_label_noise_flips_exactly_the_requested_share_to_other_classes() -> None:
    labels = np.arange(1000, dtype=np.int64) % 10
    noisy = degrade_labels(labels, 10, 0.3, seed=2)
    assert (noisy != labels).sum() == 300
    assert noisy.min() >= 0 and noisy.max() <= 9
    assert np.array_equal(noisy, degrade_labels(labels, 10, 0.3, seed=2))
    assert degrade_labels(labels, 10, 0.0, seed=2) is labels


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> ModelBundle:
    result = train_wine(seed=0, epochs=3)
    directory = tmp_path_factory.mktemp("bundle")
    torch.save(result.network.state_dict(), directory / "weights.pt")
    manifest = ModelManifest(
        pipeline="wine",
        config={"seed": 0, "epochs": 3},
        input_shape=(13,),
        class_names=load_wine_v1().class_names,
    )
    (directory / "manifest.json").write_text(manifest.to_json())
    loaded = ModelBundle.from_files(directory / "manifest.json", directory / "weights.pt")
    features = load_wine_v1().features[:4]
    expected = torch.softmax(result.network(torch.from_numpy(features)), dim=1).detach().numpy()
    np.testing.assert_allclose(loaded.predict_proba(features), expected, rtol=1e-5)
    return loaded


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (np.zeros((2, 12), np.float32), r"expected inputs of shape \[batch, 13\], got \[2, 12\]"),
        (np.zeros((13,), np.float32), r"got \[13\]"),
        (np.array([["a"] * 13]), "expected real numbers"),
        (np.full((1, 13), np.nan, np.float32), "NaN or infinity"),
        (np.full((1, 13), np.inf), "NaN or infinity"),
    ],
)
def test_the_model_refuses_inputs_that_do_not_fit(
    bundle: ModelBundle, inputs: np.ndarray, message: str
) -> None:
    with pytest.raises(InputError, match=message):
        bundle.predict_proba(inputs)


def test_integer_inputs_are_accepted_as_numbers(bundle: ModelBundle) -> None:
    probabilities = bundle.predict_proba(np.ones((3, 13), dtype=np.int64))
    assert probabilities.shape == (3, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_the_optimised_inference_graph_answers_like_the_eager_network(bundle: ModelBundle) -> None:
    features = load_wine_v1().features[:16]
    eager = [bundle.predict_proba(features[:1]), bundle.predict_proba(features)]
    assert bundle.optimize_for_inference()
    # a single input and a batch take different graphs: both must answer like the network
    np.testing.assert_allclose(bundle.predict_proba(features[:1]), eager[0], atol=1e-6)
    np.testing.assert_allclose(bundle.predict_proba(features), eager[1], atol=1e-6)
