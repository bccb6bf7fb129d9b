"""The inference server's settings: `PROMOTER_SERVE_*`, how `promoter serve` configures its workers.

`promoter serve` resolves the model once (an alias becomes an exact version), then hands the same
settings to every uvicorn worker through the environment (`to_env`); each worker reads them back
with `ServeSettings.load()`. A worker started by hand with a bad value fails naming the variable.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from promoter.settings import EnvSettings


class ServeSettings(EnvSettings):
    model_config = SettingsConfigDict(env_prefix="PROMOTER_SERVE_")

    model_uri: str  # exact: models:/NAME/VERSION or runs:/RUN/PATH (aliases are resolved before)
    requested_model_uri: str = ""  # what the operator asked for, e.g. models:/NAME@champion
    max_batch_size: int = Field(256, ge=1)
    max_wait_ms: float = Field(0.0, ge=0)
    max_request_inputs: int = Field(1024, ge=1)
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    low_confidence: float = Field(0.5, ge=0, le=1)
    # One intra-op thread per worker by default: micro-batches are small, and on batches below ~32
    # a second thread spun more CPU than it saved and was slower (benchmarks/README.md).
    torch_threads: int = Field(1, ge=0)  # 0: torch's default (one per core)
    # Added to every prediction: a deliberately slow server, for testing latency gates and shutdown.
    inject_latency_ms: float = Field(0.0, ge=0)
    # With several workers a probe reaches one of them: the pod is ready only when all are.
    workers: int = Field(1, ge=1)
    ready_dir: str = ""

    def to_env(self) -> dict[str, str]:
        """The variables that make `ServeSettings.load()` in a worker process equal these settings."""
        return {self.variable(name): str(value) for name, value in self.model_dump().items()}
