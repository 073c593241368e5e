"""The Flask API: every endpoint and error status, OpenAPI (schemathesis), concurrency,
hot reload (in process and under ``musicrec serve``)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from musicrec.api import create_app
from musicrec.data.catalog import TrackCatalog, read_catalog
from musicrec.data.logs import ListeningLog
from musicrec.errors import ModelFormatError
from musicrec.recommender.cf import CFModel
from musicrec.recommender.facade import Recommender
from musicrec.recommender.pipeline import build_model_dir, train_cf_model_dir

N_TRACKS, N_USERS, DIM = 150, 200, 8
SR = 16000


def synthetic_log(n_tracks: int, n_users: int, seed: int) -> ListeningLog:
    rng = np.random.default_rng(seed)
    rows = [(f"u{u}", f"t{t:03d}", int(rng.integers(1, 6)))
            for u in range(n_users) for t in rng.choice(n_tracks, 10, replace=False)]
    return ListeningLog.from_frame(pd.DataFrame(rows, columns=["user", "track", "plays"]),
                                   weight_col="plays")


def tone(path: Path, freq: float, seconds: float = 1.0) -> Path:
    t = np.arange(int(SR * seconds)) / SR
    noise = np.random.default_rng(int(freq)).standard_normal(len(t))
    sf.write(path, (0.3 * np.sin(2 * np.pi * freq * t) + 0.02 * noise).astype(np.float32), SR)
    return path


def hybrid_model(out: Path, audio_dir: Path, *, n_tracks: int = N_TRACKS, seed: int = 0
                 ) -> Path:
    """A hybrid model of random content; tracks t000 and t001 have (absolute) audio."""
    rng = np.random.default_rng(seed)
    ids = [f"t{t:03d}" for t in range(n_tracks)]
    audio = [str(tone(audio_dir / f"{i}.wav", 220.0 * (1 + k))) if k < 2 else None
             for k, i in enumerate(ids)]
    catalog = TrackCatalog(pd.DataFrame({
        "track_id": ids, "title": [f"Song {i}" for i in ids],
        "artist": [f"artist{t % 30}" for t in range(n_tracks)], "audio_path": audio}))
    return build_model_dir(out, log=synthetic_log(n_tracks, N_USERS, seed), catalog=catalog,
                           content_ids=ids,
                           content=rng.standard_normal((n_tracks, DIM)).astype(np.float32),
                           cf_model=CFModel(factors=8, iterations=5, random_state=0),
                           n_trees=5)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("api")
    (root / "audio").mkdir()
    return hybrid_model(root / "hybrid", root / "audio")


@pytest.fixture(scope="module")
def cf_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_cf_model_dir(synthetic_log(40, 50, 1), tmp_path_factory.mktemp("cf") / "m",
                              model=CFModel(factors=4, iterations=3, random_state=0))


@pytest.fixture(scope="module")
def audio_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model embedded from real (synthesised) audio with the mfcc embedder: query by
    example works; catalogue audio paths are relative to the catalogue file."""
    from musicrec.embedding.batch import embed_catalog
    from musicrec.embedding.registry import get_embedder

    root = tmp_path_factory.mktemp("audio")
    (root / "audio").mkdir()
    freqs = [110, 130, 220, 260, 440, 520, 880, 1040]
    rows = [{"track_id": f"a{k}", "title": f"Tone {f} Hz", "artist": f"synth{k % 3}",
             "audio_path": tone(root / "audio" / f"a{k}.wav", f).relative_to(root).as_posix()}
            for k, f in enumerate(freqs)]
    pd.DataFrame(rows).to_csv(root / "catalog.csv", index=False)
    emb = get_embedder("mfcc")
    result = embed_catalog(root / "catalog.csv", embedder=emb, cache_dir=root / "cache",
                           show_progress=False)
    assert len(result.track_ids) == len(freqs)
    return build_model_dir(
        root / "model", catalog=read_catalog(root / "catalog.csv"),
        content_ids=result.track_ids, content=result.vectors,
        embedder={"spec": "mfcc", "id": emb.id, "name": emb.name, "revision": emb.revision,
                  "dim": emb.dim, "options": {}},
        content_source={"audio": str(root / "catalog.csv")}, n_trees=3)


@pytest.fixture(scope="module")
def app(model_dir: Path) -> Any:
    return create_app({"MODEL_DIR": model_dir, "TESTING": True})


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()


def wav_bytes(freq: float, seconds: float) -> bytes:
    t = np.arange(int(SR * seconds)) / SR
    buf = io.BytesIO()
    sf.write(buf, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), SR, format="WAV")
    return buf.getvalue()


# -- endpoints -------------------------------------------------------------------------------
def test_health_ready_and_model(client: Any, model_dir: Path) -> None:
    assert client.get("/healthz").json == {"status": "ok"}
    assert client.get("/readyz").json == {"status": "ready", "kind": "hybrid",
                                          "tracks": N_TRACKS}
    body = client.get("/v1/model").json
    assert body["kind"] == "hybrid" and body["model_dir"] == "hybrid"
    assert body["manifest"]["counts"]["tracks"] == N_TRACKS


def test_not_ready_is_503() -> None:
    client = create_app({"MODEL_DIR": None}).test_client()
    assert client.get("/healthz").status_code == 200
    for url in ("/readyz", "/v1/model", "/v1/tracks?q=a", "/v1/tracks/t001/similar"):
        response = client.get(url)
        assert response.status_code == 503, url
        assert response.json["error"] == "not_ready"


def test_user_recommendations_match_the_facade(client: Any, model_dir: Path) -> None:
    rec = Recommender(model_dir)
    want = rec.recommend("u3", n=7)
    body = client.get("/v1/users/u3/recommendations?n=7").json
    assert body["user_id"] == "u3"
    assert [r["track_id"] for r in body["results"]] == [r.track_id for r in want]
    assert [r["score"] for r in body["results"]] == pytest.approx([r.score for r in want])
    first = body["results"][0]
    assert first["reason"] == f"listeners of Song {want[0].because} also played this" or \
        first["reason"] == f"sounds like Song {want[0].because}, which you played"
    assert first["because_title"] == f"Song {want[0].because}"
    played = client.get("/v1/users/u3/recommendations?n=20&exclude_played=false").json
    history = set(rec.cf.tracks_.to_ids(rec.cf.user_items_[rec.cf.users_.to_idx("u3")].indices))
    assert history & {r["track_id"] for r in played["results"]}
    capped = client.get("/v1/users/u3/recommendations?n=10&max_per_artist=1").json["results"]
    assert len({r["artist"] for r in capped}) == len(capped) == 10


def test_the_answer_cache_answers_as_the_live_path(client: Any, model_dir: Path) -> None:
    cached_app = create_app({"MODEL_DIR": model_dir, "ANSWER_CACHE": 1000})
    cached = cached_app.test_client()
    state = cached_app.extensions["musicrec"]
    urls = [f"/v1/users/{u}/recommendations?{q}" for u in ("u1", "u3", "u8")
            for q in ("n=10", "n=4&exclude_played=false", "n=10&max_per_artist=1")]
    for _ in range(2):  # the second pass is answered from the cache, byte for byte
        for url in urls:
            assert cached.get(url).get_data() == client.get(url).get_data()
    answers = state.current().recommender.answers
    assert (answers.hits, answers.misses) == (len(urls), len(urls))
    assert client.application.extensions["musicrec"].current().recommender.answers is None
    state.load(model_dir)  # a reloaded model starts with an empty cache
    assert len(state.current().recommender.answers) == 0
    assert cached.get(urls[0]).get_data() == client.get(urls[0]).get_data()


def test_listener_recommendations(client: Any, model_dir: Path) -> None:
    rec = Recommender(model_dir)
    want = rec.recommend_for_tracks(["t001", "t002"], n=5, plays=[3, 1])
    body = client.post("/v1/recommendations",
                       json={"tracks": ["t001", "t002"], "plays": [3, 1], "n": 5}).json
    assert [r["track_id"] for r in body["results"]] == [r.track_id for r in want]
    assert {r["because"] for r in body["results"]} <= {"t001", "t002"}


def test_user_history_is_what_the_log_holds(client: Any, cf_model_dir: Path,
                                            audio_model_dir: Path) -> None:
    """The most-played tracks of a user, as the synthetic log wrote them, most first."""
    frame = synthetic_log(N_TRACKS, N_USERS, 0).to_frame()
    mine = frame[frame.user == "u7"].sort_values(["plays", "track"], ascending=[False, True])
    body = client.get("/v1/users/u7/history?n=4").json
    assert body["user_id"] == "u7" and body["total"] == len(mine) == 10
    assert [(r["track_id"], r["plays"]) for r in body["results"]] == list(
        zip(mine.track.head(4), mine.plays.head(4).astype(float), strict=True))
    assert body["results"][0]["title"] == f"Song {mine.track.iloc[0]}"
    missing = client.get("/v1/users/nobody/history")
    assert missing.status_code == 404 and missing.json["error"] == "unknown_user"
    assert client.get("/v1/users/u7/history?n=0").status_code == 400
    cf_only = create_app({"MODEL_DIR": cf_model_dir}).test_client()
    assert len(cf_only.get("/v1/users/u1/history?n=2").json["results"]) == 2
    content_only = create_app({"MODEL_DIR": audio_model_dir}).test_client()
    refused = content_only.get("/v1/users/u1/history")
    assert refused.status_code == 409 and refused.json["error"] == "model_capability"


def test_similar_and_alpha(client: Any, model_dir: Path) -> None:
    rec = Recommender(model_dir)
    for alpha in (0.0, 0.5, 1.0):
        body = client.get(f"/v1/tracks/t005/similar?n=6&alpha={alpha}").json
        assert body["alpha"] == alpha
        assert [r["track_id"] for r in body["results"]] == [
            r.track_id for r in rec.similar("t005", n=6, alpha=alpha)]
    sounds = client.get("/v1/tracks/t005/similar?alpha=1").json["results"][0]
    assert sounds["kind"] == "content" and sounds["reason"] == "sounds like Song t005"
    listeners = client.get("/v1/tracks/t005/similar?alpha=0").json["results"][0]
    assert listeners["reason"] == "listeners of Song t005 also played this"


def test_track_and_search(client: Any) -> None:
    track = client.get("/v1/tracks/t001").json
    assert track["title"] == "Song t001" and track["artist"] == "artist1"
    assert track["has_content"] is True and track["audio_url"] == "/v1/tracks/t001/audio"
    assert "audio_path" not in track  # server paths are never exposed
    assert client.get("/v1/tracks/t002").json["audio_url"] is None
    page = client.get("/v1/tracks?q=song t01&limit=4&offset=2").json
    # t010..t019 match "t01" (ten tracks); the page holds the 3rd to the 6th.
    assert page["total"] == 10
    assert [r["track_id"] for r in page["results"]] == ["t012", "t013", "t014", "t015"]
    assert client.get("/v1/tracks?q=ARTIST29").json["total"] == 5  # t029, t059, ... t149
    assert client.get("/v1/users?offset=198&limit=5").json == {
        "total": N_USERS, "offset": 198, "limit": 5, "users": ["u98", "u99"]}  # string order


@pytest.mark.parametrize(("method", "url", "kwargs", "status", "error", "message"), [
    ("get", "/v1/tracks/t001/similar?n=0", {}, 400, "bad_request",
     "n=0 must be an integer from 1 to 100"),
    ("get", "/v1/tracks/t001/similar?n=101", {}, 400, "bad_request",
     "n=101 must be an integer from 1 to 100"),
    ("get", "/v1/tracks/t001/similar?n=2.5", {}, 400, "bad_request",
     "n='2.5' must be an integer from 1 to 100"),
    ("get", "/v1/tracks/t001/similar?alpha=1.5", {}, 400, "bad_request",
     "alpha='1.5' must be a number from 0 to 1"),
    ("get", "/v1/tracks/t001/similar?alpha=nan", {}, 400, "bad_request",
     "alpha='nan' must be a number from 0 to 1"),
    ("get", "/v1/users/u1/recommendations?exclude_played=maybe", {}, 400, "bad_request",
     "exclude_played='maybe' must be true or false"),
    ("get", "/v1/users/u1/recommendations?max_per_artist=0", {}, 400, "bad_request",
     "max_per_artist=0 must be an integer from 1 to 1000"),
    ("get", "/v1/tracks?limit=101", {}, 400, "bad_request",
     "limit=101 must be an integer from 1 to 100"),
    ("get", "/v1/tracks?offset=-1", {}, 400, "bad_request",
     "offset=-1 must be an integer from 0 to 1000000000"),
    ("post", "/v1/recommendations", {"json": {"tracks": []}}, 400, "bad_request",
     "tracks must name at least one track"),
    ("post", "/v1/recommendations", {"json": {"tracks": ["t001"], "x": 1}}, 400,
     "bad_request", "unknown field 'x'"),
    ("post", "/v1/recommendations", {"json": {"tracks": ["t001"], "plays": [1, 2]}}, 400,
     "bad_request", "2 play counts for 1 tracks"),
    ("post", "/v1/recommendations", {"json": [1]}, 400, "bad_request",
     "the body must be a JSON object"),
    ("post", "/v1/recommendations",
     {"data": "tracks=t001", "content_type": "application/x-www-form-urlencoded"}, 415,
     "unsupported_media_type",
     "Content-Type 'application/x-www-form-urlencoded' is not supported; send "
     "application/json"),
    ("get", "/v1/users/nobody/recommendations", {}, 404, "unknown_user",
     "unknown user 'nobody'"),
    ("get", "/v1/tracks/zz", {}, 404, "unknown_track", "unknown track 'zz'"),
    ("get", "/v1/tracks/zz/similar", {}, 404, "unknown_track", "unknown track 'zz'"),
    ("post", "/v1/recommendations", {"json": {"tracks": ["zz"]}}, 404, "unknown_track",
     "unknown track 'zz'"),
    ("get", "/v1/tracks/t002/audio", {}, 404, "no_audio", "track 't002' has no audio file"),
    ("get", "/v1/tracks/zz/audio", {}, 404, "unknown_track", "unknown track 'zz'"),
    ("post", "/v1/admin/reload", {}, 404, "not_found",
     "The requested URL was not found on the server."),
    ("delete", "/v1/tracks/t001", {}, 405, "method_not_allowed",
     "The method is not allowed for the requested URL."),
    ("post", "/v1/similar", {"data": b"{}", "content_type": "application/json"}, 415,
     "unsupported_media_type", "Content-Type 'application/json' is not supported; send "
     "multipart/form-data with a field 'audio', or an audio/* body"),
    # the contract, exactly: what the OpenAPI document says is what the code does
    ("get", "/v1/users?offset=1000000001", {}, 400, "bad_request",
     "offset=1000000001 must be an integer from 0 to 1000000000"),
    ("get", "/v1/users?limit=1001", {}, 400, "bad_request",
     "limit=1001 must be an integer from 1 to 1000"),
    ("get", "/v1/tracks?limit=101", {}, 400, "bad_request",
     "limit=101 must be an integer from 1 to 100"),
    ("get", "/v1/tracks/t001/similar?alpha=", {}, 400, "bad_request",
     "alpha='' must be a number from 0 to 1"),
    ("get", "/v1/tracks/t001/similar?max_per_artist=", {}, 400, "bad_request",
     "max_per_artist='' must be an integer from 1 to 1000"),
    ("post", "/v1/recommendations", {"json": {"tracks": ["t001"], "plays": [1e308]}}, 400,
     "bad_request", "plays must be a list of numbers above 0 and at most 1e+09"),
    ("post", "/v1/similar", {"data": b"", "content_type": "audio/wav"}, 400, "bad_request",
     "the audio clip is empty: send it as the body, or as the multipart field 'audio'"),
    ("post", "/v1/recommendations", {"data": "[" * 1000 + "]" * 1000,
                                     "content_type": "application/json"}, 400, "bad_request",
     "the JSON body is nested too deeply"),
    ("post", "/v1/recommendations", {"data": '{"tracks": ' + "[" * 100_000 + "]" * 100_000
                                     + "}", "content_type": "application/json"}, 400,
     "bad_request", "the JSON body is nested too deeply"),
])
def test_errors_are_json_with_the_right_status(client: Any, method: str, url: str,
                                                kwargs: dict[str, Any], status: int,
                                                error: str, message: str) -> None:
    response = getattr(client, method)(url, **kwargs)
    assert response.status_code == status
    assert response.json == {"error": error, "message": message}


def test_the_document_states_the_limits_the_code_enforces(client: Any) -> None:
    doc = client.get("/openapi.json").json
    params = {p["name"]: p["schema"] for p in doc["paths"]["/v1/users"]["get"]["parameters"]}
    assert params["offset"]["maximum"] == 10**9 and params["limit"]["maximum"] == 1000
    assert client.get("/v1/users?offset=1000000000&limit=1000").status_code == 200
    tracks = {p["name"]: p["schema"] for p in doc["paths"]["/v1/tracks"]["get"]["parameters"]}
    assert tracks["limit"]["maximum"] == 100
    plays = doc["components"]["schemas"]["ListenerRequest"]["properties"]["plays"]
    plays, null = plays["anyOf"]  # "plays": null is the same as no play counts
    assert null == {"type": "null"}
    assert plays["minItems"] == 1 and plays["items"]["maximum"] == 1e9
    ok = client.post("/v1/recommendations", json={"tracks": ["t001"], "plays": [1e9]})
    assert ok.status_code == 200 and ok.json["results"]
    assert "416" in doc["paths"]["/v1/tracks/{track_id}/audio"]["get"]["responses"]


def test_a_range_outside_the_file_is_416_with_its_size(client: Any) -> None:
    with client.get("/v1/tracks/t001/audio") as full:
        size = len(full.data)
    with client.get("/v1/tracks/t001/audio", headers={"Range": f"bytes={size + 10}-"}
                    ) as response:
        pass
    assert response.status_code == 416
    assert response.headers["Content-Range"] == f"bytes */{size}"
    assert response.json["error"] == "range_not_satisfiable"


def test_errors_and_the_manifest_show_no_server_paths(audio_model_dir: Path,
                                                      tmp_path: Path) -> None:
    app = create_app({"MODEL_DIR": audio_model_dir})
    client = app.test_client()
    manifest = client.get("/v1/model").json["manifest"]
    assert manifest["data"]["content"]["audio"] == "catalog.csv"
    assert str(audio_model_dir.parent) not in json.dumps(client.get("/v1/model").json)
    garbage = client.post("/v1/similar", data=b"RIFF not really a wave file" * 10,
                          content_type="audio/wav")
    assert garbage.status_code == 422
    assert garbage.json["message"].startswith("the upload: ")
    assert "/" not in garbage.json["message"].split(":")[0]
    # the reload refusal names the model directory, not where it lies
    live = tmp_path / "live"
    shutil.copytree(audio_model_dir, live)
    app = create_app({"MODEL_DIR": live, "ADMIN_TOKEN": "t"})
    (live / "items.npy").unlink()
    refused = app.test_client().post("/v1/admin/reload", headers={"Authorization": "Bearer t"})
    assert refused.status_code == 409
    assert str(tmp_path) not in refused.json["message"]
    assert "live: manifest lists items.npy, which is missing" in refused.json["message"]


def test_capability_errors_are_409(cf_model_dir: Path) -> None:
    client = create_app({"MODEL_DIR": cf_model_dir}).test_client()
    response = client.get("/v1/tracks/t001/similar?alpha=1")
    assert response.status_code == 409 and response.json["error"] == "model_capability"
    assert "needs content vectors" in response.json["message"]
    assert client.get("/v1/tracks/t001/similar").status_code == 200  # alpha defaults to 0
    upload = client.post("/v1/similar", data=wav_bytes(440, 1), content_type="audio/wav")
    assert upload.status_code == 409 and "query by example" in upload.json["message"]


def test_unexpected_errors_are_500_without_a_trace(model_dir: Path, monkeypatch: Any) -> None:
    app = create_app({"MODEL_DIR": model_dir})
    rec = app.extensions["musicrec"].current().recommender

    def explode(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(rec, "similar", explode)
    response = app.test_client().get("/v1/tracks/t001/similar")
    assert response.status_code == 500
    assert response.json == {"error": "internal_error", "message": "internal server error"}


def test_audio_is_served_with_range_requests(client: Any) -> None:
    with client.get("/v1/tracks/t000/audio") as full, \
            client.get("/v1/tracks/t000/audio", headers={"Range": "bytes=100-199"}) as part:
        check_ranges(full, part)


def check_ranges(full: Any, part: Any) -> None:
    assert full.status_code == 200 and full.mimetype == "audio/x-wav"
    assert full.headers["Accept-Ranges"] == "bytes"
    assert part.status_code == 206
    assert part.data == full.data[100:200]
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(full.data)}"


def test_query_by_example(audio_model_dir: Path, tmp_path: Path) -> None:
    app = create_app({"MODEL_DIR": audio_model_dir, "MAX_UPLOAD_SECONDS": 3,
                      "MAX_UPLOAD_BYTES": 200_000})
    client = app.test_client()
    clip = wav_bytes(440, 1.0)
    multipart = client.post("/v1/similar?n=3",
                            data={"audio": (io.BytesIO(clip), "clip.wav")},
                            content_type="multipart/form-data")
    assert multipart.status_code == 200, multipart.json
    results = multipart.json["results"]
    assert len(results) == 3 and results[0]["kind"] == "content"
    assert results[0]["reason"] == "sounds like the clip"
    assert "match" in multipart.json
    raw = client.post("/v1/similar?n=3", data=clip, content_type="audio/wav")
    assert raw.json["results"] == results
    assert results[0]["audio_url"] == f"/v1/tracks/{results[0]['track_id']}/audio"
    # relative audio_path values resolve against the catalogue's folder
    with client.get(results[0]["audio_url"]) as served:
        assert served.status_code == 200 and served.data.startswith(b"RIFF")
    garbage = client.post("/v1/similar", data=b"RIFF not really a wave file" * 10,
                          content_type="audio/wav")
    assert garbage.status_code == 422 and garbage.json["error"] == "undecodable_audio"
    empty = client.post("/v1/similar", data={"audio": (io.BytesIO(b""), "x.wav")},
                        content_type="multipart/form-data")
    assert empty.status_code == 400
    long = client.post("/v1/similar", data=wav_bytes(440, 5.0), content_type="audio/wav")
    assert long.status_code == 413
    assert long.json["message"] == (
        "the upload: too large: the clip lasts 5.0 s; at most 3 s are allowed")
    big = client.post("/v1/similar", data=b"\0" * 300_000, content_type="audio/wav")
    assert big.status_code == 413 and big.json["error"] == "payload_too_large"
    missing = client.post("/v1/similar", data={"clip": (io.BytesIO(clip), "c.wav")},
                          content_type="multipart/form-data")
    assert missing.status_code == 400
    assert missing.json["message"] == "send the clip as the multipart field 'audio'"


def _wav_declaring(rate: int, *, channels: int = 1, frames: int = 100) -> bytes:
    """A valid WAV whose header declares ``rate`` (soundfile writes at most 2**31 - 1 Hz,
    so the field is patched afterwards)."""
    buf = io.BytesIO()
    sf.write(buf, np.zeros((frames, channels), dtype=np.float32), 8000, format="WAV",
             subtype="PCM_16")
    data = bytearray(buf.getvalue())
    data[24:28] = rate.to_bytes(4, "little")
    data[28:32] = (rate * channels * 2).to_bytes(4, "little")
    return bytes(data)


@pytest.mark.parametrize(("clip", "status", "message"), [
    # a FLAC at FLAC's highest rate, and a billion samples a second: refused from the header
    (("FLAC", 655_350, 8, 0.1), 422, "sample rate 655350 Hz is outside 4000-192000 Hz"),
    (1_000_000_007, 422, "sample rate 1000000007 Hz is outside 4000-192000 Hz"),
    (("WAV", 48_000, 255, 0.01), 422, "255 channels; at most 8 are supported"),
    # 2 s of 96 kHz stereo is within the 3 s limit but decodes to more samples than
    # 3 s of 48 kHz stereo
    (("WAV", 96_000, 2, 2.0), 413, "the clip decodes to 384000 samples (192000 frames x 2 "
                                   "channels); at most 288000 are allowed"),
])
def test_uploads_that_would_decode_to_gigabytes_are_refused_from_the_header(
        audio_model_dir: Path, clip: Any, status: int, message: str) -> None:
    app = create_app({"MODEL_DIR": audio_model_dir, "MAX_UPLOAD_SECONDS": 3})
    if isinstance(clip, int):
        data = _wav_declaring(clip)
    else:
        fmt, rate, channels, seconds = clip
        buf = io.BytesIO()
        sf.write(buf, np.zeros((int(rate * seconds), channels), dtype=np.float32), rate,
                 format=fmt)
        data = buf.getvalue()
    response = app.test_client().post("/v1/similar", data=data,
                                      content_type="application/octet-stream")
    assert response.status_code == status
    assert response.json["message"].endswith(message), response.json


def test_uploads_never_touch_the_disk(audio_model_dir: Path, monkeypatch: Any) -> None:
    import tempfile

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("an upload was written to a temporary file")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    monkeypatch.setattr(tempfile, "NamedTemporaryFile", refuse)
    app = create_app({"MODEL_DIR": audio_model_dir})
    response = app.test_client().post("/v1/similar?n=2", data=wav_bytes(440, 1.0),
                                      content_type="audio/wav")
    assert response.status_code == 200 and len(response.json["results"]) == 2


# -- model loading and hot reload ------------------------------------------------------------
def test_a_broken_model_is_refused_at_start(model_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    (broken / "manifest.json").write_text("{not json")
    with pytest.raises(ModelFormatError, match="corrupt manifest"):
        create_app({"MODEL_DIR": broken})


def test_admin_reload(model_dir: Path, tmp_path: Path) -> None:
    live = tmp_path / "live"
    shutil.copytree(model_dir, live)
    app = create_app({"MODEL_DIR": live, "ADMIN_TOKEN": "s3cret"})
    client = app.test_client()
    auth = {"Authorization": "Bearer s3cret"}
    denied = client.post("/v1/admin/reload", headers={"Authorization": "Bearer nope"})
    assert denied.status_code == 401 and denied.json["error"] == "unauthorized"
    assert client.post("/v1/admin/reload").status_code == 401
    # a new model is built in place (atomic rename), then reloaded
    (tmp_path / "audio").mkdir()
    hybrid_model(live, tmp_path / "audio", n_tracks=120, seed=3)
    assert client.get("/readyz").json["tracks"] == N_TRACKS  # still the old one
    response = client.post("/v1/admin/reload", headers=auth)
    assert response.json == {"status": "reloaded", "kind": "hybrid", "tracks": 120}
    assert client.get("/readyz").json["tracks"] == 120
    # a broken directory is refused and the old model keeps serving
    (live / "items.npy").unlink()
    refused = client.post("/v1/admin/reload", headers=auth)
    assert refused.status_code == 409 and refused.json["error"] == "reload_refused"
    assert "manifest lists items.npy, which is missing" in refused.json["message"]
    assert client.get("/readyz").json["tracks"] == 120
    assert client.get("/v1/tracks/t001/similar?n=3").status_code == 200


def test_files_changed_under_the_served_model_make_it_unready(model_dir: Path,
                                                              tmp_path: Path) -> None:
    """A truncated array would crash a worker on its next read (SIGBUS) and a same-size
    rewrite would serve garbage: both make /readyz and the model routes answer 503, and
    a reload refuses the damaged directory."""
    truncated, rewritten = tmp_path / "truncated", tmp_path / "rewritten"
    shutil.copytree(model_dir, truncated)
    shutil.copytree(model_dir, rewritten)
    apps = [create_app({"MODEL_DIR": d, "WATCH_INTERVAL": 0, "ADMIN_TOKEN": "t"})
            for d in (truncated, rewritten)]
    for app in apps:
        assert app.test_client().get("/readyz").status_code == 200
    os.truncate(truncated / "content.npy", 1000)
    content = np.load(rewritten / "content.npy")
    with open(rewritten / "content.npy", "r+b") as f:  # same size, in place, all NaN
        np.save(f, np.full_like(content, np.nan), allow_pickle=False)
    assert (rewritten / "content.npy").stat().st_size == (model_dir / "content.npy").stat(
        ).st_size
    for app in apps:
        client = app.test_client()
        for url in ("/readyz", "/v1/tracks/t001/similar?n=3", "/v1/users/u1/recommendations"):
            response = client.get(url)
            assert response.status_code == 503, url
            assert response.json["message"] == (
                "the model cannot answer: content.npy changed on disk after the model was "
                "loaded; rebuild or restore it, then reload")
        refused = client.post("/v1/admin/reload", headers={"Authorization": "Bearer t"})
        assert refused.status_code == 409
    assert "content.npy has 1000 bytes, the manifest records" in refused_message(truncated)
    assert "content.npy: sha256 differs from the manifest's" in refused_message(rewritten)


def refused_message(model: Path) -> str:
    with pytest.raises(ModelFormatError) as info:
        create_app({"MODEL_DIR": model})
    return str(info.value)


def test_admin_reload_with_a_hook_signals_instead(model_dir: Path) -> None:
    calls: list[int] = []
    app = create_app({"MODEL_DIR": model_dir, "ADMIN_TOKEN": "t",
                      "RELOAD_HOOK": lambda: calls.append(1)})
    response = app.test_client().post("/v1/admin/reload", headers={"Authorization": "Bearer t"})
    assert response.status_code == 202 and response.json["status"] == "reloading"
    assert calls == [1]


def test_many_threads_against_one_app_during_reloads(model_dir: Path) -> None:
    app = create_app({"MODEL_DIR": model_dir, "ADMIN_TOKEN": "t"})
    urls = ["/v1/tracks/t007/similar?n=5&alpha=0.3", "/v1/users/u9/recommendations?n=5",
            "/v1/tracks?q=song&limit=3", "/v1/tracks/t011"]
    expected = {u: app.test_client().get(u).json for u in urls}
    failures: list[str] = []
    done = threading.Event()

    def worker(k: int) -> None:
        client = app.test_client()
        for i in range(40):
            url = urls[(i + k) % len(urls)]
            response = client.get(url)
            if response.status_code != 200 or response.json != expected[url]:
                failures.append(f"{url}: {response.status_code}")

    def reloader() -> None:
        client = app.test_client()
        while not done.is_set():
            if client.post("/v1/admin/reload",
                           headers={"Authorization": "Bearer t"}).status_code != 200:
                failures.append("reload")

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    swap = threading.Thread(target=reloader)
    swap.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    swap.join()
    assert failures == []
    assert app.extensions["musicrec"].reloads >= 1


# -- the OpenAPI document ----------------------------------------------------------------------
def test_openapi_describes_every_route(app: Any) -> None:
    client = app.test_client()
    spec = client.get("/openapi.json").json
    assert spec["openapi"] == "3.1.0"
    documented = {(p, m.upper()) for p, ops in spec["paths"].items() for m in ops}
    served = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("site.") and rule.rule in ("/", "/docs", "/openapi.json",
                                                               "/static/<path:filename>"):
            continue
        path = rule.rule.replace("<path:", "{").replace(">", "}")
        served |= {(path, m) for m in rule.methods - {"HEAD", "OPTIONS"}}
    served.discard(("/v1/admin/reload", "POST"))  # documented only when a token is set
    assert served == documented
    admin = create_app({"ADMIN_TOKEN": "t"}).test_client().get("/openapi.json").json
    assert "/v1/admin/reload" in admin["paths"]
    with client.get("/docs") as docs:
        assert docs.status_code == 200 and b"/static/docs.js" in docs.data
    with client.get("/static/docs.js") as script:  # renders the spec with no CDN
        assert b"http" not in script.data


def test_schemathesis_finds_no_server_error_or_schema_violation(app: Any) -> None:
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings
    from schemathesis import checks as st_checks

    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    wanted = [st_checks.not_a_server_error, st_checks.response_schema_conformance,
              st_checks.status_code_conformance, st_checks.content_type_conformance]
    failures: list[str] = []
    calls: list[str] = []

    def fuzz(operation: Any) -> None:
        @settings(max_examples=25, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(operation.as_strategy())
        def run(case: Any) -> None:
            response = case.call()
            calls.append(operation.label)
            try:
                case.validate_response(response, checks=wanted)
            except AssertionError as exc:  # schemathesis' failures are AssertionErrors
                failures.append(f"{operation.label}: {exc}")

        run()

    for result in schema.get_all_operations():
        fuzz(result.ok())
    assert failures == [], failures[:3]
    assert len(set(calls)) == 16 and len(calls) >= 150, (len(set(calls)), len(calls))


# -- musicrec serve (gunicorn) -----------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return dict(json.loads(response.read()))


@pytest.mark.slow
def test_serve_hot_reload_by_signal(model_dir: Path, tmp_path: Path) -> None:
    live = tmp_path / "live"
    shutil.copytree(model_dir, live)
    port = _free_port()
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "MUSICREC_ADMIN_TOKEN": "tok"}
    proc = subprocess.Popen([sys.executable, "-m", "musicrec", "serve", "--model", str(live),
                             "--port", str(port), "--workers", "2"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            cwd=tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                assert _get(f"{base}/readyz")["tracks"] == N_TRACKS
                break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("musicrec serve did not start")
        errors: list[str] = []
        stop = threading.Event()

        def load() -> None:
            while not stop.is_set():
                try:
                    _get(f"{base}/v1/tracks/t003/similar?n=5")
                except Exception as exc:  # noqa: BLE001
                    errors.append(repr(exc))

        clients = [threading.Thread(target=load) for _ in range(3)]
        for c in clients:
            c.start()
        (tmp_path / "audio").mkdir()
        hybrid_model(live, tmp_path / "audio", n_tracks=120, seed=3)
        proc.send_signal(signal.SIGHUP)
        for _ in range(100):
            if _get(f"{base}/readyz")["tracks"] == 120:
                break
            time.sleep(0.1)
        assert _get(f"{base}/readyz")["tracks"] == 120
        # a broken model: refused, the old one keeps serving
        (live / "items.npy").unlink()
        request = urllib.request.Request(f"{base}/v1/admin/reload", method="POST",
                                         headers={"Authorization": "Bearer tok"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        assert refused.value.code == 409
        refused.value.close()
        proc.send_signal(signal.SIGHUP)
        time.sleep(1.5)
        stop.set()
        for c in clients:
            c.join()
        assert _get(f"{base}/readyz")["tracks"] == 120
        assert errors == []
    finally:
        proc.terminate()
        output = proc.communicate(timeout=30)[0].decode()
    assert "reload refused, the old model keeps serving" in output


# -- hostile clients under musicrec serve ------------------------------------------------------
def _raw(port: int, data: bytes, *, wait: float = 10.0) -> bytes:
    """Send raw bytes, read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as s:
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


def _status_and_json(response: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = response.partition(b"\r\n\r\n")
    assert b"Content-Type: application/json" in head, head
    return int(head.split()[1]), dict(json.loads(body))


@pytest.fixture(scope="module")
def served(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """``musicrec serve`` with one worker of two threads and short read deadlines."""
    port = _free_port()
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "musicrec", "serve", "--model", str(model_dir), "--port",
         str(port), "--workers", "1", "--threads", "2", "--header-timeout", "2",
         "--body-timeout", "1", "--max-upload-mb", "0.5"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        cwd=tmp_path_factory.mktemp("serve"))
    try:
        for _ in range(150):
            try:
                _get(f"http://127.0.0.1:{port}/healthz")
                break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("musicrec serve did not start")
        yield port
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


@pytest.mark.slow
def test_slow_clients_hold_no_thread(served: int) -> None:
    """Clients that send their headers a byte at a time, and one that declares a body it
    never sends, outnumber the worker's two threads; the server still answers at once,
    and each slow client gets a JSON 408 at its deadline."""
    with contextlib.ExitStack() as stack:
        slow = [stack.enter_context(socket.create_connection(("127.0.0.1", served)))
                for _ in range(8)]
        for s in slow:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHo")
        body = stack.enter_context(socket.create_connection(("127.0.0.1", served)))
        body.sendall(b"POST /v1/similar HTTP/1.1\r\nHost: x\r\nContent-Type: audio/wav\r\n"
                     b"Content-Length: 100\r\n\r\n" + bytes(20))
        for _ in range(5):
            assert _get(f"http://127.0.0.1:{served}/v1/tracks/t003/similar?n=3")["results"]
            for s in slow:
                s.sendall(b"s")
        slow[0].settimeout(10)
        status, payload = _status_and_json(slow[0].recv(65536))
        assert status == 408 and payload == {
            "error": "request_timeout", "message": "the request headers did not arrive in time"}
        body.settimeout(10)
        status, payload = _status_and_json(body.recv(65536))
        assert (status, payload["message"]) == (408, "the request body did not arrive in time")


@pytest.mark.slow
def test_expect_100_continue_is_answered_before_the_body(served: int) -> None:
    """curl withholds a body over 1 MB until it sees 100 Continue (or 1 s passes): the
    buffering worker sends it as soon as the headers are in."""
    body = json.dumps({"tracks": ["t001"], "n": 2}).encode()
    with socket.create_connection(("127.0.0.1", served), timeout=5) as s:
        s.sendall(b"POST /v1/recommendations HTTP/1.1\r\nHost: x\r\nContent-Type: "
                  b"application/json\r\nExpect: 100-continue\r\nConnection: close\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body))
        assert s.recv(1024).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        s.sendall(body)
        response = b""
        while chunk := s.recv(65536):
            response += chunk
    final = response[response.rindex(b"HTTP/1.1 "):]
    assert final.startswith(b"HTTP/1.1 200") and b'"results"' in final


@pytest.mark.slow
@pytest.mark.parametrize(("request_bytes", "status", "code", "message"), [
    (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri_too_long",
     "Request Line is too large (5014 > 4094)"),
    (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(120))
     + b"\r\n", 431, "headers_too_large", "limit request headers fields"),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"y" * 70000 + b"\r\n\r\n", 431,
     "headers_too_large", "the request headers exceed 65536 bytes"),
    (b"BAD\r\n\r\n", 400, "bad_request", "Invalid HTTP request line: 'BAD'"),
    (b"POST /v1/similar HTTP/1.1\r\nHost: x\r\nContent-Type: audio/wav\r\n"
     b"Content-Length: 20000000\r\n\r\n", 413, "payload_too_large",
     "the body declares 20000000 bytes; at most 524288 are allowed"),
    (b"POST /v1/similar HTTP/1.1\r\nHost: x\r\nContent-Type: audio/wav\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n" + (b"10000\r\n" + bytes(0x10000) + b"\r\n") * 9,
     413, "payload_too_large", "the chunked body exceeds 524288 bytes"),
])
def test_transport_errors_are_json(served: int, request_bytes: bytes, status: int, code: str,
                                   message: str) -> None:
    assert _status_and_json(_raw(served, request_bytes)) == (
        status, {"error": code, "message": message})


def test_serve_answer_cache_option() -> None:
    from musicrec.cli import build_parser
    from musicrec.commands.serve import ANSWER_CACHE

    parse = build_parser().parse_args
    assert parse(["serve", "--model", "m"]).answer_cache == ANSWER_CACHE == 100_000
    assert parse(["serve", "--model", "m", "--answer-cache", "0"]).answer_cache == 0
    with pytest.raises(SystemExit) as exc:
        parse(["serve", "--model", "m", "--answer-cache", "-1"])
    assert "argument --answer-cache: -1 must be at least 0" in str(exc.value.code)
