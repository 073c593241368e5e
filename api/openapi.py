"""Routes declared once: :func:`operation` registers a view, validates its request against
typed models (:mod:`musicrec.api.models`) and records it for the OpenAPI 3.1 document.

:func:`openapi_document` builds the document from what an app actually serves: each of
its routes that was declared with :func:`operation`, with the JSON Schemas that pydantic
generates from the same models the views are validated with and answer in. The tests run
schemathesis against it, so the document and the code cannot drift apart silently.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from flask import Blueprint, Flask, current_app, request
from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import JsonSchemaMode

from musicrec import __version__
from musicrec.api.errors import APIError
from musicrec.api.models import Error, bounded, field_schemas, parse, parse_query

F = TypeVar("F", bound=Callable[..., Any])

#: What each error status means, in the document.
ERROR_TEXT = {
    400: "a bad parameter", 401: "a missing or wrong admin token",
    404: "an unknown id (or the admin endpoint is off)",
    409: "the model cannot answer this request (e.g. users on a content-only model), or a "
         "reload was refused",
    413: "the upload is too large or too long", 415: "an unsupported media type",
    416: "a byte range outside the file (Content-Range: bytes */size)",
    422: "audio that cannot be decoded", 503: "no model is loaded"}

#: Descriptions of the path parameters, by name.
PATH_PARAMS = {"track_id": "a catalogue track id", "user_id": "a user id of the listening logs"}


@dataclass(frozen=True)
class Operation:
    """One route as the document states it.

    ``responses`` maps a status to (shape, description): a shape is a response model (a
    ``TypedDict``), or ``{media type: JSON Schema}`` for a body that is not JSON.
    ``request_body``, for a body that is not a model (an audio upload), gives the
    document's ``requestBody`` from the app's config.
    """

    operation_id: str
    summary: str
    method: str
    responses: Mapping[int, tuple[Any, str]]
    errors: tuple[int, ...] = ()
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    request_body: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None
    admin: bool = False
    path_params: Mapping[str, str] = field(default_factory=dict)


#: Every declared route, by Flask endpoint (``"v1.similar"``).
OPERATIONS: dict[str, Operation] = {}


def operation(bp: Blueprint, rule: str, *, operation_id: str, summary: str,
              ok: Mapping[int, tuple[Any, str]], errors: tuple[int, ...] = (),
              method: str = "GET", query: type[BaseModel] | None = None,
              body: type[BaseModel] | None = None,
              request_body: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None,
              admin: bool = False, path_params: Mapping[str, str] | None = None
              ) -> Callable[[F], F]:
    """Register the decorated view on ``bp`` at ``rule`` and declare it for the document.

    With ``query`` (a :class:`~musicrec.api.models.Query` model) the view receives
    ``query=``, the validated query string; with ``body``, ``body=``, the validated JSON
    body (415 for another media type). A bad value is a 400 that names it, before the
    view runs. ``n`` is bounded by the app's ``MAX_N``. ``admin`` routes are documented
    only when the app has an ``ADMIN_TOKEN``.
    """
    def register(view: F) -> F:
        OPERATIONS[f"{bp.name}.{view.__name__}"] = Operation(
            operation_id, summary, method, ok, errors, query, body, request_body, admin,
            {**PATH_PARAMS, **(path_params or {})})
        if query is None and body is None:
            bp.add_url_rule(rule, view.__name__, view, methods=[method])
            return view

        @functools.wraps(view)
        def validated(**kwargs: Any) -> Any:
            max_n = current_app.config["MAX_N"]
            if query is not None:
                kwargs["query"] = parse_query(bounded(query, max_n), request.args)
            if body is not None:
                kwargs["body"] = parse(bounded(body, max_n), json_body())
            return view(**kwargs)

        bp.add_url_rule(rule, view.__name__, validated, methods=[method])
        return view

    return register


def json_body() -> bytes:
    """The raw body of a JSON request; 415 for any other media type."""
    if not request.is_json:
        raise APIError(415, "unsupported_media_type",
                       f"Content-Type {request.mimetype or '(none)'!r} is not supported; "
                       "send application/json")
    return request.get_data()


# -- the document ---------------------------------------------------------------------------
def openapi_document(app: Flask) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``app``: every route of it declared with
    :func:`operation` (the admin route only with an ``ADMIN_TOKEN``), with ``n`` bounded
    by its ``MAX_N``. Built once per app."""
    cached: dict[str, Any] | None = app.extensions.get("musicrec.openapi")
    if cached is None:
        cached = app.extensions["musicrec.openapi"] = _build(app)
    return cached


def _build(app: Flask) -> dict[str, Any]:
    config = app.config
    max_n = int(config["MAX_N"])
    routes = [(rule.rule, OPERATIONS[rule.endpoint]) for rule in app.url_map.iter_rules()
              if rule.endpoint in OPERATIONS]
    routes = [(path, op) for path, op in routes if not op.admin or config["ADMIN_TOKEN"]]
    shapes: dict[Any, tuple[JsonSchemaMode, Any]] = {Error: ("serialization", Error)}
    for _, op in routes:
        for shape, _text in op.responses.values():
            if not isinstance(shape, dict):
                shapes[shape] = ("serialization", shape)
        if op.body is not None:
            shapes[op.body] = ("validation", bounded(op.body, max_n))
    refs, defs = TypeAdapter.json_schemas(
        [(key, mode, TypeAdapter(model)) for key, (mode, model) in shapes.items()],
        ref_template="#/components/schemas/{model}")

    def content(shape: Any, description: str) -> dict[str, Any]:
        media = shape if isinstance(shape, dict) else {
            "application/json": refs[(shape, shapes[shape][0])]}
        return {"description": description,
                "content": {kind: {"schema": schema} for kind, schema in media.items()}}

    paths: dict[str, Any] = {}
    for rule, op in routes:
        path = rule.replace("<path:", "{").replace("<", "{").replace(">", "}")
        item: dict[str, Any] = {"operationId": op.operation_id, "summary": op.summary}
        names = [part[1:-1] for part in path.split("/") if part.startswith("{")]
        parameters = [{"name": name, "in": "path", "required": True,
                       "schema": {"type": "string", "minLength": 1},
                       "description": op.path_params[name]} for name in names]
        if op.query is not None:
            parameters += _query_parameters(bounded(op.query, max_n))
        if parameters:
            item["parameters"] = parameters
        if op.body is not None:
            item["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": refs[(op.body, "validation")]}}}
        elif op.request_body is not None:
            item["requestBody"] = op.request_body(config)
        if op.admin:
            item["security"] = [{"adminToken": []}]
        item["responses"] = {
            **{str(status): content(shape, text) for status, (shape, text)
               in op.responses.items()},
            **{str(status): content(Error, ERROR_TEXT[status]) for status in op.errors},
            "default": content(Error, "any other error (always JSON)")}
        paths.setdefault(path, {})[op.method.lower()] = item
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "musicrec", "version": __version__,
                 "description": "Music recommendations: user recommendations, similar "
                                "tracks blending listening data and audio, query by "
                                "example. Every error is JSON: {\"error\": code, "
                                "\"message\": text}."},
        "paths": paths,
        "components": {"schemas": defs.get("$defs", {})},
    }
    if any(op.admin for _, op in routes):
        doc["components"]["securitySchemes"] = {"adminToken": {"type": "http",
                                                               "scheme": "bearer"}}
    return doc


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    required = model.model_json_schema().get("required", [])
    out = []
    for name, schema in field_schemas(model).items():
        out.append({"name": name, "in": "query", "required": name in required,
                    "schema": {k: v for k, v in schema.items()
                               if k not in ("title", "description")},
                    "description": schema.get("description", name)})
    return out
