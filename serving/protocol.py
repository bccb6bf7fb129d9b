"""Request and response codecs: promoter's JSON API and the Open Inference Protocol (KServe V2).

Bodies are parsed with orjson straight into numpy (no pydantic, no pandas on the hot path). Every
malformed input raises `ProtocolError` with a status and a message that names the problem; nothing
a client sends may surface as a 5xx.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from promoter.pipelines.packaging import REAL_NUMBER_KINDS, InputError, ModelBundle

# V2 tensor datatypes we accept as numeric input, and their numpy equivalents.
V2_DATATYPES = {
    "FP16": np.float16, "FP32": np.float32, "FP64": np.float64,
    "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
    "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
}  # fmt: skip


class ProtocolError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def parse_json(body: bytes) -> Any:
    if not body:
        raise ProtocolError(400, "empty request body: expected JSON")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(400, f"request body is not valid JSON: {exc}") from None


def _as_array(values: Any, where: str) -> npt.NDArray[Any]:
    if not isinstance(values, list) or not values:
        raise ProtocolError(422, f"{where} must be a non-empty array")
    try:
        array = np.asarray(values)
    except (ValueError, TypeError, OverflowError):
        raise ProtocolError(422, f"{where} is ragged: every row must have the same shape") from None
    if array.dtype.kind not in REAL_NUMBER_KINDS:
        raise ProtocolError(422, f"{where} must contain only numbers")
    return array


def validated(bundle: ModelBundle, array: npt.NDArray[Any], max_rows: int) -> npt.NDArray[np.float32]:
    if array.ndim >= 1 and len(array) > max_rows:
        raise ProtocolError(413, f"{len(array)} inputs in one request; the limit is {max_rows}")
    flat_width = math.prod(bundle.manifest.input_shape)
    if array.ndim == 2 and array.shape[1] == flat_width and len(bundle.manifest.input_shape) > 1:
        array = array.reshape(len(array), *bundle.manifest.input_shape)  # flattened rows are accepted too
    with np.errstate(over="ignore"):  # float64 beyond float32's range becomes inf, then is refused
        try:
            return bundle.validate(array)
        except InputError as exc:
            raise ProtocolError(422, str(exc)) from None


# --- promoter's JSON API -------------------------------------------------------------------------

PREDICT_REQUEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["inputs"],
    "properties": {
        "inputs": {
            "type": "array",
            "minItems": 1,
            "description": "A batch: each item is one input of the model's shape, or that input flattened.",
            "items": {"type": "array", "items": {}},
        }
    },
}


def parse_predict(document: Any, bundle: ModelBundle, max_rows: int) -> npt.NDArray[np.float32]:
    if not isinstance(document, dict) or "inputs" not in document:
        raise ProtocolError(422, "expected a JSON object with an 'inputs' array")
    return validated(bundle, _as_array(document["inputs"], "'inputs'"), max_rows)


def predict_response(
    probabilities: npt.NDArray[np.float32], bundle: ModelBundle, model: dict[str, str | None]
) -> bytes:
    classes = np.asarray(bundle.manifest.class_names)
    return orjson.dumps(
        {
            "predictions": classes[probabilities.argmax(axis=1)].tolist(),
            "probabilities": probabilities,
            "model": model,
        },
        option=orjson.OPT_SERIALIZE_NUMPY,
    )


# --- Open Inference Protocol (KServe V2) ---------------------------------------------------------

V2_INFER_REQUEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["inputs"],
    "properties": {
        "id": {"type": "string"},
        "parameters": {"type": "object"},
        "inputs": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["name", "shape", "datatype", "data"],
                "properties": {
                    "name": {"type": "string"},
                    "shape": {"type": "array", "items": {"type": "integer"}},
                    "datatype": {"type": "string"},
                    "data": {"type": "array"},
                    "parameters": {"type": "object"},
                },
            },
        },
        "outputs": {"type": "array", "items": {"type": "object"}},
    },
}


def parse_v2_infer(
    document: Any, bundle: ModelBundle, max_rows: int
) -> tuple[npt.NDArray[np.float32], str | None]:
    if (
        not isinstance(document, dict)
        or not isinstance(document.get("inputs"), list)
        or not document["inputs"]
    ):
        raise ProtocolError(400, "expected an object with a non-empty 'inputs' list of tensors")
    if len(document["inputs"]) != 1:
        raise ProtocolError(400, f"this model takes exactly one input tensor, got {len(document['inputs'])}")
    tensor = document["inputs"][0]
    if not isinstance(tensor, dict):
        raise ProtocolError(400, "each input must be a tensor object with name, shape, datatype and data")
    missing = [key for key in ("name", "shape", "datatype", "data") if key not in tensor]
    if missing:
        raise ProtocolError(400, f"input tensor is missing {', '.join(missing)}")
    shape, datatype = tensor["shape"], tensor["datatype"]
    if not isinstance(shape, list) or not shape or not all(type(d) is int and d >= 0 for d in shape):
        raise ProtocolError(400, f"input shape must be a list of non-negative integers, got {shape!r}")
    if datatype not in V2_DATATYPES:
        raise ProtocolError(
            400, f"unsupported datatype {datatype!r}; numeric types only ({', '.join(V2_DATATYPES)})"
        )
    if shape[0] > max_rows:
        raise ProtocolError(413, f"{shape[0]} inputs in one request; the limit is {max_rows}")
    data = _as_array(tensor["data"], "input 'data'")
    if data.size != math.prod(shape):
        raise ProtocolError(
            400, f"input 'data' has {data.size} elements but shape {shape} needs {math.prod(shape)}"
        )
    request_id = document.get("id")
    return validated(bundle, data.reshape(shape), max_rows), request_id if isinstance(
        request_id, str
    ) else None


def v2_infer_response(
    probabilities: npt.NDArray[np.float32], name: str, version: str | None, request_id: str | None
) -> bytes:
    response: dict[str, Any] = {
        "model_name": name,
        "model_version": version,
        "outputs": [
            {
                "name": "probabilities",
                "shape": list(probabilities.shape),
                "datatype": "FP32",
                "data": probabilities.ravel(),
            }
        ],
    }
    if request_id is not None:
        response["id"] = request_id
    return orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY)
