"""A trained pipeline as an MLflow model: weights + a small manifest, rebuilt through the catalogue.

Weights are stored as a state dict rather than a pickled module, so a model survives refactors of
the training code as long as the architecture is the same. `ModelBundle` is the in-process form the
inference server uses directly (no pandas round trip); `PipelineModel` wraps it for MLflow's pyfunc
API, so `mlflow models serve` and any MLflow client can load the same artifact.
"""

from __future__ import annotations

import inspect
import json
import logging
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import numpy.typing as npt
import torch
from mlflow.models import ModelSignature
from mlflow.pyfunc.model import PythonModel
from mlflow.types import Schema, TensorSpec
from torch import nn

from promoter.pipelines.tracking import quiet_loggers
from promoter.pipelines.training import Standardize
from promoter.promotion.names import MODEL_ARTIFACT

_MANIFEST = "promoter-model.json"
_WEIGHTS = "weights.pt"


class InputError(ValueError):
    """The caller's input does not fit the model; safe to show to that caller."""


# numpy's dtype kinds of real numbers: signed, unsigned, floating (not bool, complex, text, objects).
# A kind test costs a fraction of `np.issubdtype`, and it runs on every request the server answers.
REAL_NUMBER_KINDS = "iuf"


@dataclass(frozen=True)
class ModelManifest:
    pipeline: str
    config: dict[str, Any]
    input_shape: tuple[int, ...]
    class_names: tuple[str, ...]

    def to_json(self) -> str:
        return json.dumps(
            {
                "pipeline": self.pipeline,
                "config": self.config,
                "input_shape": list(self.input_shape),
                "class_names": list(self.class_names),
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> ModelManifest:
        raw = json.loads(text)
        return cls(
            pipeline=raw["pipeline"],
            config=raw["config"],
            input_shape=tuple(raw["input_shape"]),
            class_names=tuple(raw["class_names"]),
        )


class ModelBundle:
    """A network ready for inference, with the contract needed to validate its inputs."""

    def __init__(self, manifest: ModelManifest, network: nn.Module) -> None:
        self.manifest = manifest
        self.network = network.eval()
        self._single: Callable[[torch.Tensor], torch.Tensor] = self.network
        self._batched: Callable[[torch.Tensor], torch.Tensor] = self.network

    @property
    def compiled(self) -> bool:
        """Whether inference runs the frozen graphs of `optimize_for_inference` (else the eager network)."""
        return self._single is not self.network

    def optimize_for_inference(self) -> bool:
        """Compile the network into two frozen graphs, one for a single input and one for batches.

        Freezing folds BatchNorm into the convolutions and removes Python dispatch, which more than
        halves single-input latency on CPU. `torch.jit.optimize_for_inference` goes further for
        batches (oneDNN layouts and prepacked weights: 1.3-1.7x on batches of 2-128 here), but its
        layout conversions make a single input twice as slow, so each graph keeps the sizes it wins.
        Outputs are unchanged to float rounding, which is checked. A network that cannot be traced
        keeps running eagerly; returns whether the frozen graphs are in use."""
        example = torch.zeros((2, *self.manifest.input_shape))
        try:
            with torch.no_grad():
                single = torch.jit.freeze(self._trace(example))
                batched = torch.jit.optimize_for_inference(torch.jit.freeze(self._trace(example)))
                for graph, inputs in ((single, example[:1]), (batched, example)):
                    if not torch.allclose(graph(inputs), self.network(inputs), atol=1e-5):
                        return False
        except Exception:  # tracing is an optimisation; any failure leaves the eager network in place
            return False
        self._single, self._batched = single, batched
        return True

    @classmethod
    def from_files(cls, manifest_path: Path, weights_path: Path) -> ModelBundle:
        manifest = ModelManifest.from_json(manifest_path.read_text())
        return cls.from_state(manifest, torch.load(weights_path, map_location="cpu", weights_only=True))

    @classmethod
    def from_state(cls, manifest: ModelManifest, state: Mapping[str, torch.Tensor]) -> ModelBundle:
        """The network the manifest describes, holding these weights: a logged model once its files
        are read, or a network still in memory packaged exactly as logging it would (`cpu_state`)."""
        from promoter.pipelines import get_pipeline  # the catalogue imports every pipeline

        pipeline = get_pipeline(manifest.pipeline)
        config = pipeline.parse_config(manifest.config)
        body = pipeline.build_body(config, manifest.input_shape, len(manifest.class_names))
        network = nn.Sequential(Standardize(state["0.mean"], state["0.std"]), body)
        network.load_state_dict(state)
        return cls(manifest, network)

    def validate(self, inputs: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        expected = self.manifest.input_shape
        if inputs.ndim != len(expected) + 1 or tuple(inputs.shape[1:]) != expected:
            raise InputError(
                f"expected inputs of shape [batch, {', '.join(map(str, expected))}], got {list(inputs.shape)}"
            )
        if inputs.dtype.kind not in REAL_NUMBER_KINDS:
            raise InputError(f"expected real numbers, got dtype {inputs.dtype}")
        as_float = inputs.astype(np.float32, copy=False)
        if not np.isfinite(as_float).all():
            raise InputError("inputs contain NaN or infinity")
        return as_float

    def predict_proba(self, inputs: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        return self.forward(self.validate(inputs))

    def _trace(self, example: torch.Tensor) -> torch.jit.ScriptModule:
        return torch.jit.trace(self.network, example)  # type: ignore[no-untyped-call,no-any-return]

    def forward(self, inputs: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Class probabilities for inputs that `validate` already accepted (the server's hot path)."""
        graph = self._single if len(inputs) == 1 else self._batched
        with torch.inference_mode():
            return torch.softmax(graph(torch.from_numpy(np.ascontiguousarray(inputs))), dim=1).numpy()

    def save_compiled(self, directory: Path) -> tuple[Path, Path]:
        """Write the graphs `optimize_for_inference` compiled: (single-input graph, batched graph).

        So that other servers and tools run exactly the graphs this server runs (benchmarks/serving.py
        serves them from MLServer and KServe): a comparison of servers, not of model compilations.
        `single.pt` is the frozen graph. The batched graph is `batched.pt` when it loads back; torch
        2.13 saves `torch.jit.optimize_for_inference`'s oneDNN graph but cannot load it ("required
        keyword attribute 'value' is undefined"), and then `batched.frozen.pt` holds the frozen graph
        that pass started from: load it with `torch.jit.optimize_for_inference(torch.jit.load(path))`,
        which rebuilds the same graph. Raises ValueError when the network runs eagerly."""
        if not (
            isinstance(self._single, torch.jit.ScriptModule)
            and isinstance(self._batched, torch.jit.ScriptModule)
        ):
            raise ValueError("nothing compiled: optimize_for_inference() was not called or did not succeed")
        directory.mkdir(parents=True, exist_ok=True)
        single, batched = directory / "single.pt", directory / "batched.pt"
        torch.jit.save(self._single, str(single))
        torch.jit.save(self._batched, str(batched))
        try:
            torch.jit.load(str(batched))  # type: ignore[no-untyped-call]
        except RuntimeError:
            batched.unlink()
            batched = directory / "batched.frozen.pt"
            # the frozen trace optimize_for_inference() compiled the batched graph from: `single`'s twin
            torch.jit.save(self._single, str(batched))
        return single, batched


class PipelineModel(PythonModel):
    """MLflow's view of a ModelBundle: tensor in, class probabilities out."""

    bundle: ModelBundle

    def load_context(self, context: Any) -> None:
        self.bundle = ModelBundle.from_files(
            Path(context.artifacts["manifest"]), Path(context.artifacts["weights"])
        )
        # The graphs the inference server runs: whoever loads the registered model through pyfunc
        # (batch scoring, Spark UDFs, MLServer's or KServe's MLflow runtimes) gets the same speed.
        # Eagerly, one image took 4.6 ms in-process against the server's 0.24 ms (benchmarks/README.md).
        self.bundle.optimize_for_inference()

    # MLflow reads predict()'s input type hint to validate inputs and infer a signature; for any hint
    # but a few it warns, in colour, on every import and every logged model (from under its own
    # `catch_warnings()`, so no filter of ours applies). A bare `np.ndarray` is one it leaves alone,
    # and what a tensor signature hands us; the signature and ModelBundle.validate check inputs.
    def predict(
        self,
        context: Any,
        model_input: np.ndarray,  # bare, not npt.NDArray: MLflow compares the hint to np.ndarray
        params: dict[str, Any] | None = None,
    ) -> Any:
        return self.bundle.predict_proba(np.asarray(model_input))


# MLflow asks for `predict`'s signature on every call to decide whether to pass `context` and `params`
# (mlflow/pyfunc/model.py, `_PythonModelPyfuncWrapper.predict`); `inspect.signature` returns a
# function's `__signature__` as it is instead of rebuilding it from the code object each time.
PipelineModel.predict.__signature__ = inspect.signature(PipelineModel.predict)  # type: ignore[attr-defined]


def signature_for(input_shape: tuple[int, ...], n_classes: int) -> ModelSignature:
    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, *input_shape))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, n_classes))]),
    )


def cpu_state(network: nn.Module) -> dict[str, torch.Tensor]:
    """The weights as a logged model stores them: detached, on the CPU, wherever the network trained."""
    return {key: value.detach().cpu() for key, value in network.state_dict().items()}


def log_pipeline_model(
    network: nn.Module, manifest: ModelManifest, input_example: npt.NDArray[np.float32]
) -> str:
    """Log under the active run as `model`; returns the model URI."""
    # MLflow's advice on how to log a model (pickling, pip's version) is about its own choices
    with (
        tempfile.TemporaryDirectory(prefix="promoter-model-") as scratch,
        quiet_loggers("mlflow", level=logging.ERROR),
    ):
        weights = Path(scratch) / _WEIGHTS
        manifest_path = Path(scratch) / _MANIFEST
        torch.save(cpu_state(network), weights)
        manifest_path.write_text(manifest.to_json())
        info = mlflow.pyfunc.log_model(
            name=MODEL_ARTIFACT,
            python_model=PipelineModel(),
            artifacts={"manifest": str(manifest_path), "weights": str(weights)},
            signature=signature_for(manifest.input_shape, len(manifest.class_names)),
            input_example=input_example,
            # Explicit requirements: inference by import tracing costs seconds per run and would
            # list the training environment, not what serving needs.
            pip_requirements=[
                f"mlflow=={mlflow.__version__}",
                f"torch=={torch.__version__.split('+')[0]}",
                f"numpy=={np.__version__}",
                "promoter",
            ],
        )
    return str(info.model_uri)


def load_bundle(model_uri: str) -> ModelBundle:
    """Load any promoter model (`runs:/RUN/model`, `models:/NAME/VERSION`) for in-process inference."""
    loaded = mlflow.pyfunc.load_model(model_uri)
    python_model = loaded.unwrap_python_model()
    if not isinstance(python_model, PipelineModel):
        raise TypeError(f"{model_uri} is not a promoter pipeline model ({type(python_model).__name__})")
    return python_model.bundle
