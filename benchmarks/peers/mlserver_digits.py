"""MLServer's runtime for the digits model: the server's compiled graphs behind an `MLModel`.

Written as MLServer's documentation writes a custom runtime: `load` reads the model from
`parameters.uri`, `predict` decodes with `NumpyRequestCodec` and encodes with `NumpyCodec`.
Adaptive batching (`max_batch_size`, `max_batch_time` in model-settings.json) merges concurrent
requests along the first axis before `predict` sees them. benchmarks/serving.py writes the settings.
"""

from __future__ import annotations

from pathlib import Path

from compiled_graphs import CompiledGraphs
from mlserver import MLModel
from mlserver.codecs import NumpyCodec, NumpyRequestCodec
from mlserver.types import InferenceRequest, InferenceResponse


class DigitsRuntime(MLModel):  # type: ignore[misc]
    async def load(self) -> bool:
        uri = self.settings.parameters.uri if self.settings.parameters else None
        if not uri:
            raise ValueError("model-settings.json: parameters.uri must name the compiled graphs' directory")
        self._graphs = CompiledGraphs(Path(uri))
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        inputs = NumpyRequestCodec.decode_request(payload)
        probabilities = self._graphs.probabilities(inputs)
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            id=payload.id,
            outputs=[NumpyCodec.encode_output("probabilities", probabilities)],
        )
