"""The inference endpoints as plain ASGI, in front of FastAPI.

FastAPI's per-request machinery (its middleware stack, request object, exit stacks, dependency
solving) costs about as much CPU as the whole rest of a single-input prediction: on the reference
machine a do-nothing FastAPI endpoint spends about 260 us per request where bare uvicorn spends
about 90 us (benchmarks/README.md). So the endpoints that carry the traffic (`/predict` and the V2
`infer` routes) are served here directly: read the body under its limit, hand it to the route's
handler, write the JSON answer. Everything else (probes, metadata, `/metrics`, the OpenAPI document)
stays with FastAPI, which also documents these routes (`document_routes`) so that clients and
schemathesis see one API.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from promoter.serving.protocol import ProtocolError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class InferenceRequest:
    body: bytes
    path: dict[str, str]  # the path template's parameters, e.g. {"name": "digits"}
    headers: list[tuple[bytes, bytes]]  # as ASGI hands them over: names in lower case

    def header(self, name: bytes) -> bytes | None:
        return next((value for key, value in self.headers if key == name), None)


@dataclass(frozen=True, slots=True)
class InferenceAnswer:
    body: bytes
    headers: tuple[tuple[bytes, bytes], ...] = ()  # beyond content type and length
    content_type: bytes = b"application/json"


# A request in, its answer out; a refusal is a ProtocolError, which the router answers {"error": ...}.
Handler = Callable[[InferenceRequest], Awaitable[InferenceAnswer]]

_PARAMETER = re.compile(r"{(\w+)}")
_JSON_CONTENT = (b"content-type", b"application/json")
_ERROR_SCHEMA = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}


@dataclass(frozen=True)
class InferenceRoute:
    path: str  # an OpenAPI path template, e.g. /v2/models/{name}/infer
    summary: str
    request_schema: dict[str, Any]
    handler: Handler
    errors: dict[int, str] = field(default_factory=dict)  # documented statuses beyond 4xx for bad input
    # Also takes Triton's binary tensor data extension: a JSON header, then raw tensors
    binary_header: str | None = None  # the header carrying the JSON header's length

    @property
    def pattern(self) -> re.Pattern[str]:
        return re.compile("^" + _PARAMETER.sub(r"(?P<\1>[^/]+)", self.path) + "$")

    def operation(self) -> dict[str, Any]:
        """The route's OpenAPI operation, as FastAPI would have written it for a declared route."""
        error = {"content": {"application/json": {"schema": _ERROR_SCHEMA}}}
        responses: dict[str, Any] = {"200": {"description": "Class probabilities"}}
        for status, description in {
            400: "Malformed request",
            413: "Request too large",
            422: "Input does not fit the model's signature",
            503: "The model is still loading, or the server is shutting down",
            **self.errors,
        }.items():
            responses[str(status)] = {"description": description, **error}
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in _PARAMETER.findall(self.path)
        ]
        content: dict[str, Any] = {"application/json": {"schema": self.request_schema}}
        if self.binary_header:
            parameters.append(
                {"name": self.binary_header, "in": "header", "required": False, "schema": {"type": "integer"}}
            )
            content["application/octet-stream"] = {"schema": {"type": "string", "format": "binary"}}
        return {
            "summary": self.summary,
            "operationId": re.sub(r"\W+", "_", self.path).strip("_") + "_post",
            "parameters": parameters,
            "requestBody": {"required": True, "content": content},
            "responses": responses,
        }


class InferenceRouter:
    """Answers POSTs to the inference routes itself; hands every other request to `api`."""

    def __init__(self, api: ASGIApp, routes: Sequence[InferenceRoute], max_body_bytes: int) -> None:
        self.api = api
        self._routes = [(route, route.pattern) for route in routes]
        self._max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for route, pattern in self._routes:
                if match := pattern.match(scope["path"]):
                    scope["route"] = route  # the metrics label the request by its template, as for FastAPI's
                    await self._serve(route, match.groupdict(), scope, receive, send)
                    return
        await self.api(scope, receive, send)

    async def _serve(
        self, route: InferenceRoute, parameters: dict[str, str], scope: Scope, receive: Receive, send: Send
    ) -> None:
        try:
            if scope["method"] != "POST":
                raise ProtocolError(405, f"{route.path} accepts POST only, not {scope['method']}")
            body = await read_body(scope, receive, self._max_body_bytes)
            answer = await route.handler(InferenceRequest(body, parameters, scope["headers"]))
            status, payload = 200, answer.body
            headers = [(b"content-type", answer.content_type), *answer.headers]
        except ProtocolError as exc:
            status, payload, headers = exc.status, orjson.dumps({"error": exc.message}), [_JSON_CONTENT]
            if exc.status == 405:
                headers.append((b"allow", b"POST"))
        headers.append((b"content-length", str(len(payload)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole body, refused as soon as it is known to exceed `limit` (declared or streamed)."""
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            raise ProtocolError(413, f"request body of {int(value)} bytes exceeds the limit of {limit}")
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ProtocolError(400, "the client went away before sending the whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise ProtocolError(413, f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
        more = message.get("more_body", False)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def document_routes(app: FastAPI, routes: Sequence[InferenceRoute]) -> None:
    """Add the routes that bypass FastAPI to its OpenAPI document, so `/openapi.json` lists them."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            for route in routes:
                schema["paths"][route.path] = {"post": route.operation()}
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
