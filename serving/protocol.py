"""Request codecs shared by the server's APIs, and promoter's own JSON API (`/predict`).

Bodies are parsed with orjson straight into numpy (no pydantic, no pandas on the hot path). Every
malformed input raises `ProtocolError` with a status and a message that names the problem; nothing
a client sends may surface as a 5xx. The Open Inference Protocol's codec is `open_inference`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from promoter.pipelines.packaging import REAL_NUMBER_KINDS, InputError, ModelBundle


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


def as_array(values: Any, where: str) -> npt.NDArray[Any]:
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
    return validated(bundle, as_array(document["inputs"], "'inputs'"), max_rows)


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
