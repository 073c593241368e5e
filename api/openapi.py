"""The OpenAPI 3.1 document of the API, written by hand as a Python dict.

:func:`openapi_document` describes every route, parameter and response; the tests run
schemathesis against it, so the document and the views cannot drift apart silently.
"""

from __future__ import annotations

from typing import Any

from musicrec import __version__

# The limits that the document states and :mod:`musicrec.api.v1` enforces.
#: Largest ``offset`` of a page.
MAX_OFFSET = 10**9
#: Largest ``limit`` of a page of tracks, and of users.
MAX_TRACK_PAGE, MAX_USER_PAGE = 100, 1000
#: Largest play count of one track in ``POST /v1/recommendations``.
MAX_PLAYS = 1e9
#: Largest ``max_per_artist``.
MAX_PER_ARTIST = 1000


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    text = {400: "a bad parameter", 401: "a missing or wrong admin token",
            404: "an unknown id (or the admin endpoint is off)",
            409: "the model cannot answer this request (e.g. users on a content-only "
                 "model), or a reload was refused",
            413: "the upload is too large or too long", 415: "an unsupported media type",
            416: "a byte range outside the file (Content-Range: bytes */size)",
            422: "audio that cannot be decoded", 503: "no model is loaded"}
    out = {str(s): _json(_ref("Error"), text[s]) for s in statuses}
    out["default"] = _json(_ref("Error"), "any other error (always JSON)")
    return out


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}


def _path(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True,
            "schema": {"type": "string", "minLength": 1}, "description": description}


def openapi_document(*, max_n: int = 100, max_upload_bytes: int = 10 * 1024 * 1024,
                     admin: bool = False) -> dict[str, Any]:
    """The OpenAPI 3.1 document; ``admin`` adds the reload endpoint (on with a token)."""
    n = _query("n", {"type": "integer", "minimum": 1, "maximum": max_n, "default": 10},
               "number of results")
    max_per_artist = _query("max_per_artist", {"type": "integer", "minimum": 1,
                                               "maximum": MAX_PER_ARTIST},
                            "at most this many results by one artist")
    offset = _query("offset", {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET,
                               "default": 0}, "first result of the page")
    page = [offset, _query("limit", {"type": "integer", "minimum": 1,
                                     "maximum": MAX_TRACK_PAGE, "default": 20},
                           "results per page")]
    user_page = [offset, _query("limit", {"type": "integer", "minimum": 1,
                                          "maximum": MAX_USER_PAGE, "default": 20},
                                "user ids per page")]
    track_id = _path("track_id", "a catalogue track id")
    nullable_str = {"type": ["string", "null"]}
    schemas: dict[str, Any] = {
        "Error": {"type": "object", "required": ["error", "message"],
                  "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
                  "additionalProperties": False},
        "UserHistory": {
            "type": "object", "required": ["user_id", "total", "results"],
            "properties": {
                "user_id": {"type": "string"},
                "total": {"type": "integer", "minimum": 0,
                          "description": "tracks the user played in all"},
                "results": {"type": "array", "items": {"allOf": [
                    _ref("TrackSummary"),
                    {"type": "object", "required": ["plays"],
                     "properties": {"plays": {"type": "number", "exclusiveMinimum": 0}}}]}}}},
        "TrackSummary": {
            "type": "object", "required": ["track_id", "title", "artist", "audio_url"],
            "properties": {"track_id": {"type": "string"}, "title": {"type": "string"},
                           "artist": {"type": "string"}, "audio_url": nullable_str}},
        "Track": {
            "allOf": [_ref("TrackSummary"), {
                "type": "object", "required": ["has_content", "listeners"],
                "properties": {"has_content": {"type": "boolean"},
                               "listeners": {"type": "integer", "minimum": 0}},
                "description": "every other catalogue column is passed through"}]},
        "Recommendation": {
            "allOf": [_ref("TrackSummary"), {
                "type": "object",
                "required": ["score", "kind", "reason", "because", "because_title"],
                "properties": {
                    "score": {"type": "number"},
                    "kind": {"type": "string", "enum": ["cf", "content", "played-content",
                                                        "hybrid", "popular", "fingerprint",
                                                        "radio-content"]},
                    "reason": {"type": "string",
                               "description": "the reason, with track titles"},
                    "because": nullable_str, "because_title": nullable_str}}]},
        "Results": {"type": "array", "items": _ref("Recommendation")},
        "UserRecommendations": {
            "type": "object", "required": ["user_id", "results"],
            "properties": {"user_id": {"type": "string"}, "results": _ref("Results")}},
        "SimilarTracks": {
            "type": "object", "required": ["track_id", "alpha", "results"],
            "properties": {"track_id": {"type": "string"},
                           "alpha": {"type": ["number", "null"]},
                           "results": _ref("Results")}},
        "Radio": {
            "type": "object", "required": ["radio", "cursor", "exhausted", "results"],
            "properties": {
                "radio": {"type": "object", "required": ["seeds", "source", "played"],
                          "properties": {"seeds": {"type": "array",
                                                   "items": {"type": "string"}},
                                         "source": {"type": "string"},
                                         "played": {"type": "integer", "minimum": 0},
                                         "params": {"type": "object"}}},
                "cursor": {"type": "string",
                           "description": "pass it back as ?cursor= for the next tracks"},
                "exhausted": {"type": "boolean",
                              "description": "no further track within the radio's reach"},
                "results": _ref("Results")}},
        "ListenerRequest": {
            "type": "object", "required": ["tracks"], "additionalProperties": False,
            "properties": {
                "tracks": {"type": "array", "minItems": 1, "maxItems": 10000,
                           "items": {"type": "string"}},
                "plays": {"type": "array", "minItems": 1, "maxItems": 10000,
                          "items": {"type": "number", "exclusiveMinimum": 0,
                                    "maximum": MAX_PLAYS},
                          "description": "play counts, one per entry of tracks"},
                "n": {"type": "integer", "minimum": 1, "maximum": max_n, "default": 10},
                "exclude": {"type": "array", "maxItems": 10000, "items": {"type": "string"}},
                "max_per_artist": {"type": ["integer", "null"], "minimum": 1,
                                   "maximum": MAX_PER_ARTIST}}},
        "ListenerRecommendations": {"type": "object", "required": ["results"],
                                    "properties": {"results": _ref("Results")}},
        "AudioQuery": {
            "type": "object", "required": ["match", "results"],
            "properties": {
                "match": {"type": ["object", "null"],
                          "description": "the identified catalogue recording (track_id, "
                                         "offset_s, confidence, title), if fingerprints "
                                         "matched"},
                "results": _ref("Results")}},
        "SearchPage": {
            "type": "object", "required": ["q", "total", "offset", "limit", "results"],
            "properties": {"q": {"type": "string"},
                           "total": {"type": "integer", "minimum": 0},
                           "offset": {"type": "integer"}, "limit": {"type": "integer"},
                           "results": {"type": "array", "items": _ref("TrackSummary")}}},
        "TextSearch": {
            "type": "object",
            "required": ["q", "weak_match", "text_encoder", "parts", "results"],
            "properties": {
                "q": {"type": "string"},
                "weak_match": {"type": "boolean",
                               "description": "true when no word of q is close to a tag: "
                                              "the ranking is then a guess"},
                "text_encoder": {"type": "string"},
                "parts": {"type": "array", "items": {
                    "type": "object",
                    "required": ["text", "best_tag", "cosine", "matched", "tags"],
                    "properties": {"text": {"type": "string"}, "best_tag": {"type": "string"},
                                   "cosine": {"type": "number"},
                                   "matched": {"type": "boolean"},
                                   "tags": {"type": "object", "additionalProperties": {
                                       "type": "number"}}}},
                    "description": "the whole query and each word, with the tags they "
                                   "matched and their weights"},
                "results": {"type": "array", "items": {"allOf": [_ref("TrackSummary"), {
                    "type": "object", "required": ["score", "reason", "tags"],
                    "properties": {"score": {"type": "number"},
                                   "reason": {"type": "string",
                                              "description": "e.g. \"tagged piano, quiet\""},
                                   "tags": {"type": "object", "additionalProperties": {
                                       "type": "number"},
                                       "description": "the track's most probable tags"}}}]}}}},
        "UserPage": {
            "type": "object", "required": ["total", "offset", "limit", "users"],
            "properties": {"total": {"type": "integer", "minimum": 0},
                           "offset": {"type": "integer"}, "limit": {"type": "integer"},
                           "users": {"type": "array", "items": {"type": "string"}}}},
        "Model": {
            "type": "object", "required": ["model_dir", "kind", "loaded_at", "manifest"],
            "properties": {"model_dir": {"type": "string"},
                           "kind": {"type": "string", "enum": ["hybrid", "cf", "content"]},
                           "loaded_at": {"type": "number"},
                           "manifest": {"type": "object"}}},
        "Health": {"type": "object", "required": ["status"],
                   "properties": {"status": {"type": "string", "enum": ["ok"]}}},
        "Ready": {"type": "object", "required": ["status", "kind", "tracks"],
                  "properties": {"status": {"type": "string", "enum": ["ready"]},
                                 "kind": {"type": "string"},
                                 "tracks": {"type": "integer", "minimum": 0}}},
        "Reload": {"type": "object", "required": ["status"],
                   "properties": {"status": {"type": "string",
                                             "enum": ["reloaded", "reloading"]},
                                  "kind": {"type": "string"}, "tracks": {"type": "integer"},
                                  "model_dir": {"type": "string"}}},
    }
    audio_body = {"type": "string", "contentMediaType": "application/octet-stream"}
    paths: dict[str, Any] = {
        "/healthz": {"get": {"operationId": "healthz", "summary": "the process is alive",
                             "responses": {"200": _json(_ref("Health"), "alive"),
                                           **_errors()}}},
        "/readyz": {"get": {"operationId": "readyz", "summary": "the model is loaded",
                            "responses": {"200": _json(_ref("Ready"), "ready"),
                                          **_errors(503)}}},
        "/v1/model": {"get": {"operationId": "getModel", "summary": "the model's manifest",
                              "responses": {"200": _json(_ref("Model"), "the manifest"),
                                            **_errors(503)}}},
        "/v1/users": {"get": {
            "operationId": "listUsers", "summary": "user ids of the listening logs, paged",
            "parameters": user_page,
            "responses": {"200": _json(_ref("UserPage"), "one page"), **_errors(400, 503)}}},
        "/v1/users/{user_id}/recommendations": {"get": {
            "operationId": "recommendForUser",
            "summary": "recommendations for a user of the listening logs",
            "parameters": [_path("user_id", "a user id of the listening logs"), n,
                           _query("exclude_played", {"type": "boolean", "default": True},
                                  "leave out tracks the user played"),
                           max_per_artist],
            "responses": {"200": _json(_ref("UserRecommendations"), "best first"),
                          **_errors(400, 404, 409, 503)}}},
        "/v1/users/{user_id}/history": {"get": {
            "operationId": "userHistory",
            "summary": "a user's most-played tracks in the listening logs",
            "parameters": [_path("user_id", "a user id of the listening logs"), n],
            "responses": {"200": _json(_ref("UserHistory"), "most played first"),
                          **_errors(400, 404, 409, 503)}}},
        "/v1/recommendations": {"post": {
            "operationId": "recommendForListener",
            "summary": "recommendations for a listener who is not in the data",
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": _ref("ListenerRequest")}}},
            "responses": {"200": _json(_ref("ListenerRecommendations"), "best first"),
                          **_errors(400, 404, 409, 413, 415, 503)}}},
        "/v1/tracks": {"get": {
            "operationId": "searchTracks",
            "summary": "tracks whose title or artist contains every word of q",
            "parameters": [_query("q", {"type": "string", "maxLength": 200},
                                  "words to search for (empty: every track)"), *page],
            "responses": {"200": _json(_ref("SearchPage"), "one page, catalogue order"),
                          **_errors(400, 503)}}},
        "/v1/tracks/{track_id}": {"get": {
            "operationId": "getTrack", "summary": "one track", "parameters": [track_id],
            "responses": {"200": _json(_ref("Track"), "its metadata"),
                          **_errors(404, 503)}}},
        "/v1/tracks/{track_id}/similar": {"get": {
            "operationId": "similarTracks", "summary": "tracks similar to a seed track",
            "parameters": [
                track_id, n,
                _query("alpha", {"type": "number", "minimum": 0, "maximum": 1},
                       "0 = listeners also played, 1 = sounds like (default 0.5 on a "
                       "hybrid model)"),
                max_per_artist],
            "responses": {"200": _json(_ref("SimilarTracks"), "best first"),
                          **_errors(400, 404, 409, 503)}}},
        "/v1/tracks/{track_id}/audio": {"get": {
            "operationId": "trackAudio",
            "summary": "the track's audio (supports HTTP range requests)",
            "parameters": [track_id],
            "responses": {
                "200": {"description": "the audio file",
                        "content": {"audio/*": {"schema": audio_body}}},
                "206": {"description": "a byte range of the audio file",
                        "content": {"audio/*": {"schema": audio_body}}},
                **_errors(404, 416, 503)}}},
        "/v1/radio": {"get": {
            "operationId": "radio",
            "summary": "an endless, varied playlist from seed tracks, an artist or a user; "
                       "continue it with the returned cursor",
            "parameters": [
                _query("seed", {"type": "array", "items": {"type": "string"}, "maxItems": 50},
                       "seed track ids (repeat the parameter)"),
                _query("artist", {"type": "string"}, "seed with this artist's tracks"),
                _query("user", {"type": "string"},
                       "seed with this user's most played tracks (when no other seeds)"),
                _query("cursor", {"type": "string"},
                       "continue the radio that returned this cursor"),
                n,
                _query("alpha", {"type": "number", "minimum": 0, "maximum": 1},
                       "0 = listeners also played, 1 = sounds like"),
                _query("variety", {"type": "number", "minimum": 0, "maximum": 1,
                                   "default": 0.1},
                       "0 = always the closest next track; higher spreads out (MMR)"),
                _query("popularity", {"type": "number", "minimum": 0, "maximum": 1,
                                      "default": 0.5},
                       "weight of the prior for tracks many listeners played (0 = none)"),
                _query("random_seed", {"type": "integer", "minimum": 0,
                                       "maximum": 2**31 - 1, "default": 0},
                       "the same number gives the same radio")],
            "responses": {"200": _json(_ref("Radio"), "the next tracks, in play order"),
                          **_errors(400, 404, 409, 503)}}},
        "/v1/similar": {"post": {
            "operationId": "similarToAudio",
            "summary": "query by example: catalogue tracks that sound like an uploaded clip",
            "parameters": [n],
            "requestBody": {"required": True, "content": {
                "multipart/form-data": {"schema": {
                    "type": "object", "required": ["audio"],
                    "properties": {"audio": {"type": "string",
                                             "contentMediaType": "application/octet-stream"}}}},
                "audio/wav": {"schema": audio_body},
                "application/octet-stream": {"schema": audio_body}},
                "description": f"at most {max_upload_bytes} bytes"},
            "responses": {"200": _json(_ref("AudioQuery"), "the match and the neighbours"),
                          **_errors(400, 409, 413, 415, 422, 503)}}},
        "/v1/search": {"get": {
            "operationId": "searchByWords",
            "summary": "tracks that fit a description (\"calm piano\"), zero-shot through "
                       "their tag probabilities (a model built with a musicnn embedder)",
            "parameters": [
                {**_query("q", {"type": "string", "minLength": 1, "maxLength": 200},
                          "words describing the music"), "required": True},
                n, max_per_artist,
                _query("tau", {"type": "number", "minimum": 0.001, "maximum": 10},
                       "softmax temperature over query-to-tag cosines (default 0.05)"),
                _query("text_encoder", {"type": "string", "enum": ["minilm", "wordllama"]},
                       "text model (default minilm)")],
            "responses": {"200": _json(_ref("TextSearch"), "best first"),
                          **_errors(400, 409, 503)}}},
    }
    from musicrec.api.explore import explore_openapi  # the web page's routes (explore.py)

    explore_paths, explore_schemas = explore_openapi()
    paths.update(explore_paths)
    schemas.update(explore_schemas)
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "musicrec", "version": __version__,
                 "description": "Music recommendations: user recommendations, similar "
                                "tracks blending listening data and audio, query by "
                                "example. Every error is JSON: {\"error\": code, "
                                "\"message\": text}."},
        "paths": paths,
        "components": {"schemas": schemas},
    }
    if admin:
        doc["components"]["securitySchemes"] = {"adminToken": {"type": "http",
                                                               "scheme": "bearer"}}
        paths["/v1/admin/reload"] = {"post": {
            "operationId": "reloadModel",
            "summary": "reload the model directory; a broken one is refused (409) and the "
                       "old model keeps serving",
            "security": [{"adminToken": []}],
            "responses": {"200": _json(_ref("Reload"), "swapped in this process"),
                          "202": _json(_ref("Reload"), "validated; every worker reloads"),
                          **_errors(401, 409, 503)}}}
    return doc
