"""The Open Inference Protocol as its users call it: tritonclient.http and kserve's REST client.

test_serving.py checks the protocol's documents with httpx; a real client also depends on what no
schema says: tritonclient sends its inputs in Triton's binary tensor extension and asks for binary
outputs unless told otherwise, reports readiness from the status code alone, and turns an error into
an exception whose message is the body's "error" (any other body becomes "an exception occurred in
the client while decoding the response"); kserve's client only quotes "error" from a body served as
exactly `application/json`. So these tests drive a real `promoter serve` with both clients, and assert
only what their user would see: booleans, metadata dicts, numpy arrays, exceptions and their messages.

kserve's REST client is asyncio-only and has no metadata calls, no way to name a model version, and
drops the response's model_version: those are tested through tritonclient alone.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np
import numpy.typing as npt
import pytest
import tritonclient.http as triton_http
from kserve import InferenceRESTClient, InferInput, InferRequest, InferResponse, RESTConfig
from kserve.protocol.infer_type import RequestedOutput
from tritonclient.utils import InferenceServerException

from promoter.local.rollout import free_port
from promoter.pipelines.digits import load_digits_v1
from promoter.pipelines.tracking import configure_tracking, tracking_uri

from .conftest import Server

pytestmark = pytest.mark.slow

DIGITS = load_digits_v1()
MODEL = "digits"
VERSION = "1"
# test_serving.py registers a version 2 in the shared registry: a version no test ever creates
UNKNOWN_VERSION = "99"
UNKNOWN_MODEL = "no-such-model"
OUTPUTS = ("probabilities", "predictions")
T = TypeVar("T")


@pytest.fixture(scope="module")
def server(registered_digits: Path) -> Iterator[Server]:
    running = Server(registered_digits, "--model-uri", f"models:/{MODEL}/{VERSION}")
    running.wait_ready()
    yield running
    assert running.stop()


def triton_client(url: str) -> triton_http.InferenceServerClient:
    return triton_http.InferenceServerClient(url.removeprefix("http://"), network_timeout=30)


@pytest.fixture
def triton(server: Server) -> Iterator[triton_http.InferenceServerClient]:
    client = triton_client(server.url)
    yield client
    client.close()


def kserve_call(call: Callable[[InferenceRESTClient], Awaitable[T]]) -> T:
    """kserve's REST client is asyncio-only: one event loop and one client per call, as a script has."""

    async def run() -> T:
        async with InferenceRESTClient(RESTConfig(protocol="v2", timeout=30)) as client:
            return await call(client)

    return asyncio.run(run())


# --- requests and answers, as each client builds and reads them ----------------------------------


def triton_inputs(
    features: npt.NDArray[np.float32], binary: bool = True, name: str = "input"
) -> list[triton_http.InferInput]:
    tensor = triton_http.InferInput(name, list(features.shape), "FP32")
    tensor.set_data_from_numpy(features, binary_data=binary)
    return [tensor]


def triton_outputs(
    requested: Sequence[tuple[str, bool]] | None,
) -> list[triton_http.InferRequestedOutput] | None:
    if requested is None:
        return None  # tritonclient then asks for every output, in binary
    return [triton_http.InferRequestedOutput(name, binary_data=binary) for name, binary in requested]


def kserve_request(
    features: npt.NDArray[np.float32],
    binary_inputs: bool,
    requested: Sequence[tuple[str, bool]] | None = None,
    all_binary: bool = False,
    name: str = "input",
    model: str = MODEL,
) -> InferRequest:
    tensor = InferInput(name, list(features.shape), "FP32")
    tensor.set_data_from_numpy(features, binary_data=binary_inputs)
    return InferRequest(
        model,
        [tensor],
        request_outputs=None
        if requested is None
        else [RequestedOutput(output, parameters={"binary_data": binary}) for output, binary in requested],
        parameters={"binary_data_output": True} if all_binary else None,
    )


def kserve_infer(server: Server, request: InferRequest) -> InferResponse:
    return kserve_call(lambda client: client.infer(server.url, request, model_name=request.model_name))


def as_text(value: object) -> str:
    """A BYTES element: bytes from a binary tensor, str from JSON (both clients alike)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def check_answers(rows: int, probabilities: npt.NDArray[Any], predictions: npt.NDArray[Any] | None) -> None:
    assert probabilities.shape == (rows, 10) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-4)
    assert (probabilities.argmax(axis=1) == DIGITS.labels[:rows]).mean() >= 0.9
    if predictions is not None:  # the class names, in the order of the probabilities
        assert predictions.shape == (rows,)
        assert [as_text(p) for p in predictions] == [str(c) for c in probabilities.argmax(axis=1)]


def assert_healthy(server: Server, triton: triton_http.InferenceServerClient) -> None:
    """After a refused request: still ready, and still answering a good one."""
    assert triton.is_server_ready() and triton.is_model_ready(MODEL)
    result = triton.infer(
        MODEL, triton_inputs(DIGITS.features[:1], binary=False), outputs=triton_outputs([(OUTPUTS[0], False)])
    )
    check_answers(1, result.as_numpy("probabilities"), None)


# --- server and model state ----------------------------------------------------------------------


def test_triton_sees_a_live_and_ready_server(triton: triton_http.InferenceServerClient) -> None:
    assert triton.is_server_live() is True
    assert triton.is_server_ready() is True


def test_triton_reads_the_server_metadata_and_its_binary_extension(
    triton: triton_http.InferenceServerClient,
) -> None:
    metadata = triton.get_server_metadata()
    assert metadata["name"] == "promoter" and metadata["version"]
    assert "binary_tensor_data" in metadata["extensions"]


def test_kserve_sees_a_live_and_ready_server_and_model(server: Server) -> None:
    assert kserve_call(lambda client: client.is_server_live(server.url)) is True
    assert kserve_call(lambda client: client.is_server_ready(server.url)) is True
    assert kserve_call(lambda client: client.is_model_ready(server.url, MODEL)) is True
    # kserve reads a model's readiness from the status alone: an unknown model is "not ready"
    assert kserve_call(lambda client: client.is_model_ready(server.url, UNKNOWN_MODEL)) is False


@pytest.mark.parametrize("version", ["", VERSION], ids=["any-version", "version-1"])
def test_triton_sees_the_model_ready(triton: triton_http.InferenceServerClient, version: str) -> None:
    assert triton.is_model_ready(MODEL, version) is True


@pytest.mark.parametrize("version", ["", VERSION], ids=["any-version", "version-1"])
def test_triton_reads_the_model_metadata(triton: triton_http.InferenceServerClient, version: str) -> None:
    metadata = triton.get_model_metadata(MODEL, version)
    assert metadata["name"] == MODEL and metadata["versions"] == [VERSION]
    assert isinstance(metadata["platform"], str) and metadata["platform"]
    assert metadata["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 1, 8, 8]}]
    assert {output["name"]: (output["datatype"], output["shape"]) for output in metadata["outputs"]} == {
        "probabilities": ("FP32", [-1, 10]),
        "predictions": ("BYTES", [-1]),
    }


def test_an_unknown_version_is_not_ready_and_its_metadata_an_error_naming_it(
    server: Server, triton: triton_http.InferenceServerClient
) -> None:
    assert triton.is_model_ready(MODEL, UNKNOWN_VERSION) is False
    with pytest.raises(InferenceServerException) as caught:
        triton.get_model_metadata(MODEL, UNKNOWN_VERSION)
    assert caught.value.status() == "404"
    assert UNKNOWN_VERSION in caught.value.message()
    # the client's message is the server's own, word for word
    body = server.client.get(f"/v2/models/{MODEL}/versions/{UNKNOWN_VERSION}").json()
    assert caught.value.message() == body["error"]


def test_an_unknown_model_is_not_ready_and_its_metadata_an_error_naming_it(
    server: Server, triton: triton_http.InferenceServerClient
) -> None:
    assert triton.is_model_ready(UNKNOWN_MODEL) is False
    with pytest.raises(InferenceServerException) as caught:
        triton.get_model_metadata(UNKNOWN_MODEL)
    assert caught.value.status() == "404"
    assert UNKNOWN_MODEL in caught.value.message()
    assert caught.value.message() == server.client.get(f"/v2/models/{UNKNOWN_MODEL}").json()["error"]


# --- inference -----------------------------------------------------------------------------------

# (output, binary_data) pairs as a tritonclient user requests them; None: tritonclient's default
TRITON_OUTPUTS: dict[str, Sequence[tuple[str, bool]] | None] = {
    "all-by-default": None,
    "probabilities-binary": [("probabilities", True)],
    "probabilities-json": [("probabilities", False)],
    "both-binary": [("probabilities", True), ("predictions", True)],
    "both-json": [("probabilities", False), ("predictions", False)],
}


@pytest.mark.parametrize("rows", [1, 32])
@pytest.mark.parametrize("requested", list(TRITON_OUTPUTS.values()), ids=list(TRITON_OUTPUTS))
@pytest.mark.parametrize("binary_inputs", [True, False], ids=["binary-inputs", "json-inputs"])
def test_triton_infers(
    triton: triton_http.InferenceServerClient,
    binary_inputs: bool,
    requested: Sequence[tuple[str, bool]] | None,
    rows: int,
) -> None:
    result = triton.infer(
        MODEL,
        triton_inputs(DIGITS.features[:rows], binary=binary_inputs),
        outputs=triton_outputs(requested),
        request_id=f"rows-{rows}",
    )
    response = result.get_response()
    assert response["model_name"] == MODEL and response["model_version"] == VERSION
    assert response["id"] == f"rows-{rows}"
    wanted = dict(requested) if requested is not None else dict.fromkeys(OUTPUTS, True)
    assert {output["name"] for output in response["outputs"]} == set(wanted)
    for name, binary in wanted.items():  # each output in the encoding asked for
        parameters = result.get_output(name).get("parameters") or {}
        assert ("binary_data_size" in parameters) is binary, f"{name}: binary_data={binary} not honoured"
    check_answers(rows, result.as_numpy("probabilities"), result.as_numpy("predictions"))


# as a kserve user requests outputs: (outputs with their binary_data, request-wide binary_data_output)
KSERVE_OUTPUTS: dict[str, tuple[Sequence[tuple[str, bool]] | None, bool]] = {
    "all-json": (None, False),
    "all-binary": (None, True),
    "probabilities-json": ([("probabilities", False)], False),
    "both-binary": ([("probabilities", True), ("predictions", True)], False),
}


@pytest.mark.parametrize("rows", [1, 32])
@pytest.mark.parametrize("outputs", list(KSERVE_OUTPUTS.values()), ids=list(KSERVE_OUTPUTS))
@pytest.mark.parametrize("binary_inputs", [True, False], ids=["binary-inputs", "json-inputs"])
def test_kserve_infers(
    server: Server,
    binary_inputs: bool,
    outputs: tuple[Sequence[tuple[str, bool]] | None, bool],
    rows: int,
) -> None:
    requested, all_binary = outputs
    response = kserve_infer(
        server, kserve_request(DIGITS.features[:rows], binary_inputs, requested, all_binary)
    )
    assert response.model_name == MODEL
    names = [name for name, _ in requested] if requested is not None else list(OUTPUTS)
    assert sorted(output.name for output in response.outputs) == sorted(names)
    predictions = response.get_output_by_name("predictions")
    check_answers(
        rows,
        response.get_output_by_name("probabilities").as_numpy(),
        None if predictions is None else predictions.as_numpy(),
    )


@pytest.mark.parametrize("rows", [1, 32])
def test_both_clients_get_the_same_answers(
    server: Server, triton: triton_http.InferenceServerClient, rows: int
) -> None:
    features = DIGITS.features[:rows]
    by_triton = triton.infer(MODEL, triton_inputs(features))  # its defaults: all binary
    by_kserve = kserve_infer(server, kserve_request(features, binary_inputs=False))  # all JSON
    np.testing.assert_allclose(
        by_triton.as_numpy("probabilities"),
        by_kserve.get_output_by_name("probabilities").as_numpy(),
        atol=1e-5,  # the same rows, but another request: micro-batching may group them otherwise
    )
    assert [as_text(p) for p in by_triton.as_numpy("predictions")] == [
        as_text(p) for p in by_kserve.get_output_by_name("predictions").as_numpy()
    ]


# --- refused requests: an exception naming the problem, and the server unharmed --------------------

CLIENTS = ["tritonclient", "kserve"]


def refused_inference(
    server: Server,
    triton: triton_http.InferenceServerClient,
    client: str,
    features: npt.NDArray[np.float32],
    input_name: str = "input",
    outputs: Sequence[str] = (),
    model: str = MODEL,
    version: str = "",
) -> tuple[int, str]:
    """The status and message of the exception each client raises for a refused inference, with each
    client's default encoding of the inputs: binary for tritonclient, JSON for kserve."""
    if client == "tritonclient":
        with pytest.raises(InferenceServerException) as refused:
            triton.infer(
                model,
                triton_inputs(features, name=input_name),
                model_version=version,
                outputs=triton_outputs([(name, True) for name in outputs] or None),
            )
        return int(refused.value.status()), refused.value.message()
    assert not version, "kserve's REST client cannot name a model version"
    request = kserve_request(
        features, False, [(name, False) for name in outputs] or None, name=input_name, model=model
    )
    with pytest.raises(httpx.HTTPStatusError) as failed:
        kserve_infer(server, request)
    return failed.value.response.status_code, str(failed.value)


# (what is wrong, the request's arguments, the words the message must contain)
BAD_REQUESTS: list[tuple[str, dict[str, Any], str]] = [
    ("wrong input name", {"input_name": "pixels"}, "unknown input 'pixels'"),
    ("flattened shape", {"features": DIGITS.features[:1].reshape(1, 64)}, "has shape [1, 64]"),
    ("unknown output", {"outputs": ["logits"]}, "unknown output 'logits'"),
]


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize(
    ("arguments", "message"), [c[1:] for c in BAD_REQUESTS], ids=[c[0] for c in BAD_REQUESTS]
)
def test_a_bad_request_is_refused_naming_the_problem(
    server: Server,
    triton: triton_http.InferenceServerClient,
    client: str,
    arguments: dict[str, Any],
    message: str,
) -> None:
    arguments = {"features": DIGITS.features[:1], **arguments}
    status, refusal = refused_inference(server, triton, client, **arguments)
    assert status == 400 and message in refusal
    assert_healthy(server, triton)


def test_inference_on_an_unknown_version_is_refused_naming_it(
    server: Server, triton: triton_http.InferenceServerClient
) -> None:
    status, message = refused_inference(
        server, triton, "tritonclient", DIGITS.features[:1], version=UNKNOWN_VERSION
    )
    assert status == 404 and UNKNOWN_VERSION in message
    assert_healthy(server, triton)


@pytest.mark.parametrize("client", CLIENTS)
def test_inference_on_an_unknown_model_is_refused_naming_it(
    server: Server, triton: triton_http.InferenceServerClient, client: str
) -> None:
    status, message = refused_inference(server, triton, client, DIGITS.features[:1], model=UNKNOWN_MODEL)
    assert status == 404 and UNKNOWN_MODEL in message
    assert_healthy(server, triton)


# --- a model still loading -------------------------------------------------------------------------


@dataclass
class LoadingServer:
    """An in-process server whose model load waits for `released`: the window a pod spends loading."""

    url: str
    released: threading.Event

    def wait_ready(self, timeout: float = 120) -> None:
        with triton_client(self.url) as client:
            deadline = time.monotonic() + timeout
            while not client.is_server_ready():
                assert time.monotonic() < deadline, "the model never became ready"
                time.sleep(0.1)


@pytest.fixture
def loading_server(registered_digits: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LoadingServer]:
    import uvicorn

    from promoter.serving import app as serving_app
    from promoter.serving.model import ModelIdentity, ServedModel, load
    from promoter.serving.settings import ServeSettings

    # `promoter serve` hands its workers the tracking URI in the environment; mlflow's process-wide
    # URI (set by any test's configure_tracking) wins over it, so point both at this registry.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri(registered_digits))
    configure_tracking(registered_digits)
    released = threading.Event()

    def load_when_released(identity: ModelIdentity) -> ServedModel:
        assert released.wait(timeout=300), "the test never released the model's load"
        return load(identity)

    monkeypatch.setattr(serving_app, "load", load_when_released)
    # torch_threads=0: leave this test process's torch threads as they are
    settings = ServeSettings(model_uri=f"models:/{MODEL}/{VERSION}", torch_threads=0)
    port = free_port()
    uvicorn_server = uvicorn.Server(
        uvicorn.Config(
            serving_app.create_app(settings), host="127.0.0.1", port=port, log_level="warning", ws="none"
        )
    )
    thread = threading.Thread(target=uvicorn_server.run, name="loading-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not uvicorn_server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    server = LoadingServer(f"http://127.0.0.1:{port}", released)
    try:
        yield server
    finally:
        # a load left blocked would hold the event loop's executor, hence the shutdown, forever
        released.set()
        server.wait_ready()
        uvicorn_server.should_exit = True
        thread.join(timeout=60)
    assert not thread.is_alive(), "uvicorn did not stop"


def test_a_loading_model_is_live_but_not_ready_and_refuses_with_still_loading(
    loading_server: LoadingServer,
) -> None:
    url = loading_server.url
    with triton_client(url) as triton:
        assert triton.is_server_live() is True
        assert triton.is_server_ready() is False
        assert triton.is_model_ready(MODEL) is False
        assert triton.is_model_ready(MODEL, VERSION) is False
        assert "binary_tensor_data" in triton.get_server_metadata()["extensions"]
        refused_calls: list[Callable[[], object]] = [
            lambda: triton.get_model_metadata(MODEL),
            lambda: triton.get_model_metadata(MODEL, VERSION),
            lambda: triton.infer(MODEL, triton_inputs(DIGITS.features[:1])),
            lambda: triton.infer(MODEL, triton_inputs(DIGITS.features[:1], binary=False)),
        ]
        for call in refused_calls:
            with pytest.raises(InferenceServerException) as refused:
                call()
            assert refused.value.status() == "503" and "still loading" in refused.value.message()

    assert kserve_call(lambda client: client.is_server_live(url)) is True
    # kserve's is_server_ready raises on any status but 2xx, where tritonclient answers False
    with pytest.raises(httpx.HTTPStatusError) as not_ready:
        kserve_call(lambda client: client.is_server_ready(url))
    assert not_ready.value.response.status_code == 503
    assert kserve_call(lambda client: client.is_model_ready(url, MODEL)) is False
    with pytest.raises(httpx.HTTPStatusError) as refused_by_kserve:
        kserve_call(lambda client: client.infer(url, kserve_request(DIGITS.features[:1], False), MODEL))
    assert refused_by_kserve.value.response.status_code == 503
    assert "still loading" in str(refused_by_kserve.value)


def test_once_loaded_the_model_is_ready_and_infers(loading_server: LoadingServer) -> None:
    url = loading_server.url
    with triton_client(url) as triton:
        assert triton.is_server_ready() is False
        loading_server.released.set()
        loading_server.wait_ready()
        assert triton.is_model_ready(MODEL) and triton.is_model_ready(MODEL, VERSION)
        assert triton.get_model_metadata(MODEL)["versions"] == [VERSION]
        result = triton.infer(MODEL, triton_inputs(DIGITS.features[:32]))
        check_answers(32, result.as_numpy("probabilities"), result.as_numpy("predictions"))
    assert kserve_call(lambda client: client.is_server_ready(url)) is True
    assert kserve_call(lambda client: client.is_model_ready(url, MODEL)) is True
    response = kserve_call(
        lambda client: client.infer(url, kserve_request(DIGITS.features[:32], False), MODEL)
    )
    check_answers(
        32,
        response.get_output_by_name("probabilities").as_numpy(),
        response.get_output_by_name("predictions").as_numpy(),
    )
