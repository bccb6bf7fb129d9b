"""KServe's model server for the digits model: the server's compiled graphs behind a `kserve.Model`.

Written as KServe's documentation writes a custom predictor: the model's own flags beside
`kserve.model_server.parser`'s, `InferRequest.inputs[0].as_numpy()` in, `InferResponse` with one
`InferOutput` out, `ModelServer().start([model])`. Run by benchmarks/serving.py:

    python kserve_digits.py --model_name digits --model_dir GRAPHS --http_port PORT --enable_grpc false
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from compiled_graphs import CompiledGraphs
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer, model_server
from kserve.utils.utils import generate_uuid


class Digits(Model):  # type: ignore[misc]
    def __init__(self, name: str, model_dir: Path) -> None:
        super().__init__(name)
        self.model_dir = model_dir
        self.load()

    def load(self) -> bool:
        self._graphs = CompiledGraphs(self.model_dir)
        self.ready = True
        return self.ready

    def predict(self, payload: InferRequest, headers: dict[str, str] | None = None) -> InferResponse:
        probabilities = self._graphs.probabilities(payload.inputs[0].as_numpy())
        output = InferOutput(name="probabilities", shape=list(probabilities.shape), datatype="FP32")
        output.set_data_from_numpy(probabilities, binary_data=False)
        response_id = payload.id or generate_uuid()  # as KServe's own numpy-to-response helper does
        return InferResponse(response_id=response_id, model_name=self.name, infer_outputs=[output])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(parents=[model_server.parser])
    parser.add_argument("--model_dir", type=Path, required=True, help="the compiled graphs' directory")
    args, _ = parser.parse_known_args()
    server = ModelServer()
    # No per-request log lines (the access log and KServe's timing lines): promoter writes none either.
    # uvicorn skips access logging altogether when its logger is above INFO.
    for name in ("uvicorn.access", "kserve.trace"):
        logging.getLogger(name).setLevel(logging.WARNING)
    server.start([Digits(args.model_name, args.model_dir)])
