"""The inference server as Argo Rollouts runs it: a real `promoter serve` process on loopback."""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from promoter.pipelines.digits import load_digits_v1
from promoter.pipelines.tracking import store_client, tracking_uri

from .conftest import Server

pytestmark = pytest.mark.slow

DIGITS = load_digits_v1()


@pytest.fixture(scope="module")
def server(registered_digits: Path) -> Iterator[Server]:
    running = Server(
        registered_digits,
        "--model-uri",
        "models:/digits@champion",
        "--max-body-bytes",
        "65536",
        "--max-request-inputs",
        "64",
    )
    running.wait_ready()
    yield running
    assert running.stop()


def test_an_alias_is_resolved_once_to_an_exact_version(server: Server, registered_digits: Path) -> None:
    metadata = server.client.get("/metadata").json()
    assert metadata["name"] == "digits" and metadata["version"] == "1"
    assert metadata["model_uri"] == "models:/digits/1"
    assert metadata["requested_uri"] == "models:/digits@champion"
    assert set(metadata["lineage"]) >= {"git.commit", "data.version", "data.sha256", "config.sha256"}
    assert metadata["signature"]["inputs"][0]["shape"] == [-1, 1, 8, 8]

    # the alias moves to a new version: a running pod keeps serving exactly what it announced
    client = store_client(tracking_uri(registered_digits))
    run_id = metadata["run_id"]
    client.create_model_version("digits", f"runs:/{run_id}/model", run_id)
    client.set_registered_model_alias("digits", "champion", "2")
    try:
        assert server.client.get("/metadata").json()["version"] == "1"
        assert server.client.post("/predict", json={"inputs": DIGITS.features[:1].tolist()}).json()[
            "model"
        ] == {"name": "digits", "version": "1"}
    finally:
        client.set_registered_model_alias("digits", "champion", "1")


def test_predict_answers_with_classes_and_probabilities(server: Server) -> None:
    response = server.client.post("/predict", json={"inputs": DIGITS.features[:32].tolist()})
    assert response.status_code == 200
    body = response.json()
    predicted = np.array([int(p) for p in body["predictions"]])
    assert (predicted == DIGITS.labels[:32]).mean() >= 0.9
    probabilities = np.array(body["probabilities"])
    assert probabilities.shape == (32, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-4)
    flat = server.client.post("/predict", json={"inputs": DIGITS.features[:32].reshape(32, 64).tolist()})
    assert flat.json()["predictions"] == body["predictions"]


def test_an_input_gets_the_same_answer_alone_or_in_a_batch(server: Server) -> None:
    # one input and a batch run through different compiled graphs (and micro-batching mixes them)
    batch = server.client.post("/predict", json={"inputs": DIGITS.features[:8].tolist()}).json()
    for row in range(8):
        alone = server.client.post(
            "/predict", json={"inputs": DIGITS.features[row : row + 1].tolist()}
        ).json()
        assert alone["predictions"] == batch["predictions"][row : row + 1]
        np.testing.assert_allclose(alone["probabilities"][0], batch["probabilities"][row], atol=1e-5)


def test_inference_routes_answer_other_methods_with_405(server: Server) -> None:
    for path in ("/predict", "/v2/models/digits/infer", "/v2/models/digits/versions/1/infer"):
        response = server.client.get(path)
        assert response.status_code == 405 and response.headers["allow"] == "POST"
        assert "accepts POST only" in response.json()["error"]
    documented = server.client.get("/openapi.json").json()["paths"]
    assert documented["/predict"]["post"]["requestBody"]["required"] is True
    versioned = documented["/v2/models/{name}/versions/{version}/infer"]["post"]
    assert {(p["in"], p["name"]) for p in versioned["parameters"]} == {
        ("path", "name"),
        ("path", "version"),
        ("header", "Inference-Header-Content-Length"),  # the binary tensor data extension
    }
    assert set(versioned["requestBody"]["content"]) == {"application/json", "application/octet-stream"}


def test_open_inference_protocol(server: Server) -> None:
    assert server.client.get("/v2/health/ready").json() == {"ready": True}
    metadata = server.client.get("/v2/models/digits").json()
    assert metadata["versions"] == ["1"] and metadata["inputs"][0]["datatype"] == "FP32"
    request = {
        "id": "req-7",
        "inputs": [
            {
                "name": "input",
                "shape": [3, 1, 8, 8],
                "datatype": "FP32",
                "data": DIGITS.features[:3].ravel().tolist(),
            }
        ],
    }
    body = server.client.post("/v2/models/digits/infer", json=request).json()
    assert body["model_name"] == "digits" and body["model_version"] == "1" and body["id"] == "req-7"
    output = body["outputs"][0]
    assert output["shape"] == [3, 10] and output["datatype"] == "FP32" and len(output["data"]) == 30
    assert list(np.array(output["data"]).reshape(3, 10).argmax(axis=1)) == list(DIGITS.labels[:3])
    assert server.client.post("/v2/models/digits/versions/1/infer", json=request).status_code == 200
    for path in ("/v2/models/digits/versions/2/infer", "/v2/models/wine/infer"):
        response = server.client.post(path, json=request)
        assert response.status_code == 404 and "is not served here" in response.json()["error"]


def test_every_open_inference_route_with_and_without_a_version(server: Server) -> None:
    assert server.client.get("/v2").json()["extensions"] == ["binary_tensor_data"]
    assert server.client.get("/v2/health/live").json() == {"live": True}
    for prefix in ("/v2/models/digits", "/v2/models/digits/versions/1"):
        metadata = server.client.get(prefix).json()
        assert metadata["name"] == "digits" and metadata["versions"] == ["1"]
        assert metadata["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 1, 8, 8]}]
        assert [o["name"] for o in metadata["outputs"]] == ["probabilities", "predictions"]
        assert server.client.get(f"{prefix}/ready").json() == {"name": "digits", "ready": True}
    # an unknown version or model, an unknown route, a wrong method: the protocol's error object
    for path in (
        "/v2/models/digits/versions/2",
        "/v2/models/digits/versions/2/ready",
        "/v2/models/wine",
        "/v2/models/wine/ready",
        "/v2/models/digits/versions",
        "/v2/nothing-here",
    ):
        response = server.client.get(path)
        assert response.status_code == 404, path
        assert set(response.json()) == {"error"}, path
    response = server.client.post("/v2/models/digits")
    assert response.status_code == 405 and response.headers["allow"] == "GET"
    assert response.json() == {"error": "Method Not Allowed: POST /v2/models/digits"}


def v2_request(rows: int, **extra: Any) -> dict[str, Any]:
    data = DIGITS.features[:rows]
    return {
        "inputs": [
            {"name": "input", "shape": list(data.shape), "datatype": "FP32", "data": data.ravel().tolist()}
        ],
        **extra,
    }


def test_the_outputs_a_request_names_are_the_outputs_it_gets(server: Server) -> None:
    everything = server.client.post("/v2/models/digits/infer", json=v2_request(4)).json()["outputs"]
    assert [o["name"] for o in everything] == ["probabilities", "predictions"]
    assert everything[1] == {
        "name": "predictions",
        "datatype": "BYTES",
        "shape": [4],
        "data": [str(label) for label in DIGITS.labels[:4]],
    }
    only = server.client.post(
        "/v2/models/digits/infer",
        json=v2_request(
            4,
            outputs=[{"name": "predictions", "parameters": {"note": "parameters are accepted"}}],
            parameters={"content_type": "np"},
        ),
    ).json()["outputs"]
    assert only == everything[1:]


def binary_request(inputs: np.ndarray, body: dict[str, Any] | None = None) -> tuple[bytes, dict[str, str]]:
    """A request in Triton's binary tensor data extension: a JSON header, then the raw tensor."""
    raw = inputs.astype("<f4").tobytes()
    header = json.dumps(
        body
        or {
            "inputs": [
                {
                    "name": "input",
                    "shape": list(inputs.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "outputs": [
                {"name": "probabilities", "parameters": {"binary_data": True}},
                {"name": "predictions", "parameters": {"binary_data": True}},
            ],
        }
    ).encode()
    return header + raw, {
        "inference-header-content-length": str(len(header)),
        "content-type": "application/octet-stream",
    }


def test_binary_tensor_data_in_and_out(server: Server) -> None:
    inputs = DIGITS.features[:5]
    body, headers = binary_request(inputs)
    response = server.client.post("/v2/models/digits/infer", content=body, headers=headers)
    assert response.status_code == 200, response.text
    length = int(response.headers["inference-header-content-length"])
    header = json.loads(response.content[:length])
    probabilities_size = header["outputs"][0]["parameters"]["binary_data_size"]
    assert probabilities_size == 5 * 10 * 4 and "data" not in header["outputs"][0]
    binary = response.content[length:]
    probabilities = np.frombuffer(binary[:probabilities_size], dtype="<f4").reshape(5, 10)
    labels, offset = [], probabilities_size
    while offset < len(binary):  # BYTES: a 4-byte little-endian length before each element
        size = int.from_bytes(binary[offset : offset + 4], "little")
        labels.append(binary[offset + 4 : offset + 4 + size].decode())
        offset += 4 + size
    assert labels == [str(label) for label in probabilities.argmax(axis=1)]
    as_json = server.client.post("/v2/models/digits/infer", json=v2_request(5)).json()
    np.testing.assert_allclose(probabilities.ravel(), as_json["outputs"][0]["data"], atol=1e-6)


BINARY_CORPUS: list[tuple[str, bytes, str, str]] = [
    ("header longer than the body", b'{"inputs": []}', "9999", "Inference-Header-Content-Length"),
    ("header length not a number", b'{"inputs": []}', "ten", "Inference-Header-Content-Length"),
    (
        "size does not fit the shape",
        binary_request(DIGITS.features[:1])[0][:-4],
        "",
        "binary_data_size is 256 but only 252 bytes",
    ),
    ("bytes left over", binary_request(DIGITS.features[:1])[0] + b"\0\0\0\0", "", "beyond the inputs"),
    (
        "size not a number",
        json.dumps(
            {
                "inputs": [
                    {
                        "name": "input",
                        "shape": [1, 1, 8, 8],
                        "datatype": "FP32",
                        "parameters": {"binary_data_size": "all"},
                    }
                ]
            }
        ).encode(),
        "",
        "binary_data_size must be a non-negative integer",
    ),
    (
        "size of another datatype",
        json.dumps(
            {
                "inputs": [
                    {
                        "name": "input",
                        "shape": [1, 1, 8, 8],
                        "datatype": "FP64",
                        "parameters": {"binary_data_size": 256},
                    }
                ]
            }
        ).encode()
        + bytes(256),
        "",
        "shape [1, 1, 8, 8] of FP64 needs 512",
    ),
]


@pytest.mark.parametrize(
    ("body", "header_length", "message"), [c[1:] for c in BINARY_CORPUS], ids=[c[0] for c in BINARY_CORPUS]
)
def test_bad_binary_data_gets_a_clear_400(
    server: Server, body: bytes, header_length: str, message: str
) -> None:
    if not header_length:  # the JSON header's own length, as a client computes it
        header_length = str(body.index(b"}]}") + 3)
    response = server.client.post(
        "/v2/models/digits/infer", content=body, headers={"inference-header-content-length": header_length}
    )
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]


GOOD_ROW = DIGITS.features[0].tolist()
V2_OK: dict[str, Any] = {"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": [0.0] * 64}
CORPUS: list[tuple[str, str, bytes | dict[str, Any] | list[Any], int, str]] = [
    ("not json", "/predict", b"{inputs: [", 400, "not valid JSON"),
    ("empty body", "/predict", b"", 400, "empty request body"),
    ("json array", "/predict", [1, 2, 3], 422, "'inputs' array"),
    ("no inputs", "/predict", {"instances": [GOOD_ROW]}, 422, "'inputs' array"),
    ("empty batch", "/predict", {"inputs": []}, 422, "non-empty array"),
    (
        "wrong shape",
        "/predict",
        {"inputs": [[1.0, 2.0, 3.0]]},
        422,
        "expected inputs of shape [batch, 1, 8, 8]",
    ),
    ("one image, no batch", "/predict", {"inputs": GOOD_ROW}, 422, "expected inputs of shape"),
    ("ragged", "/predict", {"inputs": [GOOD_ROW, [[1.0]]]}, 422, "ragged"),
    ("strings", "/predict", {"inputs": [[["a"] * 8] * 8]}, 422, "only numbers"),
    ("booleans", "/predict", {"inputs": [[[[True] * 8] * 8]]}, 422, "only numbers"),
    ("nulls", "/predict", {"inputs": [[[[None] * 8] * 8]]}, 422, "only numbers"),
    (
        "overflow to inf",
        "/predict",
        b'{"inputs": [[[' + b",".join([b"[" + b",".join([b"1e300"] * 8) + b"]"] * 8) + b"]]]}",
        422,
        "NaN or infinity",
    ),
    ("too many inputs", "/predict", {"inputs": [GOOD_ROW] * 65}, 413, "the limit is 64"),
    ("huge number", "/predict", b'{"inputs": [1' + b"0" * 400 + b"]}", 400, "not valid JSON"),
    ("v2 not json", "/v2/models/digits/infer", b"[[[", 400, "not valid JSON"),
    ("v2 no tensors", "/v2/models/digits/infer", {"inputs": []}, 400, "non-empty 'inputs'"),
    (
        "v2 two tensors",
        "/v2/models/digits/infer",
        {"inputs": [V2_OK, V2_OK]},
        400,
        "exactly one input tensor",
    ),
    (
        "v2 missing data",
        "/v2/models/digits/infer",
        {"inputs": [{"name": "input", "shape": [1], "datatype": "FP32"}]},
        400,
        "missing data",
    ),
    (
        "v2 bytes",
        "/v2/models/digits/infer",
        {"inputs": [{**V2_OK, "datatype": "BYTES"}]},
        400,
        "unsupported datatype",
    ),
    (
        "v2 negative shape",
        "/v2/models/digits/infer",
        {"inputs": [{**V2_OK, "shape": [-1, 64]}]},
        400,
        "non-negative integers",
    ),
    (
        "v2 size mismatch",
        "/v2/models/digits/infer",
        {"inputs": [{**V2_OK, "shape": [2, 1, 8, 8]}]},
        400,
        "has 64 elements but shape [2, 1, 8, 8] needs 128",
    ),
    (
        "v2 wrong shape",
        "/v2/models/digits/infer",
        {"inputs": [{**V2_OK, "shape": [1, 64, 1]}]},
        400,
        "input 'input' has shape [1, 64, 1]; the model takes [-1, 1, 8, 8]",
    ),
    (
        "v2 flattened",  # /predict accepts flattened rows; a V2 client states its shape
        "/v2/models/digits/infer",
        {"inputs": [{**V2_OK, "shape": [1, 64]}]},
        400,
        "has shape [1, 64]; the model takes [-1, 1, 8, 8]",
    ),
    (
        "v2 wrong input name",
        "/v2/models/digits/infer",
        {"inputs": [{**V2_OK, "name": "pixels"}]},
        400,
        "unknown input 'pixels': this model's input is 'input'",
    ),
    (
        "v2 unknown output",
        "/v2/models/digits/infer",
        {"inputs": [V2_OK], "outputs": [{"name": "logits"}]},
        400,
        "unknown output 'logits': this model's outputs are probabilities, predictions",
    ),
    (
        "v2 outputs not a list",
        "/v2/models/digits/infer",
        {"inputs": [V2_OK], "outputs": {}},
        400,
        "'outputs'",
    ),
    (
        "v2 output without a name",
        "/v2/models/digits/infer",
        {"inputs": [V2_OK], "outputs": [{}]},
        400,
        "with a 'name'",
    ),
    (
        "v2 parameters not an object",
        "/v2/models/digits/infer",
        {"inputs": [V2_OK], "parameters": [1]},
        400,
        "the request's 'parameters' must be an object",
    ),
    (
        "v2 input parameters not an object",
        "/v2/models/digits/infer",
        {"inputs": [{**V2_OK, "parameters": "x"}]},
        400,
        "an input's 'parameters' must be an object",
    ),
    (
        "v2 binary_data_output not a flag",
        "/v2/models/digits/infer",
        {"inputs": [V2_OK], "parameters": {"binary_data_output": "yes"}},
        400,
        "'binary_data_output' must be true or false",
    ),
    (
        "v2 id not a string",
        "/v2/models/digits/infer",
        {"inputs": [V2_OK], "id": 7},
        400,
        "'id' must be a string",
    ),
    (
        "v2 too many rows",
        "/v2/models/digits/infer",
        {"inputs": [{**V2_OK, "shape": [65, 1, 8, 8]}]},
        413,
        "the limit is 64",
    ),
    ("v2 tensor is a string", "/v2/models/digits/infer", {"inputs": ["x"]}, 400, "tensor object"),
]


@pytest.mark.parametrize(
    ("path", "body", "status", "message"), [c[1:] for c in CORPUS], ids=[c[0] for c in CORPUS]
)
def test_bad_input_gets_a_clear_4xx(server: Server, path: str, body: Any, status: int, message: str) -> None:
    raw = body if isinstance(body, bytes) else None
    response = (
        server.client.post(path, content=raw, headers={"content-type": "application/json"})
        if raw is not None
        else server.client.post(path, json=body)
    )
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    assert server.client.get("/healthz").status_code == 200  # and the worker is still alive


def test_oversize_bodies_are_refused_before_they_are_read(server: Server) -> None:
    response = server.client.post(
        "/predict", content=b"[" + b"0," * 40_000 + b"0]", headers={"content-type": "application/json"}
    )
    assert response.status_code == 413 and "exceeds the limit of 65536" in response.json()["error"]

    def chunks() -> Iterator[bytes]:  # no content-length: the limit holds while streaming
        for _ in range(100):
            yield b" " * 1024

    response = server.client.post("/predict", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413


def metric(text: str, series: str, /, **labels: str) -> float:
    """The sum of a metric's samples whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith((series + "{", series + " ")):
            continue
        if all(f'{key}="{value}"' in line for key, value in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_metrics_describe_traffic_model_and_inputs(server: Server) -> None:
    before = server.client.get("/metrics").text
    server.client.post("/predict", json={"inputs": DIGITS.features[:10].tolist()})
    after = server.client.get("/metrics").text
    assert metric(after, "promoter_model_info", name="digits", version="1") == 1
    assert metric(after, "promoter_ready") == 1
    counted = metric(after, "promoter_predictions_total", model_version="1") - metric(
        before, "promoter_predictions_total", model_version="1"
    )
    assert counted == 10
    assert metric(after, "promoter_request_duration_seconds_count", endpoint="/predict", status="200") >= 1
    assert (
        metric(after, "promoter_input_feature_observations_total")
        - metric(before, "promoter_input_feature_observations_total")
        == 10
    )

    def feature_sum(text: str, feature: str) -> float:
        return metric(text, "promoter_input_feature_positive_sum_total", feature=feature) - metric(
            text, "promoter_input_feature_negative_sum_total", feature=feature
        )

    pixel = feature_sum(after, "20") - feature_sum(before, "20")
    assert pixel == pytest.approx(float(DIGITS.features[:10].reshape(10, -1)[:, 20].sum()))
    assert re.search(r"promoter_forward_batch_size_bucket", after)


def test_several_workers_share_one_view_of_the_metrics(registered_digits: Path) -> None:
    server = Server(registered_digits, "--model-uri", "models:/digits/1", "--workers", "2")
    try:
        server.wait_ready()
        for _ in range(40):  # new connections: the kernel spreads them over both workers
            with httpx.Client(base_url=server.url) as fresh:
                assert (
                    fresh.post("/predict", json={"inputs": DIGITS.features[:1].tolist()}).status_code == 200
                )
        time.sleep(1.5)  # each worker publishes its accumulators once a second
        text = server.client.get("/metrics").text
        assert metric(text, "promoter_request_duration_seconds_count", endpoint="/predict") == 40
        assert metric(text, "promoter_predictions_total") == 40
    finally:
        assert server.stop()


def _can_make_read_only_mounts() -> bool:
    probe = ["unshare", "--mount", "sh", "-c", "mount -o remount,bind,ro /"]
    try:
        return subprocess.run(probe, capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.skipif(not _can_make_read_only_mounts(), reason="needs a private mount namespace (unshare -m)")
def test_the_server_runs_on_a_read_only_root_filesystem(registered_digits: Path, tmp_path: Path) -> None:
    """As the serving pod runs (readOnlyRootFilesystem, TMPDIR on a writable emptyDir): in a private
    mount namespace the root filesystem is read-only, the MLflow store included, except one scratch
    directory. Two workers, so the shared metrics files and readiness marks must live there too."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    read_only = 'mount --bind "$0" "$0" && mount -o remount,bind,ro / && TMPDIR="$0" exec "$@"'
    server = Server(
        registered_digits,
        "--model-uri",
        "models:/digits@champion",
        "--workers",
        "2",
        launcher=("unshare", "--mount", "sh", "-c", read_only, str(scratch)),
    )
    try:
        server.wait_ready()
        answer = server.client.post("/predict", json={"inputs": DIGITS.features[:4].tolist()})
        assert answer.status_code == 200 and len(answer.json()["predictions"]) == 4
        assert "promoter_predictions_total" in server.client.get("/metrics").text
        assert any(scratch.iterdir())  # what it wrote went to TMPDIR
    finally:
        assert server.stop()


def test_sigterm_lets_in_flight_requests_finish(registered_digits: Path) -> None:
    server = Server(registered_digits, "--model-uri", "models:/digits/1", "--inject-latency-ms", "1500")
    server.wait_ready()
    statuses: list[int] = []

    def call() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            statuses.append(
                client.post("/predict", json={"inputs": DIGITS.features[:1].tolist()}).status_code
            )

    callers = [threading.Thread(target=call) for _ in range(4)]
    for caller in callers:
        caller.start()
    time.sleep(0.5)  # the requests are inside the server, sleeping in the injected delay
    assert server.stop()
    for caller in callers:
        caller.join()
    assert statuses == [200, 200, 200, 200]


def test_serving_an_unknown_model_fails_fast_with_a_message(registered_digits: Path) -> None:
    from .conftest import run_cli

    result = run_cli(
        "serve", "--model-uri", "models:/digits@staging", "--workdir", registered_digits, timeout=120
    )
    assert result.returncode == 2 and "cannot resolve 'models:/digits@staging'" in result.stderr
    result = run_cli("serve", "--model-uri", "s3://bucket/model", "--workdir", registered_digits, timeout=120)
    assert result.returncode == 2 and "unsupported model URI" in result.stderr
