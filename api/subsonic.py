"""Blueprint ``subsonic``: a subset of the (Open)Subsonic REST API under ``/rest/``.

Music apps that speak Subsonic (DSub, Symfonium, Feishin, Sublime Music, Mopidy-Subidy,
py-sonic, ...) browse the catalogue, stream its audio and play radio through it.
``musicrec serve --subsonic --subsonic-users FILE`` mounts it (config key
``SUBSONIC_USERS``).

Methods (``/rest/NAME`` or ``/rest/NAME.view``, GET or form POST): ``ping``,
``getLicense``, ``getOpenSubsonicExtensions``, ``getMusicFolders``, ``getArtists``,
``getArtist``, ``getAlbum``, ``search3``, ``getSong``, ``stream`` (range requests, the
original file: no transcoding), ``getRandomSongs``, ``getSimilarSongs`` and
``getSimilarSongs2`` (the radio: seeds are the song, the album's tracks or the artist's),
and ``getTopSongs`` (an artist's tracks by listeners). Responses are XML by default, JSON
with ``f=json`` and JSONP with ``f=jsonp&callback=NAME``, as the spec defines; errors are
``status="failed"`` with the spec's codes (0 generic, 10 missing parameter, 40 wrong
username or password, 70 not found), sent with HTTP 200 as Subsonic servers do.

Albums are the catalogue's ``album`` column where it has one; otherwise each artist has
one album, named after the artist. One music folder holds everything.

Authentication follows the spec: ``u`` with either ``t = md5(password + s)`` and ``s``,
or ``p`` (plain, or ``enc:`` + hex). The users file has one ``user:password`` per line
(``#`` starts a comment); the server must keep the plain passwords to check tokens, so
protect the file. Passwords, tokens and salts are never logged: they are masked in
werkzeug's request log, and errors never repeat them.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request

from musicrec import __version__
from musicrec.api.media import audio_file, audio_type, send_audio
from musicrec.api.state import LoadedModel, model_state
from musicrec.errors import DataFormatError, MusicrecError, UnknownIdError

log = logging.getLogger(__name__)

API_VERSION = "1.16.1"
NAMESPACE = "http://subsonic.org/restapi"
MAX_COUNT = 500
UNKNOWN_ARTIST = "(unknown artist)"
#: Spec error codes.
GENERIC, MISSING, WRONG_CREDENTIALS, NOT_FOUND = 0, 10, 40, 70

subsonic = Blueprint("subsonic", __name__, url_prefix="/rest")


class SubsonicError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# -- users ------------------------------------------------------------------------------------
def load_users(path: str | Path) -> dict[str, str]:
    """``user:password`` lines (``#`` comments, blank lines allowed) as a dict."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFormatError(path, f"cannot read the Subsonic users file ({exc})") from None
    users: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, password = line.partition(":")
        name = name.strip()
        if not sep or not name or not password:
            # never echo the line: it may hold a password
            raise DataFormatError(path, "expected 'user:password' with a non-empty user "
                                        "and password", line=number)
        if name in users:
            raise DataFormatError(path, f"user {name!r} appears twice", line=number)
        users[name] = password
    if not users:
        raise DataFormatError(path, "the Subsonic users file names no user")
    return users


def register_subsonic(app: Flask) -> None:
    """Mount ``/rest/`` with the users of ``app.config["SUBSONIC_USERS"]``."""
    app.extensions["subsonic_users"] = load_users(app.config["SUBSONIC_USERS"])
    app.extensions["subsonic_library"] = {}
    app.register_blueprint(subsonic)
    redact = _RedactSecrets()
    werkzeug_log = logging.getLogger("werkzeug")
    if not any(isinstance(f, _RedactSecrets) for f in werkzeug_log.filters):
        werkzeug_log.addFilter(redact)


_SECRET = re.compile(r"([?&](?:p|t|s|apiKey)=)[^&\s\"]*")


class _RedactSecrets(logging.Filter):
    """Masks ``p``, ``t``, ``s`` and ``apiKey`` in logged request lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_SECRET.sub(r"\1***", a) if isinstance(a, str) else a
                                for a in record.args)
        if isinstance(record.msg, str):
            record.msg = _SECRET.sub(r"\1***", record.msg)
        return True


def _authenticate() -> None:
    users: dict[str, str] = current_app.extensions["subsonic_users"]
    user = _param("u")
    if user is None:
        raise SubsonicError(MISSING, "Required parameter is missing: u")
    token, salt, password = _param("t"), _param("s"), _param("p")
    known = users.get(user)
    if token is not None or salt is not None:
        if token is None or salt is None:
            raise SubsonicError(MISSING, "Required parameter is missing: "
                                         + ("t" if token is None else "s"))
        expected = "" if known is None else hashlib.md5(
            (known + salt).encode()).hexdigest()
        ok = hmac.compare_digest(expected.encode(), token.lower().encode())
    elif password is not None:
        if password.startswith("enc:"):
            try:
                password = bytes.fromhex(password[4:]).decode()
            except (ValueError, UnicodeDecodeError):
                raise SubsonicError(WRONG_CREDENTIALS,
                                    "Wrong username or password.") from None
        ok = hmac.compare_digest((known or "").encode(), password.encode())
    else:
        raise SubsonicError(MISSING, "Required parameter is missing: t and s, or p")
    if known is None or not ok:
        log.info("subsonic: wrong credentials for user %r", user)
        raise SubsonicError(WRONG_CREDENTIALS, "Wrong username or password.")


# -- parameters and responses ---------------------------------------------------------------------
def _param(name: str) -> str | None:
    return request.values.get(name)


def _required(name: str) -> str:
    value = _param(name)
    if value is None or value == "":
        raise SubsonicError(MISSING, f"Required parameter is missing: {name}")
    return value


def _int(name: str, default: int, *, low: int = 0, high: int = MAX_COUNT) -> int:
    text = _param(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise SubsonicError(GENERIC, f"{name}={text!r} must be an integer") from None
    if not low <= value <= high:
        raise SubsonicError(GENERIC, f"{name}={value} must be from {low} to {high}")
    return value


def _respond(payload: dict[str, Any], status: str = "ok") -> Response:
    body = {"status": status, "version": API_VERSION, "type": "musicrec",
            "serverVersion": __version__, "openSubsonic": True, **payload}
    fmt = (_param("f") or "xml").lower()
    if fmt == "json":
        return jsonify({"subsonic-response": body})
    if fmt == "jsonp":
        callback = _param("callback") or "callback"
        if not re.fullmatch(r"[A-Za-z_$][\w$.]{0,100}", callback):
            callback = "callback"
        text = current_app.json.dumps({"subsonic-response": body})
        return Response(f"{callback}({text});", mimetype="application/javascript")
    root = ET.Element("subsonic-response", {"xmlns": NAMESPACE})
    _to_xml(root, body)
    xml = ET.tostring(root, encoding="unicode", xml_declaration=False)
    return Response('<?xml version="1.0" encoding="UTF-8"?>\n' + xml,
                    mimetype="application/xml")


def _to_xml(node: ET.Element, value: dict[str, Any]) -> None:
    """Scalars become attributes, dicts child elements, lists repeated children."""
    for key, item in value.items():
        if item is None:
            continue
        if isinstance(item, dict):
            _to_xml(ET.SubElement(node, key), item)
        elif isinstance(item, list):
            for element in item:
                if isinstance(element, dict):
                    _to_xml(ET.SubElement(node, key), element)
                else:
                    ET.SubElement(node, key).text = _text(element)
        else:
            node.set(key, _text(item))


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _error(code: int, message: str) -> Response:
    return _respond({"error": {"code": code, "message": message}}, status="failed")


# -- the library: artists, albums and songs of the loaded model ------------------------------------
@dataclass
class Album:
    id: str
    name: str
    artist_id: str
    artist: str
    songs: list[str] = field(default_factory=list)


@dataclass
class Library:
    """Artists, albums and songs of one loaded model, built on first use."""

    loaded: LoadedModel
    artists: dict[str, str]  # artist id -> name
    albums: dict[str, Album]
    album_of: dict[str, str]  # track id -> album id
    artist_albums: dict[str, list[str]]
    by_album_column: bool
    durations: dict[str, int] = field(default_factory=dict)

    @classmethod
    def build(cls, loaded: LoadedModel) -> Library:
        frame = loaded.recommender.catalog.frame
        by_column = "album" in frame.columns and bool(
            frame["album"].fillna("").astype(str).str.strip().ne("").any())
        artists: dict[str, str] = {}
        albums: dict[str, Album] = {}
        album_of: dict[str, str] = {}
        artist_albums: dict[str, list[str]] = {}
        album_names = (frame["album"].fillna("").astype(str).tolist() if by_column
                       else [""] * len(frame))
        for track_id, artist, album in zip(frame["track_id"], frame["artist"], album_names,
                                           strict=True):
            artist = artist or UNKNOWN_ARTIST
            artist_id = "ar-" + _digest(artist)
            artists.setdefault(artist_id, artist)
            name = album.strip() or (artist if not by_column else "(no album)")
            album_id = "al-" + _digest(artist + "\x00" + name)
            if album_id not in albums:
                albums[album_id] = Album(album_id, name, artist_id, artist)
                artist_albums.setdefault(artist_id, []).append(album_id)
            albums[album_id].songs.append(track_id)
            album_of[track_id] = album_id
        return cls(loaded, artists, albums, album_of, artist_albums, by_column)

    def song(self, track_id: str) -> dict[str, Any]:
        """A Subsonic ``Child`` for a track."""
        rec = self.loaded.recommender
        album = self.albums[self.album_of[track_id]]
        title, _ = self.loaded.labels.get(track_id, (track_id, ""))
        out: dict[str, Any] = {
            "id": track_id, "parent": album.id, "isDir": False, "title": title,
            "album": album.name, "artist": album.artist, "albumId": album.id,
            "artistId": album.artist_id, "type": "music", "mediaType": "song",
            "isVideo": False, "playCount": int(rec.evidence[rec.tracks.to_idx(track_id)])
            if track_id in rec.tracks else 0,
        }
        path = audio_file(self.loaded, track_id)
        if path is not None:
            out.update({"size": path.stat().st_size, "contentType": audio_type(path),
                        "suffix": path.suffix.lstrip(".").lower(),
                        "duration": self.duration(track_id, path),
                        "path": f"{album.artist}/{album.name}/{path.name}"})
        return out

    def duration(self, track_id: str, path: Path) -> int:
        if track_id not in self.durations:
            import soundfile as sf

            try:
                info = sf.info(str(path))
                self.durations[track_id] = int(round(info.frames / info.samplerate))
            except Exception:  # noqa: BLE001 - an unreadable header: duration unknown
                self.durations[track_id] = 0
        return self.durations[track_id]

    def album(self, album_id: str, *, songs: bool = False) -> dict[str, Any]:
        """A Subsonic ``AlbumID3`` (with its songs when asked)."""
        album = self.albums[album_id]
        entries = [self.song(t) for t in album.songs]
        out: dict[str, Any] = {
            "id": album.id, "name": album.name, "artist": album.artist,
            "artistId": album.artist_id, "songCount": len(album.songs),
            "duration": sum(e.get("duration", 0) for e in entries),
            "created": self._created()}
        if songs:
            out["song"] = entries
        return out

    def artist(self, artist_id: str, *, albums: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"id": artist_id, "name": self.artists[artist_id],
                               "albumCount": len(self.artist_albums[artist_id])}
        if albums:
            out["album"] = [self.album(a) for a in self.artist_albums[artist_id]]
        return out

    def _created(self) -> str:
        created = self.loaded.recommender.manifest.get("created")
        return str(created) if created else "1970-01-01T00:00:00Z"


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def _library() -> Library:
    loaded = model_state(current_app).current()
    if loaded is None:
        raise SubsonicError(GENERIC, "no model is loaded yet")
    problem = loaded.watch.problem()  # files changed on disk: never read them
    if problem is not None:
        raise SubsonicError(GENERIC, f"the model cannot answer: {problem}")
    cache: dict[str, Library] = current_app.extensions["subsonic_library"]
    library = cache.get("current")
    if library is None or library.loaded is not loaded:  # built again after a reload
        library = Library.build(loaded)
        cache["current"] = library
    return library


def _song_id(library: Library, name: str = "id") -> str:
    track_id = _required(name)
    if track_id not in library.album_of:
        raise SubsonicError(NOT_FOUND, f"Song not found: {track_id}")
    return track_id


# -- methods ------------------------------------------------------------------------------------
def ping() -> Response:
    return _respond({})


def get_license() -> Response:
    return _respond({"license": {"valid": True}})


def get_open_subsonic_extensions() -> Response:
    return _respond({"openSubsonicExtensions": [{"name": "formPost", "versions": [1]}]})


def get_music_folders() -> Response:
    return _respond({"musicFolders": {"musicFolder": [{"id": 1, "name": "musicrec"}]}})


def get_artists() -> Response:
    library = _library()
    groups: dict[str, list[dict[str, Any]]] = {}
    for artist_id, name in sorted(library.artists.items(), key=lambda kv: kv[1].casefold()):
        letter = name[:1].upper() if name[:1].isalpha() else "#"
        groups.setdefault(letter, []).append(library.artist(artist_id))
    return _respond({"artists": {"ignoredArticles": "",
                                 "index": [{"name": k, "artist": v}
                                           for k, v in sorted(groups.items())]}})


def get_artist() -> Response:
    library = _library()
    artist_id = _required("id")
    if artist_id not in library.artists:
        raise SubsonicError(NOT_FOUND, f"Artist not found: {artist_id}")
    return _respond({"artist": library.artist(artist_id, albums=True)})


def get_album() -> Response:
    library = _library()
    album_id = _required("id")
    if album_id not in library.albums:
        raise SubsonicError(NOT_FOUND, f"Album not found: {album_id}")
    return _respond({"album": library.album(album_id, songs=True)})


def get_song() -> Response:
    library = _library()
    return _respond({"song": library.song(_song_id(library))})


def search3() -> Response:
    library = _library()
    query = (_param("query") or "").strip().strip('"')
    words = query.casefold().split()

    def matches(text: str) -> bool:
        return all(w in text.casefold() for w in words)

    def page(items: list[str], kind: str) -> list[str]:
        offset = _int(f"{kind}Offset", 0, high=10**9)
        return items[offset : offset + _int(f"{kind}Count", 20)]

    artists = [a for a, name in sorted(library.artists.items(), key=lambda kv: kv[1])
               if matches(name)]
    albums = [a for a, album in library.albums.items() if matches(album.name)]
    catalog = library.loaded.recommender.catalog
    _, songs = catalog.search(query, offset=0, limit=len(catalog))
    return _respond({"searchResult3": {
        "artist": [library.artist(a) for a in page(artists, "artist")],
        "album": [library.album(a) for a in page(albums, "album")],
        "song": [library.song(t) for t in page(songs, "song")]}})


def stream() -> Any:
    library = _library()
    track_id = _song_id(library)
    path = audio_file(library.loaded, track_id)
    if path is None:
        raise SubsonicError(NOT_FOUND, f"Song has no audio file: {track_id}")
    return send_audio(path)


def get_random_songs() -> Response:
    import numpy as np

    library = _library()
    size = _int("size", 10)
    ids = list(library.album_of)
    pick = np.random.default_rng().choice(len(ids), size=min(size, len(ids)), replace=False)
    return _respond({"randomSongs": {"song": [library.song(ids[int(i)]) for i in pick]}})


def _similar(element: str) -> Response:
    library = _library()
    target = _required("id")
    count = _int("count", 50, low=1)
    rec = library.loaded.recommender
    if target in library.album_of:
        page = rec.radio([target], n=count)
    elif target in library.albums:
        page = rec.radio(library.albums[target].songs[:5], n=count)
    elif target in library.artists:
        name = library.artists[target]
        if name == UNKNOWN_ARTIST:  # tracks without an artist: seed with a few of them
            first = library.albums[library.artist_albums[target][0]]
            page = rec.radio(first.songs[:5], n=count)
        else:
            page = rec.radio(artist=name, n=count)
    else:
        raise SubsonicError(NOT_FOUND, f"Song, album or artist not found: {target}")
    return _respond({element: {"song": [library.song(r.track_id) for r in page.items]}})


def get_top_songs() -> Response:
    library = _library()
    name = _required("artist")
    count = _int("count", 50)
    rec = library.loaded.recommender
    wanted = name.casefold()
    artist_ids = [a for a, n in library.artists.items() if n.casefold() == wanted]
    tracks = [t for a in artist_ids for al in library.artist_albums[a]
              for t in library.albums[al].songs]
    plays = {t: int(rec.evidence[rec.tracks.to_idx(t)]) if t in rec.tracks else 0
             for t in tracks}
    top = sorted(tracks, key=lambda t: (-plays[t], t))[:count]
    return _respond({"topSongs": {"song": [library.song(t) for t in top]}})


METHODS: dict[str, Callable[[], Any]] = {
    "ping": ping,
    "getLicense": get_license,
    "getOpenSubsonicExtensions": get_open_subsonic_extensions,
    "getMusicFolders": get_music_folders,
    "getArtists": get_artists,
    "getArtist": get_artist,
    "getAlbum": get_album,
    "search3": search3,
    "getSong": get_song,
    "stream": stream,
    "getRandomSongs": get_random_songs,
    "getSimilarSongs": lambda: _similar("similarSongs"),
    "getSimilarSongs2": lambda: _similar("similarSongs2"),
    "getTopSongs": get_top_songs,
}
#: Methods the OpenSubsonic spec requires to answer without credentials.
PUBLIC = {"getOpenSubsonicExtensions"}


@subsonic.route("/<name>", methods=["GET", "POST"])
def dispatch(name: str) -> Any:
    method = name[: -len(".view")] if name.endswith(".view") else name
    try:
        view = METHODS.get(method)
        if method not in PUBLIC:
            _authenticate()
        if view is None:
            raise SubsonicError(GENERIC, f"Unknown or unsupported method: {method}")
        return view()
    except SubsonicError as exc:
        return _error(exc.code, exc.message)
    except UnknownIdError as exc:
        return _error(NOT_FOUND, str(exc))
    except MusicrecError as exc:
        return _error(GENERIC, str(exc))
