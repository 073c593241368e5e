"""Blueprint ``explore`` (under ``/v1``): what the web page needs to show the catalogue.

``GET /v1/catalog/details`` tells apart tracks that share a title and artist (the
excerpt and bars of a demo track, an album, a version: the catalogue's own columns).
``GET /v1/map?space=content|cf`` is the catalogue map stored at build time
(:mod:`musicrec.recommender.layout`), compact: coordinates as base64 little-endian
``uint16`` pairs over the unit square, colour groups as base64 ``uint8``, one label per
track. Both routes are declared with :func:`~musicrec.api.openapi.operation` (validated
and documented from :mod:`musicrec.api.models`).
"""

from __future__ import annotations

import base64
import json
import weakref
from typing import Any

import numpy as np
from flask import Blueprint, current_app, jsonify

import musicrec.api.models as m
from musicrec.api.errors import APIError
from musicrec.api.openapi import operation
from musicrec.api.state import LoadedModel
from musicrec.api.v1 import ready
from musicrec.recommender.layout import read_layouts

explore = Blueprint("explore", __name__, url_prefix="/v1")

#: id of a loaded model -> its details table, computed once per model
_DETAILS: dict[int, dict[str, str]] = {}


def _details(loaded: LoadedModel) -> dict[str, str]:
    key = id(loaded)
    if key not in _DETAILS:
        _DETAILS[key] = loaded.recommender.catalog.details()
        weakref.finalize(loaded, _DETAILS.pop, key, None)
    return _DETAILS[key]


@operation(explore, "/catalog/details", operation_id="catalogDetails",
           summary="what tells apart tracks that share a title and artist",
           ok={200: (m.CatalogDetails, "only repeated titles")}, errors=(503,))
def catalog_details() -> Any:
    """``{"details": {track_id: text}}`` for every track whose title and artist repeat."""
    loaded = ready()
    out: m.CatalogDetails = {"details": _details(loaded)}
    return jsonify(out)


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


@operation(explore, "/map", operation_id="catalogueMap",
           summary="the catalogue as a 2-D map, stored at build time", query=m.MapQuery,
           ok={200: (m.CatalogueMap, "the map")}, errors=(400, 409, 503))
def catalogue_map(query: m.MapQuery) -> Any:
    """The catalogue map of one space (see the module docstring for the encoding)."""
    loaded = ready()
    return current_app.response_class(map_payload(loaded, query.space),
                                      mimetype="application/json")
