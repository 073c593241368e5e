"""The typed contract of the HTTP API: request models (pydantic) and response shapes.

Requests are pydantic models, validated once per request by :func:`parse`; a bad value
becomes a 400 whose message names the field, the value and what is allowed, worded from
the same JSON Schema that the OpenAPI document shows (:mod:`musicrec.api.openapi`), so the
document and the checks cannot disagree.

Responses are :class:`TypedDict` shapes: the views build plain dicts that mypy checks
against them, and pydantic turns them into the document's schemas. Nothing is
instantiated or re-validated per response (schemathesis checks that responses conform).

Examples
--------
>>> parse(SimilarQuery, {"n": "5", "alpha": "0.25"}).n
5
>>> parse(SimilarQuery, {"alpha": "1.5"})
Traceback (most recent call last):
...
musicrec.api.errors.APIError: alpha='1.5' must be a number from 0 to 1
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any, Literal, NotRequired, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PydanticUserError,
    ValidationError,
    create_model,
    model_validator,
)
from pydantic_core import PydanticCustomError
from typing_extensions import TypedDict

from musicrec.api.errors import APIError
from musicrec.recommender.tags import MAX_QUERY_CHARS

# -- the limits: stated by the document, enforced by the models ---------------------------
#: Largest ``offset`` of a page.
MAX_OFFSET = 10**9
#: Largest ``limit`` of a page of tracks, and of users.
MAX_TRACK_PAGE, MAX_USER_PAGE = 100, 1000
#: Largest play count of one track in ``POST /v1/recommendations``.
MAX_PLAYS = 1e9
#: Largest ``max_per_artist``.
MAX_PER_ARTIST = 1000
#: Largest list of track ids in a request body.
MAX_TRACK_LIST = 10_000
#: Most seed tracks of a radio.
MAX_SEEDS = 50
#: ``n`` of the models as declared; an app with another ``MAX_N`` validates and documents
#: with a copy bounded by its own (:func:`bounded`).
DEFAULT_MAX_N = 100


@dataclass(frozen=True)
class Says:
    """The message of a bad value of a field, where the generic one (from its schema)
    would not say what is wrong: ``text`` for any error, ``too_short`` for too few items
    or characters. ``{name}`` and ``{value}`` are filled in."""

    text: str
    too_short: str | None = None


# -- request models -------------------------------------------------------------------------
class Query(BaseModel):
    """Query parameters; unknown ones are ignored (as browsers add their own)."""

    model_config = ConfigDict(extra="ignore", frozen=True)


Count = Annotated[int, Field(ge=1, le=DEFAULT_MAX_N, description="number of results")]
PerArtist = Annotated[int, Field(ge=1, le=MAX_PER_ARTIST,
                                 description="at most this many results by one artist")]
Alpha = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False,
                               description="0 = listeners also played, 1 = sounds like "
                                           "(default 0.5 on a hybrid model)")]
Offset = Annotated[int, Field(ge=0, le=MAX_OFFSET, description="first result of the page")]
Unit = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
#: The text encoders of :data:`musicrec.embedding.text.TEXT_ENCODERS` (a test keeps the two
#: in step).
TextEncoder = Literal["minilm", "wordllama"]
#: The spaces of :data:`musicrec.recommender.layout.SPACES` (a test keeps the two in step).
Space = Literal["content", "cf"]


class UserPageQuery(Query):
    offset: Offset = 0
    limit: Annotated[int, Field(ge=1, le=MAX_USER_PAGE, description="user ids per page")] = 20


class UserRecommendationsQuery(Query):
    n: Count = 10
    exclude_played: Annotated[bool, Field(description="leave out tracks the user played")] \
        = True
    max_per_artist: PerArtist | None = None


class CountQuery(Query):
    n: Count = 10


class TrackSearchQuery(Query):
    q: Annotated[str, Field(max_length=200,
                            description="words to search for (empty: every track)")] = ""
    offset: Offset = 0
    limit: Annotated[int, Field(ge=1, le=MAX_TRACK_PAGE, description="results per page")] = 20


class SimilarQuery(Query):
    n: Count = 10
    alpha: Alpha | None = None
    max_per_artist: PerArtist | None = None


class RadioQuery(Query):
    seed: Annotated[list[str], Field(max_length=MAX_SEEDS,
                                     description="seed track ids (repeat the parameter)")] = []
    artist: Annotated[str | None, Field(description="seed with this artist's tracks")] = None
    user: Annotated[str | None, Field(description="seed with this user's most played tracks "
                                                  "(when no other seeds)")] = None
    cursor: Annotated[str | None, Field(description="continue the radio that returned this "
                                                    "cursor")] = None
    n: Count = 10
    alpha: Alpha | None = None
    variety: Annotated[Unit | None, Field(description="0 = always the closest next track; "
                                                      "higher spreads out (MMR); default 0.1")
                       ] = None
    popularity: Annotated[Unit | None, Field(description="weight of the prior for tracks many "
                                                         "listeners played (0 = none); "
                                                         "default 0.5")] = None
    random_seed: Annotated[Annotated[int, Field(ge=0, le=2**31 - 1)] | None,
                           Field(description="the same number gives the same radio "
                                             "(default 0)")] = None


class TextSearchQuery(Query):
    q: Annotated[str, Field(min_length=1, max_length=MAX_QUERY_CHARS, pattern=r"\S",
                            description="words describing the music"),
                 Says("{name} must be a non-empty text, e.g. q=calm+piano")]
    n: Count = 10
    max_per_artist: PerArtist | None = None
    tau: Annotated[Annotated[float, Field(ge=0.001, le=10, allow_inf_nan=False)] | None,
                   Field(description="softmax temperature over query-to-tag cosines "
                                     "(default 0.05)")] = None
    text_encoder: Annotated[TextEncoder | None, Field(description="text model (default "
                                                                  "minilm)")] = None


class MapQuery(Query):
    space: Annotated[Space, Field(description="content (sounds like) or cf (listened to by "
                                              "the same people)")] = "content"


TrackIds = Annotated[list[str], Field(max_length=MAX_TRACK_LIST),
                     Says("{name} must be a list of track id strings")]
PlayCount = Annotated[float, Field(gt=0, le=MAX_PLAYS, allow_inf_nan=False, strict=True)]


class ListenerRequest(BaseModel):
    """The body of ``POST /v1/recommendations``: a listener who is not in the data."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tracks: Annotated[list[str], Field(min_length=1, max_length=MAX_TRACK_LIST),
                      Says("{name} must be a list of track id strings",
                           too_short="{name} must name at least one track")]
    plays: Annotated[Annotated[list[PlayCount], Field(min_length=1,
                                                      max_length=MAX_TRACK_LIST)] | None,
                     Field(description="play counts, one per entry of tracks"),
                     Says(f"{{name}} must be a list of numbers above 0 and at most "
                          f"{MAX_PLAYS:g}")] = None
    n: Count = 10
    exclude: TrackIds = []
    max_per_artist: PerArtist | None = None

    @model_validator(mode="after")
    def _one_count_per_track(self) -> ListenerRequest:
        if self.plays is not None and len(self.plays) != len(self.tracks):
            raise PydanticCustomError("mismatch", "{plays} play counts for {tracks} tracks",
                                      {"plays": len(self.plays), "tracks": len(self.tracks)})
        return self


M = TypeVar("M", bound=BaseModel)


@cache
def bounded(model: type[M], max_n: int) -> type[M]:
    """``model`` with ``n`` at most ``max_n`` (an app's ``MAX_N``): the same model when
    that is the declared bound or it has no ``n``."""
    if max_n == DEFAULT_MAX_N or "n" not in model.model_fields:
        return model
    count = Annotated[int, Field(ge=1, le=max_n, description="number of results")]
    try:
        return create_model(model.__name__, __base__=model,
                            __module__=model.__module__, n=(count, 10))
    except PydanticUserError as exc:  # pragma: no cover - a programming error
        raise TypeError(f"cannot bound n of {model.__name__}: {exc}") from exc


# -- validation -----------------------------------------------------------------------------
@cache
def _list_fields(model: type[BaseModel]) -> tuple[str, ...]:
    """The fields of a query model that a parameter may repeat (``?seed=a&seed=b``)."""
    return tuple(name for name, schema in field_schemas(model).items()
                 if schema.get("type") == "array")


def parse_query(model: type[M], args: Any) -> M:
    """Validate a query string (a werkzeug ``MultiDict``) against ``model``."""
    data = args.to_dict()
    for name in _list_fields(model):
        if name in data:
            data[name] = args.getlist(name)
    return parse(model, data)


def parse(model: type[M], data: Any) -> M:
    """``model`` validated from ``data`` (a dict, or the bytes of a JSON body).

    Raises
    ------
    APIError
        400 ``bad_request``, its message naming the first bad field and value.
    """
    try:
        if isinstance(data, bytes | str):
            # strict: JSON has its own types, so `"n": true` or `"n": "5"` is an error
            return model.model_validate_json(data, strict=True)
        return model.model_validate(data)
    except ValidationError as exc:
        raise APIError(400, "bad_request",
                       message(model, exc, query=not isinstance(data, bytes | str))) from None


_INT = re.compile(r"-?[0-9]{1,12}")


def message(model: type[BaseModel], exc: ValidationError, query: bool = True) -> str:
    """The first error of ``exc`` in words: the field, its value and what is allowed
    (``query``: the values are a query string's, where every value is a string)."""
    error = exc.errors(include_url=False)[0]
    kind, loc, value = error["type"], error["loc"], error.get("input")
    if kind == "json_invalid":
        if "recursion limit" in error["msg"]:
            return "the JSON body is nested too deeply"
        return f"the body is not valid JSON: {error['msg'].removeprefix('Invalid JSON: ')}"
    if kind == "model_type":
        return "the body must be a JSON object"
    if kind == "extra_forbidden":
        return f"unknown field {loc[0]!r}"
    if not loc or loc[0] not in model.model_fields:
        return str(error["msg"])
    name = str(loc[0])
    says = next((m for m in model.model_fields[name].metadata if isinstance(m, Says)), None)
    schema = field_schemas(model)[name]
    if kind in ("too_long", "string_too_long"):
        what = "characters" if schema.get("type") == "string" else "entries"
        limit = schema.get("maxLength", schema.get("maxItems"))
        return f"{name} has {len(value)} {what}; at most {limit} are allowed"
    if says is not None:
        text = says.too_short if kind in ("too_short", "string_too_short") and \
            says.too_short else says.text
        return text.format(name=name, value=value)
    shown = int(value) if query and isinstance(value, str) and _INT.fullmatch(value) \
        else value
    low, high = schema.get("minimum"), schema.get("maximum")
    if schema.get("type") == "integer":
        return f"{name}={shown!r} must be an integer from {low} to {high}"
    if schema.get("type") == "number":
        return f"{name}={value!r} must be a number from {low:g} to {high:g}"
    if schema.get("type") == "boolean":
        return f"{name}={value!r} must be true or false"
    if "enum" in schema:
        return f"{name}={value!r} must be one of {', '.join(map(repr, schema['enum']))}"
    return f"{name}={value!r}: {error['msg']}"


@cache
def field_schemas(model: type[BaseModel]) -> dict[str, dict[str, Any]]:
    """Each field's JSON Schema as the document states it, an optional field's ``null``
    left out (a query parameter is absent, never null)."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    return {name: non_null(prop) for name, prop in schema["properties"].items()}


def non_null(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` without its ``null`` alternative and a ``None`` default."""
    options = schema.get("anyOf")
    out = dict(schema)
    if options is not None and {"type": "null"} in options:
        rest = [o for o in options if o != {"type": "null"}]
        del out["anyOf"]
        out.update(rest[0] if len(rest) == 1 else {"anyOf": rest})
    if out.get("default", 0) is None:
        del out["default"]
    return out


# -- response shapes ------------------------------------------------------------------------
class Error(TypedDict):
    """Every error, whatever its status."""

    error: str
    message: str


class TrackSummary(TypedDict):
    track_id: str
    title: str
    artist: str
    audio_url: str | None


class Track(TrackSummary):
    """A track's metadata; every other catalogue column is passed through."""

    has_content: bool
    listeners: Annotated[int, Field(ge=0)]


RecommendationKind = Literal["cf", "content", "played-content", "hybrid", "popular",
                             "fingerprint", "radio-content", "tags", "clap"]


class Recommendation(TrackSummary):
    score: float
    kind: RecommendationKind
    reason: Annotated[str, Field(description="the reason, with track titles")]
    because: str | None
    because_title: str | None


class PlayedTrack(TrackSummary):
    plays: Annotated[float, Field(gt=0)]


class UserHistory(TypedDict):
    user_id: str
    total: Annotated[int, Field(ge=0, description="tracks the user played in all")]
    results: list[PlayedTrack]


class UserRecommendations(TypedDict):
    user_id: str
    results: list[Recommendation]


class SimilarTracks(TypedDict):
    track_id: str
    alpha: float | None
    results: list[Recommendation]


class RadioState(TypedDict):
    seeds: list[str]
    source: str
    played: Annotated[int, Field(ge=0)]
    params: NotRequired[dict[str, Any]]


class Radio(TypedDict):
    radio: RadioState
    cursor: Annotated[str, Field(description="pass it back as ?cursor= for the next tracks")]
    exhausted: Annotated[bool, Field(description="no further track within the radio's reach")]
    results: list[Recommendation]


class ListenerRecommendations(TypedDict):
    results: list[Recommendation]


class AudioQuery(TypedDict):
    match: Annotated[dict[str, Any] | None, Field(
        description="the identified catalogue recording (track_id, offset_s, confidence, "
                    "title), if fingerprints matched")]
    results: list[Recommendation]


class SearchPage(TypedDict):
    q: str
    total: Annotated[int, Field(ge=0)]
    offset: int
    limit: int
    results: list[TrackSummary]


class QueryPart(TypedDict):
    text: str
    best_tag: str
    cosine: float
    matched: bool
    tags: dict[str, float]


class TextMatch(TrackSummary):
    score: float
    reason: Annotated[str, Field(description='e.g. "tagged piano, quiet"')]
    tags: Annotated[dict[str, float], Field(description="the track's most probable tags")]


class TextSearch(TypedDict):
    q: str
    weak_match: Annotated[bool, Field(description="true when no word of q is close to a tag: "
                                                  "the ranking is then a guess")]
    text_encoder: str
    parts: Annotated[list[QueryPart], Field(description="the whole query and each word, with "
                                                        "the tags they matched and their "
                                                        "weights")]
    results: list[TextMatch]


class CatalogDetails(TypedDict):
    details: Annotated[dict[str, str], Field(
        description="track id -> what tells it apart from the tracks sharing its title and "
                    "artist (only those are listed)")]


Base64 = Annotated[str, Field(json_schema_extra={"contentEncoding": "base64"})]


class CatalogueMap(TypedDict):
    """The catalogue map of one space, compact (see :mod:`musicrec.api.explore`)."""

    space: Space
    method: Annotated[str, Field(description="tsne, tsne+placed or pca")]
    n: Annotated[int, Field(ge=0, description="tracks on the map")]
    tracks: Annotated[int, Field(ge=0, description="tracks in the model")]
    colour_by: Annotated[str, Field(description="the catalogue column of the groups")]
    groups: Annotated[list[str], Field(description="colour groups, largest first; 'other' "
                                                   "last")]
    track_ids: list[str]
    labels: Annotated[list[str], Field(description="title (detail) — artist, one per track")]
    group: Annotated[Base64, Field(description="uint8 per track: its index in groups")]
    xy: Annotated[Base64, Field(description="little-endian uint16 x, y per track; divide by "
                                            "65535 for the unit square")]


class UserPage(TypedDict):
    total: Annotated[int, Field(ge=0)]
    offset: int
    limit: int
    users: list[str]


class Model(TypedDict):
    model_dir: str
    kind: Literal["hybrid", "cf", "content"]
    loaded_at: float
    manifest: dict[str, Any]


class Health(TypedDict):
    status: Literal["ok"]


class Ready(TypedDict):
    status: Literal["ready"]
    kind: str
    tracks: Annotated[int, Field(ge=0)]


class Reload(TypedDict):
    status: Literal["reloaded", "reloading"]
    kind: NotRequired[str]
    tracks: NotRequired[int]
    model_dir: NotRequired[str]
