"""Blueprint ``v1``: recommendations, similar tracks, query by example, the catalogue.

Every view takes the model once (:meth:`ModelState.current`) and answers from it, so a
hot reload never mixes two models in one response. Parameters are validated here and
errors name the bad value; see :mod:`musicrec.api.openapi` for the contract.
"""

from __future__ import annotations

import hmac
import logging
import math
import re
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Blueprint, current_app, jsonify, request, url_for

from musicrec.api.errors import APIError, public_manifest
from musicrec.api.media import audio_file, send_audio
from musicrec.api.openapi import (
    MAX_OFFSET,
    MAX_PER_ARTIST,
    MAX_PLAYS,
    MAX_TRACK_PAGE,
    MAX_USER_PAGE,
)
from musicrec.api.state import LoadedModel, model_state
from musicrec.errors import MusicrecError, UnknownTrackError
from musicrec.recommender.types import Recommendation

log = logging.getLogger(__name__)

v1 = Blueprint("v1", __name__, url_prefix="/v1")

_INT = re.compile(r"-?[0-9]{1,12}")
_FLOAT = re.compile(r"-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")
_AUDIO_TYPES = frozenset({
    "audio/wav", "audio/x-wav", "audio/wave", "audio/flac", "audio/x-flac", "audio/ogg",
    "audio/mpeg", "audio/mp3", "audio/aiff", "audio/x-aiff", "application/octet-stream"})


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


def query_int(name: str, default: int | None, *, low: int, high: int) -> int | None:
    text = request.args.get(name)
    if text is None:
        return default
    if not _INT.fullmatch(text):
        raise bad(f"{name}={text!r} must be an integer from {low} to {high}")
    return check_int(name, int(text), low=low, high=high)


def check_int(name: str, value: Any, *, low: int, high: int) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise bad(f"{name}={value!r} must be an integer from {low} to {high}")
    return value


def query_float(name: str, *, low: float, high: float) -> float | None:
    text = request.args.get(name)
    if text is None:
        return None
    value = float(text) if _FLOAT.fullmatch(text) else math.nan
    if not low <= value <= high:
        raise bad(f"{name}={text!r} must be a number from {low:g} to {high:g}")
    return value


def query_bool(name: str, default: bool) -> bool:
    text = request.args.get(name)
    if text is None:
        return default
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise bad(f"{name}={text!r} must be true or false")


def n_param() -> int:
    n = query_int("n", 10, low=1, high=current_app.config["MAX_N"])
    assert n is not None
    return n


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


def _audio_url(loaded: LoadedModel, track_id: str) -> str | None:
    cache = _audio_urls(loaded)
    if track_id not in cache:
        cache[track_id] = (url_for("v1.track_audio", track_id=track_id)
                           if audio_file(loaded, track_id) is not None else None)
    return cache[track_id]


def track_json(loaded: LoadedModel, track_id: str, *, full: bool = False) -> dict[str, Any]:
    if full:
        info = loaded.recommender.track(track_id)
        info.pop("audio_path", None)
    else:
        title, artist = loaded.labels.get(track_id, (track_id, ""))
        info = {"track_id": track_id, "title": title, "artist": artist}
    info["audio_url"] = _audio_url(loaded, track_id)
    return info


def recs_json(loaded: LoadedModel, recs: list[Recommendation]) -> list[dict[str, Any]]:
    labels, title_of, out = loaded.labels, loaded.title, []
    for r in recs:
        title, artist = labels.get(r.track_id, (r.track_id, ""))
        out.append({"track_id": r.track_id, "title": title, "artist": artist,
                    "audio_url": _audio_url(loaded, r.track_id), "score": r.score,
                    "kind": r.kind, "reason": r.describe(title_of), "because": r.because,
                    "because_title": None if r.because is None else title_of(r.because)})
    return out


def _json_body() -> Mapping[str, Any]:
    if not request.is_json:
        raise APIError(415, "unsupported_media_type",
                       f"Content-Type {request.mimetype or '(none)'!r} is not supported; "
                       "send application/json")
    try:
        body = request.get_json(silent=True)
    except RecursionError:
        raise bad("the JSON body is nested too deeply") from None
    if not isinstance(body, dict):
        raise bad("the body must be a JSON object")
    return body


def _str_list(body: Mapping[str, Any], name: str, *, required: bool) -> list[str]:
    value = body.get(name)
    if value is None and not required:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad(f"{name} must be a list of track id strings")
    if required and not value:
        raise bad(f"{name} must name at least one track")
    if len(value) > 10_000:
        raise bad(f"{name} has {len(value)} entries; at most 10000 are allowed")
    return value


# -- routes -----------------------------------------------------------------------------------
@v1.get("/model")
def model_info() -> Any:
    loaded = ready()
    return jsonify({"model_dir": loaded.model_dir.name, "kind": loaded.recommender.kind,
                    "loaded_at": loaded.loaded_at,
                    "manifest": public_manifest(loaded.recommender.manifest)})


@v1.get("/users")
def users() -> Any:
    loaded = ready()
    offset = query_int("offset", 0, low=0, high=MAX_OFFSET) or 0
    limit = query_int("limit", 20, low=1, high=MAX_USER_PAGE) or 20
    cf = loaded.recommender.cf
    ids: Any = [] if cf is None else cf.users_.ids
    return jsonify({"total": len(ids), "offset": offset, "limit": limit,
                    "users": [str(u) for u in ids[offset : offset + limit]]})


@v1.get("/users/<path:user_id>/recommendations")
def user_recommendations(user_id: str) -> Any:
    loaded = ready()
    n = n_param()
    exclude_played = query_bool("exclude_played", True)
    max_per_artist = query_int("max_per_artist", None, low=1, high=MAX_PER_ARTIST)
    recs = loaded.recommender.recommend(user_id, n=n, exclude_played=exclude_played,
                                        max_per_artist=max_per_artist)
    return jsonify({"user_id": user_id, "results": recs_json(loaded, recs)})


@v1.get("/users/<path:user_id>/history")
def user_history(user_id: str) -> Any:
    loaded = ready()
    top, total = loaded.recommender.history(user_id, n=n_param())
    return jsonify({"user_id": user_id, "total": total,
                    "results": [{**track_json(loaded, t), "plays": p} for t, p in top]})


@v1.post("/recommendations")
def listener_recommendations() -> Any:
    body = _json_body()
    unknown = sorted(set(body) - {"tracks", "plays", "n", "exclude", "max_per_artist"})
    if unknown:
        raise bad(f"unknown field {unknown[0]!r}")
    loaded = ready()
    tracks = _str_list(body, "tracks", required=True)
    exclude = _str_list(body, "exclude", required=False)
    n = check_int("n", body.get("n", 10), low=1, high=current_app.config["MAX_N"])
    mpa = body.get("max_per_artist")
    mpa = None if mpa is None else check_int("max_per_artist", mpa, low=1,
                                                   high=MAX_PER_ARTIST)
    plays = body.get("plays")
    if plays is not None:
        if not isinstance(plays, list) or not all(
                isinstance(p, int | float) and not isinstance(p, bool) and 0 < p <= MAX_PLAYS
                for p in plays):
            raise bad(f"plays must be a list of numbers above 0 and at most {MAX_PLAYS:g}")
        if len(plays) != len(tracks):
            raise bad(f"{len(plays)} play counts for {len(tracks)} tracks")
    recs = loaded.recommender.recommend_for_tracks(tracks, n=n, plays=plays, exclude=exclude,
                                                   max_per_artist=mpa)
    return jsonify({"results": recs_json(loaded, recs)})


@v1.get("/tracks")
def search_tracks() -> Any:
    loaded = ready()
    q = request.args.get("q", "")
    if len(q) > 200:
        raise bad(f"q has {len(q)} characters; at most 200 are allowed")
    offset = query_int("offset", 0, low=0, high=MAX_OFFSET) or 0
    limit = query_int("limit", 20, low=1, high=MAX_TRACK_PAGE) or 20
    total, ids = loaded.recommender.catalog.search(q, offset=offset, limit=limit)
    return jsonify({"q": q, "total": total, "offset": offset, "limit": limit,
                    "results": [track_json(loaded, t) for t in ids]})


@v1.get("/tracks/<path:track_id>")
def track(track_id: str) -> Any:
    loaded = ready()
    if track_id not in loaded.recommender.tracks:
        raise UnknownTrackError(track_id)
    return jsonify(track_json(loaded, track_id, full=True))


@v1.get("/tracks/<path:track_id>/similar")
def similar(track_id: str) -> Any:
    loaded = ready()
    n = n_param()
    alpha = query_float("alpha", low=0.0, high=1.0)
    max_per_artist = query_int("max_per_artist", None, low=1, high=MAX_PER_ARTIST)
    recs = loaded.recommender.similar(track_id, n=n, alpha=alpha,
                                      max_per_artist=max_per_artist)
    return jsonify({"track_id": track_id, "alpha": alpha, "results": recs_json(loaded, recs)})


@v1.get("/tracks/<path:track_id>/audio")
def track_audio(track_id: str) -> Any:
    loaded = ready()
    if track_id not in loaded.recommender.catalog:
        raise UnknownTrackError(track_id)
    path = audio_file(loaded, track_id)
    if path is None:
        raise APIError(404, "no_audio", f"track {track_id!r} has no audio file")
    return send_audio(path)


@v1.post("/similar")
def similar_to_audio() -> Any:
    n = n_param()
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
    result = _query_audio(loaded, data, n)
    return jsonify({
        "match": None if result.match is None else {
            **result.match, "title": loaded.recommender.catalog.title(
                str(result.match.get("track_id")))},
        "results": recs_json(loaded, result.neighbours),
    })


def _query_audio(loaded: LoadedModel, data: bytes, n: int) -> Any:
    """Decode the clip in memory (limits checked on its header first) and query with it."""
    from musicrec.embedding.audio import AudioLimits, read_clip

    limits = AudioLimits.for_clips(float(current_app.config["MAX_UPLOAD_SECONDS"]))
    wave, rate = read_clip(data, limits=limits, name="the upload")
    return loaded.recommender.similar_to_audio(wave, sample_rate=rate, n=n)


@v1.post("/admin/reload")
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
        return jsonify({"status": "reloading", "model_dir": str(Path(target).name)}), 202
    state.serve(candidate)
    return jsonify({"status": "reloaded", "kind": candidate.recommender.kind,
                    "tracks": len(candidate.recommender.tracks)})



@v1.get("/radio")
def radio() -> Any:
    """An endless playlist: start it from seeds, then pass ``cursor`` back to continue."""
    loaded = ready()
    n = n_param()
    seeds = request.args.getlist("seed")
    if len(seeds) > 50:
        raise bad(f"{len(seeds)} seed tracks; at most 50 are allowed")
    page = loaded.recommender.radio(
        seeds, n=n, cursor=request.args.get("cursor"), artist=request.args.get("artist"),
        user=request.args.get("user"), alpha=query_float("alpha", low=0.0, high=1.0),
        variety=query_float("variety", low=0.0, high=1.0),
        popularity=query_float("popularity", low=0.0, high=1.0),
        seed=query_int("random_seed", None, low=0, high=2**31 - 1))
    from musicrec.recommender.radio import describe_state

    return jsonify({"radio": describe_state(page.state), "cursor": page.cursor,
                    "exhausted": page.exhausted, "results": recs_json(loaded, page.items)})


@v1.get("/search")
def search_text() -> Any:
    """Search by words ("calm piano"), zero-shot through the tracks' tag probabilities."""
    from musicrec.recommender.tags import DEFAULT_TAU, MAX_QUERY_CHARS

    q = request.args.get("q", "")
    if not q.strip():
        raise bad("q must be a non-empty text, e.g. q=calm+piano")
    if len(q) > MAX_QUERY_CHARS:
        raise bad(f"q has {len(q)} characters; at most {MAX_QUERY_CHARS} are allowed")
    n = n_param()
    max_per_artist = query_int("max_per_artist", None, low=1, high=1000)
    tau = query_float("tau", low=0.001, high=10.0)
    loaded = ready()
    found = loaded.recommender.search_text(
        q, n=n, text_encoder=request.args.get("text_encoder") or None,
        tau=DEFAULT_TAU if tau is None else tau, max_per_artist=max_per_artist)
    return jsonify({**found.to_dict(), "results": [
        {**track_json(loaded, r.track_id), "score": r.score, "reason": r.describe(),
         "tags": loaded.recommender.track_tags(r.track_id)} for r in found.results]})
