"""Blueprint ``explore`` (under ``/v1``): what the web page needs to show the catalogue.

``GET /v1/catalog/details`` tells apart tracks that share a title and artist (the
excerpt and bars of a demo track, an album, a version: the catalogue's own columns).
Documented by :func:`explore_openapi`, which :mod:`musicrec.api.openapi` merges in.
"""

from __future__ import annotations

import weakref
from typing import Any

from flask import Blueprint, jsonify

from musicrec.api.state import LoadedModel
from musicrec.api.v1 import ready

explore = Blueprint("explore", __name__, url_prefix="/v1")

#: id of a loaded model -> its details table, computed once per model
_DETAILS: dict[int, dict[str, str]] = {}


def _details(loaded: LoadedModel) -> dict[str, str]:
    key = id(loaded)
    if key not in _DETAILS:
        _DETAILS[key] = loaded.recommender.catalog.details()
        weakref.finalize(loaded, _DETAILS.pop, key, None)
    return _DETAILS[key]


@explore.get("/catalog/details")
def catalog_details() -> Any:
    """``{"details": {track_id: text}}`` for every track whose title and artist repeat."""
    loaded = ready()
    return jsonify({"details": _details(loaded)})


def explore_openapi() -> tuple[dict[str, Any], dict[str, Any]]:
    """The OpenAPI paths and schemas of this blueprint."""
    from musicrec.api.openapi import _errors, _json, _ref

    schemas: dict[str, Any] = {
        "CatalogDetails": {
            "type": "object", "required": ["details"],
            "properties": {"details": {
                "type": "object", "additionalProperties": {"type": "string"},
                "description": "track id -> what tells it apart from the tracks sharing "
                               "its title and artist (only those are listed)"}}},
    }
    paths: dict[str, Any] = {
        "/v1/catalog/details": {"get": {
            "operationId": "catalogDetails",
            "summary": "what tells apart tracks that share a title and artist",
            "responses": {"200": _json(_ref("CatalogDetails"), "only repeated titles"),
                          **_errors(503)}}},
    }
    return paths, schemas
