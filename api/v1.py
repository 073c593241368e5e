"""Blueprint ``v1``: recommendations, similar tracks, query by example, the catalogue.

Every view takes the model once (:meth:`ModelState.current`) and answers from it, so a
hot reload never mixes two models in one response. Each route is declared with
:func:`~musicrec.api.openapi.operation`: its request is validated against the typed
models of :mod:`musicrec.api.models` before the view runs (errors name the bad value),
and its response is a shape of that module, which the OpenAPI document states.
"""

from __future__ import annotations

import hmac
import logging
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Blueprint, current_app, jsonify, request, url_for

import musicrec.api.models as m
from musicrec.api.errors import APIError, public_manifest
from musicrec.api.media import audio_file, send_audio
from musicrec.api.openapi import operation
from musicrec.api.state import LoadedModel, model_state
from musicrec.errors import MusicrecError, UnknownTrackError
from musicrec.recommender.types import Recommendation

log = logging.getLogger(__name__)

v1 = Blueprint("v1", __name__, url_prefix="/v1")

_AUDIO_TYPES = frozenset({
    "audio/wav", "audio/x-wav", "audio/wave", "audio/flac", "audio/x-flac", "audio/ogg",
    "audio/mpeg", "audio/mp3", "audio/aiff", "audio/x-aiff", "application/octet-stream"})
_AUDIO_BODY = {"type": "string", "contentMediaType": "application/octet-stream"}
_AUDIO = {"audio/*": _AUDIO_BODY}


# -- helpers --------------------------------------------------------------------------------
def bad(message: str) -> APIError:
    return APIError(400, "bad_request", message)


def ready() -> LoadedModel:
    """The model to answer from; 503 when none is loaded or its files changed on disk."""
    loaded = model_state(current_app).current()
    if loaded is None:
        raise APIError(503, "not_ready", "no model is loaded yet")
    problem = loaded.watch.problem()
    if problem is not None:
        raise APIError(503, "not_ready", f"the model cannot answer: {problem}")
    return loaded


#: (id of a loaded model, script root) -> track id -> audio URL or None; one entry per
#: model, dropped when the model is (see :func:`_audio_urls`).
_AUDIO_URLS: dict[tuple[int, str], dict[str, str | None]] = {}


def _audio_urls(loaded: LoadedModel) -> dict[str, str | None]:
    """This model's cache of audio URLs: whether a track has audio is looked up (a
    catalogue row and a file check) once per model, not on every response."""
    key = (id(loaded), request.script_root)
    cache = _AUDIO_URLS.get(key)
    if cache is None:
        cache = _AUDIO_URLS[key] = {}
        weakref.finalize(loaded, _AUDIO_URLS.pop, key, None)
    return cache


def _audio_url(loaded: LoadedModel, track_id: str,
               cache: dict[str, str | None] | None = None) -> str | None:
    """The track's audio URL, or None; ``cache``: :func:`_audio_urls`, if the caller
    already holds it (one lookup per response instead of one per result)."""
    if cache is None:
        cache = _audio_urls(loaded)
    if track_id not in cache:
        cache[track_id] = (url_for("v1.track_audio", track_id=track_id)
                           if audio_file(loaded, track_id) is not None else None)
    return cache[track_id]


def track_json(loaded: LoadedModel, track_id: str) -> m.TrackSummary:
    title, artist = loaded.labels.get(track_id, (track_id, ""))
    return {"track_id": track_id, "title": title, "artist": artist,
            "audio_url": _audio_url(loaded, track_id)}


def recs_json(loaded: LoadedModel, recs: list[Recommendation]) -> list[m.Recommendation]:
    labels, title_of, urls = loaded.labels, loaded.title, _audio_urls(loaded)
    out: list[m.Recommendation] = []
    for r in recs:
        title, artist = labels.get(r.track_id, (r.track_id, ""))
        out.append({"track_id": r.track_id, "title": title, "artist": artist,
                    "audio_url": _audio_url(loaded, r.track_id, urls), "score": r.score,
                    "kind": r.kind,  # type: ignore[typeddict-item]
                    "reason": r.describe(title_of), "because": r.because,
                    "because_title": None if r.because is None else title_of(r.because)})
    return out


def _upload_body(config: Mapping[str, Any]) -> dict[str, Any]:
    return {"required": True, "description": f"at most {config['MAX_UPLOAD_BYTES']} bytes",
            "content": {"multipart/form-data": {"schema": {
                "type": "object", "required": ["audio"],
                "properties": {"audio": _AUDIO_BODY}}},
                "audio/wav": {"schema": _AUDIO_BODY},
                "application/octet-stream": {"schema": _AUDIO_BODY}}}


# -- routes -----------------------------------------------------------------------------------
@operation(v1, "/model", operation_id="getModel", summary="the model's manifest",
           ok={200: (m.Model, "the manifest")}, errors=(503,))
def model_info() -> Any:
    loaded = ready()
    out: m.Model = {"model_dir": loaded.model_dir.name,
                    "kind": loaded.recommender.kind,  # type: ignore[typeddict-item]
                    "loaded_at": loaded.loaded_at,
                    "manifest": public_manifest(loaded.recommender.manifest)}
    return jsonify(out)


@operation(v1, "/users", operation_id="listUsers",
           summary="user ids of the listening logs, paged", query=m.UserPageQuery,
           ok={200: (m.UserPage, "one page")}, errors=(400, 503))
def users(query: m.UserPageQuery) -> Any:
    loaded = ready()
    cf = loaded.recommender.cf
    ids: Any = [] if cf is None else cf.users_.ids
    out: m.UserPage = {"total": len(ids), "offset": query.offset, "limit": query.limit,
                       "users": [str(u) for u in ids[query.offset:query.offset + query.limit]]}
    return jsonify(out)


@operation(v1, "/users/<path:user_id>/recommendations", operation_id="recommendForUser",
           summary="recommendations for a user of the listening logs",
           query=m.UserRecommendationsQuery,
           ok={200: (m.UserRecommendations, "best first")}, errors=(400, 404, 409, 503))
def user_recommendations(user_id: str, query: m.UserRecommendationsQuery) -> Any:
    loaded = ready()
    recs = loaded.recommender.recommend(user_id, n=query.n,
                                        exclude_played=query.exclude_played,
                                        max_per_artist=query.max_per_artist)
    out: m.UserRecommendations = {"user_id": user_id, "results": recs_json(loaded, recs)}
    return jsonify(out)


@operation(v1, "/users/<path:user_id>/history", operation_id="userHistory",
           summary="a user's most-played tracks in the listening logs", query=m.CountQuery,
           ok={200: (m.UserHistory, "most played first")}, errors=(400, 404, 409, 503))
def user_history(user_id: str, query: m.CountQuery) -> Any:
    loaded = ready()
    top, total = loaded.recommender.history(user_id, n=query.n)
    out: m.UserHistory = {"user_id": user_id, "total": total, "results": [
        {**track_json(loaded, t), "plays": p} for t, p in top]}
    return jsonify(out)


@operation(v1, "/recommendations", method="POST", operation_id="recommendForListener",
           summary="recommendations for a listener who is not in the data",
           body=m.ListenerRequest, ok={200: (m.ListenerRecommendations, "best first")},
           errors=(400, 404, 409, 413, 415, 503))
def listener_recommendations(body: m.ListenerRequest) -> Any:
    loaded = ready()
    recs = loaded.recommender.recommend_for_tracks(
        body.tracks, n=body.n, plays=body.plays, exclude=body.exclude,
        max_per_artist=body.max_per_artist)
    out: m.ListenerRecommendations = {"results": recs_json(loaded, recs)}
    return jsonify(out)


@operation(v1, "/tracks", operation_id="searchTracks",
           summary="tracks whose title or artist contains every word of q",
           query=m.TrackSearchQuery, ok={200: (m.SearchPage, "one page, catalogue order")},
           errors=(400, 503))
def search_tracks(query: m.TrackSearchQuery) -> Any:
    loaded = ready()
    total, ids = loaded.recommender.catalog.search(query.q, offset=query.offset,
                                                   limit=query.limit)
    out: m.SearchPage = {"q": query.q, "total": total, "offset": query.offset,
                         "limit": query.limit, "results": [track_json(loaded, t) for t in ids]}
    return jsonify(out)


@operation(v1, "/tracks/<path:track_id>", operation_id="getTrack", summary="one track",
           ok={200: (m.Track, "its metadata")}, errors=(404, 503))
def track(track_id: str) -> Any:
    loaded = ready()
    if track_id not in loaded.recommender.tracks:
        raise UnknownTrackError(track_id)
    info = loaded.recommender.track(track_id)
    info.pop("audio_path", None)  # server paths are never exposed
    info["audio_url"] = _audio_url(loaded, track_id)
    return jsonify(info)


@operation(v1, "/tracks/<path:track_id>/similar", operation_id="similarTracks",
           summary="tracks similar to a seed track", query=m.SimilarQuery,
           ok={200: (m.SimilarTracks, "best first")}, errors=(400, 404, 409, 503))
def similar(track_id: str, query: m.SimilarQuery) -> Any:
    loaded = ready()
    recs = loaded.recommender.similar(track_id, n=query.n, alpha=query.alpha,
                                      max_per_artist=query.max_per_artist)
    out: m.SimilarTracks = {"track_id": track_id, "alpha": query.alpha,
                            "results": recs_json(loaded, recs)}
    return jsonify(out)


@operation(v1, "/tracks/<path:track_id>/audio", operation_id="trackAudio",
           summary="the track's audio (supports HTTP range requests)",
           ok={200: (_AUDIO, "the audio file"), 206: (_AUDIO, "a byte range of the audio file")},
           errors=(404, 416, 503))
def track_audio(track_id: str) -> Any:
    loaded = ready()
    if track_id not in loaded.recommender.catalog:
        raise UnknownTrackError(track_id)
    path = audio_file(loaded, track_id)
    if path is None:
        raise APIError(404, "no_audio", f"track {track_id!r} has no audio file")
    return send_audio(path)


@operation(v1, "/similar", method="POST", operation_id="similarToAudio",
           summary="query by example: catalogue tracks that sound like an uploaded clip",
           query=m.CountQuery, request_body=_upload_body,
           ok={200: (m.AudioQuery, "the match and the neighbours")},
           errors=(400, 409, 413, 415, 422, 503))
def similar_to_audio(query: m.CountQuery) -> Any:
    if request.mimetype == "multipart/form-data":
        upload = request.files.get("audio")
        if upload is None:
            raise bad("send the clip as the multipart field 'audio'")
        data = upload.stream.read()
    elif request.mimetype in _AUDIO_TYPES:
        data = request.get_data()
    else:
        raise APIError(415, "unsupported_media_type",
                       f"Content-Type {request.mimetype or '(none)'!r} is not supported; send "
                       "multipart/form-data with a field 'audio', or an audio/* body")
    loaded = ready()
    if not data:
        raise bad("the audio clip is empty: send it as the body, or as the multipart field "
                  "'audio'")
    result = _query_audio(loaded, data, query.n)
    out: m.AudioQuery = {
        "match": None if result.match is None else {
            **result.match, "title": loaded.recommender.catalog.title(
                str(result.match.get("track_id")))},
        "results": recs_json(loaded, result.neighbours),
    }
    return jsonify(out)


def _query_audio(loaded: LoadedModel, data: bytes, n: int) -> Any:
    """Decode the clip in memory (limits checked on its header first) and query with it."""
    from musicrec.embedding.audio import AudioLimits, read_clip

    limits = AudioLimits.for_clips(float(current_app.config["MAX_UPLOAD_SECONDS"]))
    wave, rate = read_clip(data, limits=limits, name="the upload")
    return loaded.recommender.similar_to_audio(wave, sample_rate=rate, n=n)


@operation(v1, "/admin/reload", method="POST", operation_id="reloadModel",
           summary="reload the model directory; a broken one is refused (409) and the old "
                   "model keeps serving",
           ok={200: (m.Reload, "swapped in this process"),
               202: (m.Reload, "validated; every worker reloads")},
           errors=(401, 409, 503), admin=True)
def admin_reload() -> Any:
    token = current_app.config["ADMIN_TOKEN"]
    if not token:
        raise APIError(404, "not_found", "The requested URL was not found on the server.")
    given = request.headers.get("Authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        raise APIError(401, "unauthorized", "a valid 'Authorization: Bearer <token>' is "
                       "required")
    state = model_state(current_app)
    current = state.current()
    target = current_app.config["MODEL_DIR"] if current is None else current.model_dir
    if target is None:
        raise APIError(503, "not_ready", "no model directory is configured")
    try:
        candidate = state.open(target)
    except (MusicrecError, OSError) as exc:
        log.error("reload refused: %s", exc)
        raise APIError(409, "reload_refused", f"the model directory was refused and the "
                       f"old model keeps serving: {exc}") from None
    hook = current_app.config["RELOAD_HOOK"]
    if hook is not None:
        del candidate
        hook()
        accepted: m.Reload = {"status": "reloading", "model_dir": str(Path(target).name)}
        return jsonify(accepted), 202
    state.serve(candidate)
    done: m.Reload = {"status": "reloaded", "kind": candidate.recommender.kind,
                      "tracks": len(candidate.recommender.tracks)}
    return jsonify(done)


@operation(v1, "/radio", operation_id="radio",
           summary="an endless, varied playlist from seed tracks, an artist or a user; "
                   "continue it with the returned cursor",
           query=m.RadioQuery, ok={200: (m.Radio, "the next tracks, in play order")},
           errors=(400, 404, 409, 503))
def radio(query: m.RadioQuery) -> Any:
    """An endless playlist: start it from seeds, then pass ``cursor`` back to continue."""
    from musicrec.recommender.radio import describe_state

    loaded = ready()
    page = loaded.recommender.radio(
        query.seed, n=query.n, cursor=query.cursor, artist=query.artist, user=query.user,
        alpha=query.alpha, variety=query.variety, popularity=query.popularity,
        seed=query.random_seed)
    out: m.Radio = {"radio": describe_state(page.state),  # type: ignore[typeddict-item]
                    "cursor": page.cursor, "exhausted": page.exhausted,
                    "results": recs_json(loaded, page.items)}
    return jsonify(out)


@operation(v1, "/search", operation_id="searchByWords",
           summary="tracks that fit a description (\"calm piano\"), zero-shot through their "
                   "tag probabilities (a model built with a musicnn embedder)",
           query=m.TextSearchQuery, ok={200: (m.TextSearch, "best first")},
           errors=(400, 409, 503))
def search_text(query: m.TextSearchQuery) -> Any:
    """Search by words ("calm piano"), zero-shot through the tracks' tag probabilities."""
    from musicrec.recommender.tags import DEFAULT_TAU

    loaded = ready()
    found = loaded.recommender.search_text(
        query.q, n=query.n, text_encoder=query.text_encoder,
        tau=DEFAULT_TAU if query.tau is None else query.tau,
        max_per_artist=query.max_per_artist)
    out: m.TextSearch = {**found.to_dict(), "results": [  # type: ignore[typeddict-item]
        {**track_json(loaded, r.track_id), "score": r.score, "reason": r.describe(),
         "tags": loaded.recommender.track_tags(r.track_id)} for r in found.results]}
    return jsonify(out)
