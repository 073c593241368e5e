"""The Subsonic API under /rest/: a real client library (py-sonic) against a real server
on a loopback port, the spec's auth and error codes in JSON and XML, albums, streaming
with ranges, and passwords kept out of the logs."""

from __future__ import annotations

import hashlib
import logging
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from musicrec.api import create_app
from musicrec.data.catalog import TrackCatalog
from musicrec.data.logs import ListeningLog
from musicrec.errors import DataFormatError
from musicrec.recommender.cf import CFModel
from musicrec.recommender.pipeline import build_model_dir

NS = "{http://subsonic.org/restapi}"
PASSWORD = "sesame"


def make_model(root: Path, *, albums: bool) -> Path:
    rng = np.random.default_rng(0)
    n = 40
    ids = [f"t{t:02d}" for t in range(n)]
    sr = 8000
    paths = []
    for k, tid in enumerate(ids[:10]):  # ten tracks have audio
        t = np.arange(sr * 2) / sr
        sf.write(root / f"{tid}.wav", (0.2 * np.sin(2 * np.pi * (200 + 20 * k) * t)
                                       ).astype(np.float32), sr)
        paths.append(str(root / f"{tid}.wav"))
    frame = pd.DataFrame({
        "track_id": ids, "title": [f"Reel {k}" if k % 2 else f"Jig {k}" for k in range(n)],
        "artist": [f"Band {k % 4}" for k in range(n)],
        "audio_path": paths + [None] * (n - 10)})
    if albums:
        frame["album"] = [f"Record {k % 8}" for k in range(n)]
    rows = [(f"u{u}", ids[t], 1) for u in range(60) for t in rng.choice(n, 6, replace=False)]
    log = ListeningLog.from_frame(pd.DataFrame(rows, columns=["user", "track", "plays"]),
                                  weight_col="plays")
    return build_model_dir(root / "model", log=log, catalog=TrackCatalog(frame),
                           content_ids=ids,
                           content=rng.standard_normal((n, 8)).astype(np.float32),
                           cf_model=CFModel(factors=4, iterations=3, random_state=0),
                           n_trees=3)


@pytest.fixture(scope="module")
def users_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("users") / "users.txt"
    path.write_text(f"# Subsonic users\nalice:{PASSWORD}\n\nbob:pa:ss\n")
    return path


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, users_file: Path) -> Any:
    root = tmp_path_factory.mktemp("subsonic")
    return create_app({"MODEL_DIR": make_model(root, albums=False),
                       "SUBSONIC_USERS": users_file, "TESTING": True})


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()


AUTH = {"u": "alice", "p": PASSWORD, "v": "1.16.1", "c": "test"}


def call(client: Any, method: str, **params: Any) -> dict[str, Any]:
    response = client.get(f"/rest/{method}", query_string={**AUTH, "f": "json", **params})
    assert response.status_code == 200
    body: dict[str, Any] = response.json["subsonic-response"]
    return body


@pytest.fixture(scope="module")
def server(app: Any) -> Iterator[int]:
    from werkzeug.serving import make_server

    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield int(httpd.server_port)
    httpd.shutdown()
    httpd.server_close()
    thread.join()


# -- a real client --------------------------------------------------------------------------------
def test_py_sonic_logs_in_searches_gets_similar_songs_and_streams(server: int) -> None:
    libsonic = pytest.importorskip("libsonic")
    conn = libsonic.Connection("http://127.0.0.1", "alice", PASSWORD, port=server)
    assert conn.ping() is True  # token auth: t = md5(password + salt), s
    found = conn.search3("reel 33")["searchResult3"]
    assert [s["id"] for s in found["song"]] == ["t33"]
    assert found["song"][0]["title"] == "Reel 33" and found["song"][0]["artist"] == "Band 1"
    similar = conn.getSimilarSongs("t03", count=5)["similarSongs"]["song"]
    assert len(similar) == 5 and "t03" not in {s["id"] for s in similar}
    similar2 = conn.getSimilarSongs2("t03", count=5)["similarSongs2"]["song"]
    assert [s["id"] for s in similar2] == [s["id"] for s in similar]  # the same radio
    with conn.stream("t03") as audio:  # read to the end: the server sends it all
        data = audio.read()
        assert audio.info().get("Content-Type") == "audio/x-wav"
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE" and len(data) == 44 + 2 * 16000
    # legacy auth (p=enc:hex) works too, and a wrong password is error 40
    legacy = libsonic.Connection("http://127.0.0.1", "alice", PASSWORD, port=server,
                                 legacyAuth=True)
    assert legacy.ping() is True
    wrong = libsonic.Connection("http://127.0.0.1", "alice", "nope", port=server)
    with pytest.raises(libsonic.errors.CredentialError, match="Wrong username or password"):
        wrong.ping()


# -- authentication ------------------------------------------------------------------------------
def test_token_plain_and_hex_passwords(client: Any) -> None:
    salt = "c19b2d"
    token = hashlib.md5((PASSWORD + salt).encode()).hexdigest()
    base = {"u": "alice", "f": "json"}
    ok = {"status": "ok"}
    for auth in ({"t": token, "s": salt}, {"p": PASSWORD},
                 {"p": "enc:" + PASSWORD.encode().hex()},
                 {"u": "bob", "p": "pa:ss"}):  # the password may contain ':'
        body = client.get("/rest/ping.view", query_string={**base, **auth}).json
        assert body["subsonic-response"].items() >= ok.items(), auth
    for auth, code in (({"t": token, "s": "other"}, 40), ({"p": "wrong"}, 40),
                       ({"p": "enc:zz"}, 40), ({"u": "mallory", "p": PASSWORD}, 40),
                       ({"t": token}, 10), ({}, 10), ({"u": None, "p": PASSWORD}, 10)):
        query = {k: v for k, v in {**base, **auth}.items() if v is not None}
        body = client.get("/rest/ping", query_string=query).json["subsonic-response"]
        assert body["status"] == "failed" and body["error"]["code"] == code, auth
        assert PASSWORD not in str(body)


def test_form_post_and_public_extensions(client: Any) -> None:
    body = client.post("/rest/ping.view", data={**AUTH, "f": "json"}).json
    assert body["subsonic-response"]["status"] == "ok"
    ext = client.get("/rest/getOpenSubsonicExtensions", query_string={"f": "json"}).json
    assert ext["subsonic-response"]["openSubsonicExtensions"] == [
        {"name": "formPost", "versions": [1]}]
    assert ext["subsonic-response"]["openSubsonic"] is True


def test_passwords_are_never_logged(server: int, caplog: pytest.LogCaptureFixture) -> None:
    import urllib.request

    caplog.set_level(logging.INFO)
    for query in (f"u=alice&p={PASSWORD}&f=json", "u=alice&t=0123abcd&s=pepper&f=json",
                  f"u=alice&p=enc:{PASSWORD.encode().hex()}"):
        with urllib.request.urlopen(f"http://127.0.0.1:{server}/rest/ping?{query}") as r:
            r.read()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "/rest/ping?u=alice&p=***" in text  # the request line is logged, masked
    for secret in (PASSWORD, PASSWORD.encode().hex(), "0123abcd", "pepper"):
        assert secret not in text


def test_users_file_errors(tmp_path: Path) -> None:
    cases = {"nocolon\n": "line 1: expected 'user:password'",
             "a:1\n:2\n": "line 2: expected 'user:password'",
             "a:1\na:2\n": "line 2: user 'a' appears twice",
             "# nobody\n": "names no user"}
    for text, message in cases.items():
        path = tmp_path / "u.txt"
        path.write_text(text)
        with pytest.raises(DataFormatError, match=message) as info:
            create_app({"SUBSONIC_USERS": path})
        assert "2\n" not in str(info.value)
    with pytest.raises(DataFormatError, match="cannot read the Subsonic users file"):
        create_app({"SUBSONIC_USERS": tmp_path / "missing.txt"})


# -- browsing ----------------------------------------------------------------------------------
def test_artists_albums_and_songs(client: Any) -> None:
    artists = call(client, "getArtists")["artists"]["index"]
    assert [i["name"] for i in artists] == ["B"]
    bands = artists[0]["artist"]
    assert [a["name"] for a in bands] == ["Band 0", "Band 1", "Band 2", "Band 3"]
    assert all(a["albumCount"] == 1 for a in bands)
    artist = call(client, "getArtist", id=bands[1]["id"])["artist"]
    (album,) = artist["album"]
    assert album["name"] == "Band 1" and album["songCount"] == 10  # one album per artist
    full = call(client, "getAlbum", id=album["id"])["album"]
    assert [s["id"] for s in full["song"]] == [f"t{k:02d}" for k in range(1, 40, 4)]
    song = call(client, "getSong", id="t01")["song"]
    assert song["duration"] == 2 and song["suffix"] == "wav" and song["albumId"] == album["id"]
    assert song["size"] > 32000 and song["artistId"] == bands[1]["id"]
    assert full["duration"] == 2 * 3  # t01, t05 and t09 have 2-s audio
    assert "size" not in call(client, "getSong", id="t13")["song"]  # no audio file
    folders = call(client, "getMusicFolders")["musicFolders"]["musicFolder"]
    assert folders == [{"id": 1, "name": "musicrec"}]
    assert call(client, "getLicense")["license"]["valid"] is True


def test_album_column_is_used_when_present(tmp_path: Path, users_file: Path) -> None:
    app = create_app({"MODEL_DIR": make_model(tmp_path, albums=True),
                      "SUBSONIC_USERS": users_file})
    client = app.test_client()
    index = call(client, "getArtists")["artists"]["index"][0]["artist"]
    assert [a["albumCount"] for a in index] == [2, 2, 2, 2]
    artist = call(client, "getArtist", id=index[0]["id"])["artist"]
    assert [a["name"] for a in artist["album"]] == ["Record 0", "Record 4"]
    songs = call(client, "getAlbum", id=artist["album"][1]["id"])["album"]["song"]
    assert [s["id"] for s in songs] == ["t04", "t12", "t20", "t28", "t36"]


def test_search_random_top_and_similar(client: Any) -> None:
    result = call(client, "search3", query="band 2", songCount=3, songOffset=1)
    found = result["searchResult3"]
    assert [a["name"] for a in found["artist"]] == ["Band 2"]
    # songs whose title or artist holds both words ("2" also in "Jig 12")
    assert [s["id"] for s in found["song"]] == ["t06", "t10", "t12"]
    everything = call(client, "search3", query='""', songCount=500)["searchResult3"]
    assert len(everything["song"]) == 40 and len(everything["album"]) == 4
    random = call(client, "getRandomSongs", size=7)["randomSongs"]["song"]
    assert len(random) == 7 and len({s["id"] for s in random}) == 7
    top = call(client, "getTopSongs", artist="band 3", count=4)["topSongs"]["song"]
    plays = [s["playCount"] for s in top]
    assert len(top) == 4 and plays == sorted(plays, reverse=True)
    assert all(s["artist"] == "Band 3" for s in top)
    artist_id = call(client, "getArtists")["artists"]["index"][0]["artist"][0]["id"]
    by_artist = call(client, "getSimilarSongs2", id=artist_id, count=6)
    assert len(by_artist["similarSongs2"]["song"]) == 6
    album_id = call(client, "getSong", id="t05")["song"]["albumId"]
    assert len(call(client, "getSimilarSongs", id=album_id, count=3)["similarSongs"]["song"]) == 3


@pytest.mark.parametrize("method, params, code, text", [
    ("getSong", {}, 10, "Required parameter is missing: id"),
    ("getSong", {"id": "nope"}, 70, "Song not found: nope"),
    ("getArtist", {"id": "ar-x"}, 70, "Artist not found: ar-x"),
    ("getAlbum", {"id": "al-x"}, 70, "Album not found: al-x"),
    ("getSimilarSongs", {"id": "zz"}, 70, "Song, album or artist not found: zz"),
    ("stream", {"id": "t30"}, 70, "Song has no audio file: t30"),
    ("getTopSongs", {}, 10, "Required parameter is missing: artist"),
    ("search3", {"query": "x", "songCount": "many"}, 0, "songCount='many' must be an integer"),
    ("getPlaylists", {}, 0, "Unknown or unsupported method: getPlaylists"),
])
def test_errors_use_the_spec_codes(client: Any, method: str, params: dict[str, Any],
                                   code: int, text: str) -> None:
    body = call(client, method, **params)
    assert body["status"] == "failed" and body["error"] == {"code": code, "message": text}


def test_xml_is_the_default_format(client: Any) -> None:
    response = client.get("/rest/getArtist.view", query_string={
        **AUTH, "id": call(client, "getSong", id="t02")["song"]["artistId"]})
    assert response.mimetype == "application/xml"
    root = ET.fromstring(response.data)
    assert root.tag == NS + "subsonic-response" and root.get("status") == "ok"
    assert root.get("version") == "1.16.1" and root.get("openSubsonic") == "true"
    artist = root.find(NS + "artist")
    assert artist is not None and artist.get("name") == "Band 2"
    album = artist.find(NS + "album")
    assert album is not None and album.get("songCount") == "10"
    failed = ET.fromstring(client.get("/rest/getSong", query_string={**AUTH, "id": "x"}).data)
    error = failed.find(NS + "error")
    assert failed.get("status") == "failed" and error is not None
    assert error.get("code") == "70"
    jsonp = client.get("/rest/ping", query_string={**AUTH, "f": "jsonp", "callback": "cb"})
    assert jsonp.data.startswith(b'cb({"subsonic-response": {"status": "ok"')


def test_stream_supports_ranges(client: Any) -> None:
    with client.get("/rest/stream", query_string={**AUTH, "id": "t00"}) as whole, \
            client.get("/rest/stream", query_string={**AUTH, "id": "t00"},
                       headers={"Range": "bytes=0-99"}) as part:
        assert whole.status_code == 200 and part.status_code == 206
        assert part.data == whole.data[:100]
        assert part.headers["Content-Range"] == f"bytes 0-99/{len(whole.data)}"


def test_off_without_a_users_file() -> None:
    client = create_app({"MODEL_DIR": None}).test_client()
    assert client.get("/rest/ping", query_string=AUTH).status_code == 404


def test_files_changed_on_disk_make_it_answer_an_error(tmp_path: Path, users_file: Path
                                                       ) -> None:
    import os

    model = make_model(tmp_path, albums=False)
    client = create_app({"MODEL_DIR": model, "SUBSONIC_USERS": users_file,
                         "WATCH_INTERVAL": 0}).test_client()
    assert call(client, "getSong", id="t01")["status"] == "ok"
    os.truncate(model / "content.npy", 1000)
    body = call(client, "getSimilarSongs", id="t01")
    assert body["status"] == "failed" and body["error"]["code"] == 0
    assert body["error"]["message"].startswith("the model cannot answer: content.npy changed")
