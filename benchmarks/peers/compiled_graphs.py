"""The server's compiled graphs, as the peers load and run them (`ModelBundle.save_compiled` wrote them).

Imports only torch and numpy: it runs inside each peer's own environment (MLServer, KServe) as well
as in the benchmark's. Everything the server does around its graphs is done the same way here: one
torch thread, the frozen graph for one input and the batched one otherwise, softmax on the logits.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch


def _load(path: Path) -> torch.jit.ScriptModule:
    return torch.jit.load(str(path))  # type: ignore[no-untyped-call,no-any-return]


class CompiledGraphs:
    def __init__(self, directory: Path, threads: int = 1) -> None:
        torch.set_num_threads(threads)  # as `promoter serve --torch-threads 1`
        self.single = _load(directory / "single.pt")
        if (directory / "batched.pt").exists():
            self.batched = _load(directory / "batched.pt")
        else:  # torch cannot load the oneDNN graph back: rebuild it from the frozen one, as the server did
            self.batched = torch.jit.optimize_for_inference(_load(directory / "batched.frozen.pt"))

    def probabilities(self, inputs: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        graph = self.single if len(inputs) == 1 else self.batched
        with torch.inference_mode():
            tensor = torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32))
            result: npt.NDArray[np.float32] = torch.softmax(graph(tensor), dim=1).numpy()
        return result
