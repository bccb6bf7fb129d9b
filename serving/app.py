"""The inference server: promoter's JSON API, the Open Inference Protocol, health and metrics.

The inference routes are plain ASGI in front of the FastAPI application (`inference_routes`
says why); FastAPI answers the rest and publishes the OpenAPI document of both.

The model loads in the background after the server starts: `/healthz` answers at once, `/readyz`
only once the model is loaded and warmed up with its input example, so a Rollout never routes
traffic to a cold pod. Workers are configured from the environment (`serving.settings`), which is
how `promoter serve` hands one resolved model version to every uvicorn worker.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from mlflow.tracking import MlflowClient
from prometheus_client import Histogram
from starlette.exceptions import HTTPException

from promoter import __version__
from promoter.serving import metrics, open_inference
from promoter.serving.batching import BatcherStopped, MicroBatcher
from promoter.serving.inference_routes import (
    ASGIApp,
    InferenceAnswer,
    InferenceRequest,
    InferenceRoute,
    InferenceRouter,
    Message,
    Receive,
    Scope,
    Send,
    document_routes,
)
from promoter.serving.model import ModelIdentity, ServedModel, load, resolve
from promoter.serving.protocol import (
    PREDICT_REQUEST_SCHEMA,
    ProtocolError,
    parse_json,
    parse_predict,
    predict_response,
)
from promoter.serving.settings import ServeSettings

log = logging.getLogger("promoter.serving")
METRICS_FLUSH_SECONDS = 1.0


class ModelState:
    def __init__(self, settings: ServeSettings) -> None:
        self._settings = settings
        self.model: ServedModel | None = None
        self.batcher: MicroBatcher | None = None
        self.recorder: metrics.PredictionRecorder | None = None
        self.error: str | None = None

    @property
    def ready(self) -> bool:
        if self.model is None or self.batcher is None:
            return False
        return (
            self._settings.workers <= 1
            or _ready_workers(Path(self._settings.ready_dir)) >= self._settings.workers
        )

    def mark_ready(self) -> None:
        if self._settings.workers > 1:
            (Path(self._settings.ready_dir) / str(os.getpid())).touch()


def _ready_workers(directory: Path) -> int:
    """Workers that announced readiness and are still alive (a dead worker's mark does not count)."""
    alive = 0
    for mark in directory.iterdir():
        try:
            os.kill(int(mark.name), 0)
        except (ValueError, ProcessLookupError):
            continue
        except PermissionError:
            pass
        alive += 1
    return alive


class MetricsMiddleware:
    """Latency by route template and status, and requests in flight; pure ASGI to stay cheap."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # (route template, status) -> its histogram: `labels()` costs more than the observation itself
        self._latency: dict[tuple[str, int], Histogram] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        metrics.IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, send_with_status)
        finally:
            metrics.IN_FLIGHT.dec()
            key = (getattr(scope.get("route"), "path", "unmatched"), status)
            if (latency := self._latency.get(key)) is None:
                latency = self._latency[key] = metrics.REQUEST_SECONDS.labels(key[0], str(status))
            latency.observe(time.perf_counter() - started)


def _json(content: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(content, status_code=status)


def create_app(settings: ServeSettings, identity: ModelIdentity | None = None) -> ASGIApp:
    state = ModelState(settings)

    async def load_and_warm_up() -> None:
        try:
            resolved = identity or _identity_from_settings(settings)
            model = await asyncio.to_thread(load, resolved)
            version = resolved.version or "unregistered"
            recorder = metrics.PredictionRecorder(
                version, model.class_names, int(np.prod(model.input_shape)), settings.low_confidence
            )

            def forward(inputs: np.ndarray) -> np.ndarray:
                return model.bundle.forward(inputs)

            def observe_batch(inputs: np.ndarray, outputs: np.ndarray, seconds: float) -> None:
                metrics.FORWARD_ROWS.observe(len(inputs))
                metrics.FORWARD_SECONDS.observe(seconds)
                if state.recorder is not None:  # None during warm-up: those are not predictions
                    state.recorder.record(inputs, outputs)

            batcher = MicroBatcher(
                forward, settings.max_batch_size, settings.max_wait_ms / 1000, observe_batch
            )
            batcher.start()
            example = model.bundle.validate(model.input_example)[:1]
            # First passes allocate and pick kernels: pay for it before traffic, in the single-input
            # graph and in the batch graph alike.
            for inputs in (example, np.repeat(example, 8, axis=0)):
                for _ in range(3):
                    await batcher.predict(inputs)
            state.model, state.batcher, state.recorder = model, batcher, recorder
            state.mark_ready()
            metrics.MODEL_INFO.labels(
                resolved.name, version, resolved.run_id, resolved.tags.get("git.commit", "")
            ).set(1)
            metrics.READY.set(1)
            log.info("serving %s (run %s)", resolved.uri, resolved.run_id)
        except Exception as exc:
            state.error = f"{type(exc).__name__}: {exc}"
            log.exception("model failed to load")

    async def flush_metrics() -> None:
        while True:
            await asyncio.sleep(METRICS_FLUSH_SECONDS)
            if state.recorder is not None:
                state.recorder.flush()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if settings.torch_threads > 0:
            torch.set_num_threads(settings.torch_threads)
        metrics.READY.set(0)
        loader = asyncio.create_task(load_and_warm_up())
        flusher = asyncio.create_task(flush_metrics())
        yield
        # uvicorn has already let in-flight requests finish; drain what they queued, then stop.
        loader.cancel()
        flusher.cancel()
        if state.batcher is not None:
            await state.batcher.stop()
        if state.recorder is not None:
            state.recorder.flush()

    app = FastAPI(title="promoter inference server", version=__version__, lifespan=lifespan)

    @app.exception_handler(ProtocolError)
    async def protocol_error(_: Request, exc: ProtocolError) -> JSONResponse:
        return _json({"error": exc.message}, exc.status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        # Unknown routes (404) and methods (405) too: V2 clients read only {"error": ...} bodies
        message = f"{exc.detail}: {request.method} {request.url.path}"
        return JSONResponse({"error": message}, exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        return _json({"error": f"{'.'.join(map(str, first['loc']))}: {first['msg']}"}, 422)

    def serving() -> ServedModel:
        if state.model is None:
            raise ProtocolError(503, state.error or "the model is still loading")
        return state.model

    async def infer(inputs: np.ndarray) -> np.ndarray:
        assert state.batcher is not None
        if settings.inject_latency_ms > 0:
            await asyncio.sleep(settings.inject_latency_ms / 1000)
        try:
            probabilities = await state.batcher.predict(inputs)
        except BatcherStopped as exc:
            raise ProtocolError(503, str(exc)) from None
        metrics.REQUEST_ROWS.observe(len(inputs))
        return probabilities

    def model_ref(model: ServedModel) -> dict[str, str | None]:
        return {"name": model.identity.name, "version": model.identity.version}

    def check_v2_model(model: ServedModel, name: str, version: str | None = None) -> None:
        if name != model.identity.name or (version is not None and version != model.identity.version):
            wanted = f"{name}" + (f" version {version}" if version else "")
            raise ProtocolError(
                404,
                f"model {wanted} is not served here (this server serves "
                f"{model.identity.name} version {model.identity.version})",
            )

    @app.get("/healthz", summary="The process is alive")
    async def healthz() -> JSONResponse:
        return _json({"status": "alive"})

    @app.get(
        "/readyz", summary="The model is loaded and warmed up", responses={503: {"description": "Not ready"}}
    )
    async def readyz() -> JSONResponse:
        if state.ready and state.model is not None:
            return _json({"status": "ready", "model": model_ref(state.model)})
        return _json({"status": "failed" if state.error else "loading", "error": state.error}, 503)

    @app.get("/metadata", summary="Exactly what is served: name, version, run, lineage, signature")
    async def metadata() -> JSONResponse:
        model = serving()
        identity = model.identity
        return _json(
            {
                "name": identity.name,
                "version": identity.version,
                "run_id": identity.run_id,
                "model_uri": identity.uri,
                "requested_uri": identity.requested_uri,
                "lineage": identity.tags,
                "signature": model.signature(),
                "server_version": __version__,
            }
        )

    @app.get("/metrics", summary="Prometheus metrics")
    async def prometheus_metrics() -> Response:
        if state.recorder is not None:
            state.recorder.flush()
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    async def predict(request: InferenceRequest) -> InferenceAnswer:
        model = serving()
        inputs = parse_predict(parse_json(request.body), model.bundle, settings.max_request_inputs)
        return InferenceAnswer(predict_response(await infer(inputs), model.bundle, model_ref(model)))

    # --- Open Inference Protocol (KServe V2) -----------------------------------------------------

    @app.get("/v2", summary="V2 server metadata")
    async def v2_server() -> JSONResponse:
        return _json(
            {"name": "promoter", "version": __version__, "extensions": [open_inference.BINARY_EXTENSION]}
        )

    @app.get("/v2/health/live", summary="V2 liveness")
    async def v2_live() -> JSONResponse:
        return _json({"live": True})

    @app.get("/v2/health/ready", summary="V2 readiness", responses={503: {"description": "Not ready"}})
    async def v2_ready() -> JSONResponse:
        return _json({"ready": state.ready}, 200 if state.ready else 503)

    def v2_metadata(model: ServedModel) -> dict[str, Any]:
        return {
            "name": model.identity.name,
            "versions": [model.identity.version] if model.identity.version else [],
            "platform": "pytorch_mlflow",
            **open_inference.tensors(model.bundle),
            "parameters": {"classes": list(model.class_names), "run_id": model.identity.run_id},
        }

    unknown: dict[int | str, dict[str, Any]] = {
        404: {"description": "Unknown model or version"},
        503: {"description": "Still loading"},
    }

    @app.get("/v2/models/{name}", summary="V2 model metadata", responses=unknown)
    async def v2_model(name: str) -> JSONResponse:
        model = serving()
        check_v2_model(model, name)
        return _json(v2_metadata(model))

    @app.get("/v2/models/{name}/versions/{version}", summary="V2 model version metadata", responses=unknown)
    async def v2_model_version(name: str, version: str) -> JSONResponse:
        model = serving()
        check_v2_model(model, name, version)
        return _json(v2_metadata(model))

    @app.get("/v2/models/{name}/ready", summary="V2 model readiness", responses=unknown)
    async def v2_model_ready(name: str) -> JSONResponse:
        model = serving()
        check_v2_model(model, name)
        return _json({"name": name, "ready": True})

    @app.get(
        "/v2/models/{name}/versions/{version}/ready", summary="V2 model version readiness", responses=unknown
    )
    async def v2_model_version_ready(name: str, version: str) -> JSONResponse:
        model = serving()
        check_v2_model(model, name, version)
        return _json({"name": name, "ready": True})

    async def v2_infer(request: InferenceRequest) -> InferenceAnswer:
        model = serving()
        check_v2_model(model, request.path["name"], request.path.get("version"))
        header_length = request.header(open_inference.HEADER_LENGTH)
        parsed = open_inference.parse_infer(
            request.body, header_length, model.bundle, settings.max_request_inputs
        )
        body, json_length = open_inference.infer_response(
            await infer(parsed.inputs), model.bundle, parsed, model.identity.name, model.identity.version
        )
        if json_length is None:
            return InferenceAnswer(body)
        return InferenceAnswer(
            body,
            ((open_inference.HEADER_LENGTH, str(json_length).encode()),),
            b"application/octet-stream",
        )

    inference = [
        InferenceRoute("/predict", "Predict a batch of inputs", PREDICT_REQUEST_SCHEMA, predict),
        InferenceRoute(
            "/v2/models/{name}/infer",
            "V2 inference",
            open_inference.INFER_REQUEST_SCHEMA,
            v2_infer,
            {404: "Unknown model"},
            open_inference.LENGTH_HEADER,
        ),
        InferenceRoute(
            "/v2/models/{name}/versions/{version}/infer",
            "V2 inference on a version",
            open_inference.INFER_REQUEST_SCHEMA,
            v2_infer,
            {404: "Unknown model or version"},
            open_inference.LENGTH_HEADER,
        ),
    ]
    document_routes(app, inference)
    return MetricsMiddleware(InferenceRouter(app, inference, settings.max_body_bytes))


def _identity_from_settings(settings: ServeSettings) -> ModelIdentity:
    identity = resolve(settings.model_uri, MlflowClient())
    return replace(identity, requested_uri=settings.requested_model_uri or identity.requested_uri)


def create_app_from_env() -> ASGIApp:
    """uvicorn's factory for each worker process (`promoter serve` sets the environment)."""
    return create_app(ServeSettings.load())
