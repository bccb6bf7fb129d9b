"""What a server serves: one exact model version, resolved once at start and never changed.

An alias (`models:/digits@champion`) is resolved to its version before the first worker starts, so
every worker of a pod serves the same version, and a pod never silently changes model when the
alias moves: rolling forward is the Rollout's job, not the pod's.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass, field
from typing import Any

import mlflow
import numpy as np
import numpy.typing as npt
from mlflow.exceptions import MlflowException
from mlflow.models import Model
from mlflow.tracking import MlflowClient

from promoter.pipelines.packaging import ModelBundle, load_bundle
from promoter.promotion.names import LINEAGE_TAGS
from promoter.serving import open_inference

_REGISTERED = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[\w-]+))$")
_RUN = re.compile(r"^runs:/(?P<run_id>[0-9a-f]{32})/(?P<path>.+)$")


class ModelResolutionError(RuntimeError):
    pass


@dataclass(frozen=True)
class ModelIdentity:
    """The exact thing being served, as `/metadata` reports it."""

    name: str
    version: str | None  # None when serving a run's model that was never registered
    run_id: str
    uri: str  # the exact URI loaded: models:/NAME/VERSION or runs:/RUN/PATH
    requested_uri: str
    tags: dict[str, str] = field(default_factory=dict)


def resolve(uri: str, client: MlflowClient | None = None) -> ModelIdentity:
    client = client or MlflowClient()
    registered = _REGISTERED.match(uri)
    try:
        if registered:
            name = registered["name"]
            if registered["alias"]:
                model_version = client.get_model_version_by_alias(name, registered["alias"])
            else:
                model_version = client.get_model_version(name, registered["version"])
            version = str(model_version.version)
            run_id = model_version.run_id or ""
            exact = f"models:/{name}/{version}"
        elif run := _RUN.match(uri):
            name, version, run_id, exact = run["path"], None, run["run_id"], uri
        else:
            raise ModelResolutionError(
                f"unsupported model URI {uri!r}: "
                "use models:/NAME/VERSION, models:/NAME@ALIAS or runs:/RUN_ID/PATH"
            )
        tags = client.get_run(run_id).data.tags if run_id else {}
    except MlflowException as exc:
        raise ModelResolutionError(
            f"cannot resolve {uri!r} at {client.tracking_uri}: {exc.message}"
        ) from None
    return ModelIdentity(
        name=name,
        version=version,
        run_id=run_id,
        uri=exact,
        requested_uri=uri,
        tags={key: tags[key] for key in LINEAGE_TAGS if key in tags},
    )


@dataclass
class ServedModel:
    identity: ModelIdentity
    bundle: ModelBundle
    input_example: npt.NDArray[np.float32]

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.bundle.manifest.class_names

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.bundle.manifest.input_shape

    def signature(self) -> dict[str, Any]:
        return {**open_inference.tensors(self.bundle), "classes": list(self.class_names)}


def load(identity: ModelIdentity) -> ServedModel:
    # Always into a scratch directory of our own (TMPDIR: the pod's writable emptyDir). From a local
    # artifact store MLflow would otherwise hand back the store's own directory and write its
    # metadata file into it: a server must never write to the registry, and with a read-only root
    # filesystem it cannot. Everything is in memory once loaded, so the copy goes at once.
    with tempfile.TemporaryDirectory(prefix="promoter-model-") as scratch:
        local = mlflow.artifacts.download_artifacts(identity.uri, dst_path=scratch)
        bundle = load_bundle(local)
        try:
            saved = Model.load(local).load_input_example(local)
        except Exception:  # an example only improves warm-up; its absence must not stop serving
            saved = None
    # load_bundle compiled the network already (PipelineModel.load_context): nothing to redo here
    example = np.zeros((1, *bundle.manifest.input_shape)) if saved is None else np.asarray(saved)
    return ServedModel(identity=identity, bundle=bundle, input_example=example.astype(np.float32))
