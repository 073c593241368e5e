"""Blueprint ``explore`` (under ``/v1``): what the web page needs to show the catalogue.

``GET /v1/catalog/details`` tells apart tracks that share a title and artist (the
excerpt and bars of a demo track, an album, a version: the catalogue's own columns).
``GET /v1/map?space=content|cf`` is the catalogue map stored at build time
(:mod:`musicrec.recommender.layout`), compact: coordinates as base64 little-endian
``uint16`` pairs over the unit square, colour groups as base64 ``uint8``, one label per
track. Documented by :func:`explore_openapi`, which :mod:`musicrec.api.openapi` merges in.
"""

from __future__ import annotations

import base64
import json
import weakref
from typing import Any

import numpy as np
from flask import Blueprint, current_app, jsonify, request

from musicrec.api.errors import APIError
from musicrec.api.state import LoadedModel
from musicrec.api.v1 import bad, ready
from musicrec.recommender.layout import SPACES, read_layouts

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


#: Most colour groups of a map (the largest; the rest are "other").
MAX_GROUPS = 11
#: A catalogue column with at most this many values colours the map; else the artist.
COLOUR_COLUMNS = (("style", 30), ("genre", 30))
_MAPS: dict[tuple[int, str], bytes] = {}


def map_payload(loaded: LoadedModel, space: str) -> bytes:
    """The JSON of one space's map (built once per model and space)."""
    key = (id(loaded), space)
    if key in _MAPS:
        return _MAPS[key]
    rec = loaded.recommender
    layouts = read_layouts(loaded.model_dir, len(rec.tracks))
    if space not in layouts:
        have = ", ".join(layouts) or "none"
        raise APIError(409, "model_capability",
                       f"this model has no map of the {space} space (maps: {have}); a model "
                       "built by this version of musicrec has one per space it holds")
    layout = layouts[space]
    ids = rec.tracks.ids[layout.rows].astype(str)
    frame = rec.catalog.frame.set_index("track_id").reindex(ids)
    column = next((c for c, most in COLOUR_COLUMNS if c in frame.columns
                   and 1 < frame[c].nunique() <= most), "artist")
    values = frame[column].fillna("").astype(str).to_numpy()
    names, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    order = np.argsort(-counts, kind="stable")[:MAX_GROUPS]
    groups = [str(names[i]) or "(none)" for i in order]
    code = np.full(len(names), len(groups), dtype=np.uint8)  # the rest: "other"
    code[order] = np.arange(len(order), dtype=np.uint8)
    if len(names) > len(order):
        groups.append("other")
    details = _details(loaded)
    labels = [f"{t} ({details[i]})" if i in details else str(t)
              for i, t in zip(ids, frame["title"].fillna("").astype(str), strict=True)]
    artists = frame["artist"].fillna("").astype(str).tolist()
    quantised = np.round(layout.xy * 65535).astype("<u2")
    body = json.dumps({
        "space": space, "method": layout.method, "n": len(ids), "tracks": len(rec.tracks),
        "colour_by": column, "groups": groups,
        "track_ids": ids.tolist(), "labels": [
            f"{label} — {artist}" if artist and artist != label else label
            for label, artist in zip(labels, artists, strict=True)],
        "group": base64.b64encode(code[inverse].tobytes()).decode(),
        "xy": base64.b64encode(quantised.tobytes()).decode(),
    }, ensure_ascii=False, separators=(",", ":")).encode()
    _MAPS[key] = body
    weakref.finalize(loaded, _MAPS.pop, key, None)
    return body


@explore.get("/map")
def catalogue_map() -> Any:
    """The catalogue map of one space (see the module docstring for the encoding)."""
    space = request.args.get("space", "content")
    if space not in SPACES:
        raise bad(f"space={space!r} must be one of {', '.join(SPACES)}")
    loaded = ready()
    return current_app.response_class(map_payload(loaded, space),
                                      mimetype="application/json")


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
        "CatalogueMap": {
            "type": "object",
            "required": ["space", "method", "n", "tracks", "colour_by", "groups",
                         "track_ids", "labels", "group", "xy"],
            "properties": {
                "space": {"type": "string", "enum": list(SPACES)},
                "method": {"type": "string", "description": "tsne, tsne+placed or pca"},
                "n": {"type": "integer", "minimum": 0, "description": "tracks on the map"},
                "tracks": {"type": "integer", "minimum": 0,
                           "description": "tracks in the model"},
                "colour_by": {"type": "string",
                              "description": "the catalogue column of the groups"},
                "groups": {"type": "array", "items": {"type": "string"},
                           "description": "colour groups, largest first; 'other' last"},
                "track_ids": {"type": "array", "items": {"type": "string"}},
                "labels": {"type": "array", "items": {"type": "string"},
                           "description": "title (detail) — artist, one per track"},
                "group": {"type": "string", "contentEncoding": "base64",
                          "description": "uint8 per track: its index in groups"},
                "xy": {"type": "string", "contentEncoding": "base64",
                       "description": "little-endian uint16 x, y per track; divide by "
                                      "65535 for the unit square"}}},
    }
    paths: dict[str, Any] = {
        "/v1/catalog/details": {"get": {
            "operationId": "catalogDetails",
            "summary": "what tells apart tracks that share a title and artist",
            "responses": {"200": _json(_ref("CatalogDetails"), "only repeated titles"),
                          **_errors(503)}}},
        "/v1/map": {"get": {
            "operationId": "catalogueMap",
            "summary": "the catalogue as a 2-D map, stored at build time",
            "parameters": [{"name": "space", "in": "query", "required": False,
                            "schema": {"type": "string", "enum": list(SPACES),
                                       "default": "content"},
                            "description": "content (sounds like) or cf (listened to by "
                                           "the same people)"}],
            "responses": {"200": _json(_ref("CatalogueMap"), "the map"),
                          **_errors(400, 409, 503)}}},
    }
    return paths, schemas
