"""What validating a request costs with each candidate library, in process, per request.

One route shaped like ``GET /v1/tracks/<track_id>/similar?n=&alpha=&max_per_artist=``
answers ten precomputed items; each variant validates the same three query parameters
its own way:

- ``hand-written``: main's helpers before the typed models (regexes and ``request.args``),
  kept here as the reference;
- ``musicrec @operation``: this package's route declaration (pydantic model, validated
  by :func:`musicrec.api.models.parse_query`);
- ``spectree``: ``@spec.validate(query=Model)``, and with ``resp=`` (response validation);
- ``flask-openapi3``: a typed view on its ``APIBlueprint``;
- ``APIFlask``: ``@bp.input(Schema, location="query")`` with marshmallow.

Each variant's view runs through ``app.full_dispatch_request()`` in one request context
(Flask's routing, hooks and response, no WSGI or test client), ``--number`` times per
repeat; the best of ``--repeat`` repeats, rounds interleaved, is printed per variant with
its difference from the hand-written one, and the OpenAPI version each library writes.

The libraries are not dependencies of musicrec:
``pip install spectree==3.0.0 flask-openapi3==4.3.2 apiflask==3.1.2``; a missing one is
skipped.

    .venv/bin/python benchmarks/bench_api_libraries.py [--number 5000] [--repeat 7]
"""

import argparse
import math
import re
import timeit
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Flask, jsonify, request

ITEMS = [{"track_id": f"t{i}", "title": f"Song {i}", "artist": "a", "audio_url": None,
          "score": 0.5, "kind": "hybrid", "reason": "r", "because": None,
          "because_title": None} for i in range(10)]
URL = "/v1/tracks/t0005/similar?n=10&alpha=0.3&max_per_artist=2"

_INT = re.compile(r"-?[0-9]{1,12}")
_FLOAT = re.compile(r"-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")


def _query_int(name: str, default: int | None, low: int, high: int) -> int | None:
    text = request.args.get(name)
    if text is None:
        return default
    if not _INT.fullmatch(text) or not low <= int(text) <= high:
        raise ValueError(f"{name}={text!r} must be an integer from {low} to {high}")
    return int(text)


def _query_float(name: str, low: float, high: float) -> float | None:
    text = request.args.get(name)
    if text is None:
        return None
    value = float(text) if _FLOAT.fullmatch(text) else math.nan
    if not low <= value <= high:
        raise ValueError(f"{name}={text!r} must be a number from {low:g} to {high:g}")
    return value


def hand_written() -> tuple[Flask, str]:
    app = Flask("hand")

    @app.get("/v1/tracks/<path:track_id>/similar")
    def similar(track_id: str) -> Any:
        n = _query_int("n", 10, 1, 100) or 10
        alpha = _query_float("alpha", 0, 1)
        _query_int("max_per_artist", None, 1, 1000)
        return jsonify({"track_id": track_id, "alpha": alpha, "results": ITEMS[:n]})

    return app, "-"


def musicrec_operation() -> tuple[Flask, str]:
    import musicrec.api.models as m
    from musicrec.api.openapi import operation

    app = Flask("musicrec")
    app.config["MAX_N"] = 100
    bp = Blueprint("bench", __name__, url_prefix="/v1")

    @operation(bp, "/tracks/<path:track_id>/similar", operation_id="similar", summary="",
               query=m.SimilarQuery, ok={200: (m.SimilarTracks, "")})
    def similar(track_id: str, query: m.SimilarQuery) -> Any:
        return jsonify({"track_id": track_id, "alpha": query.alpha,
                        "results": ITEMS[:query.n]})

    app.register_blueprint(bp)
    return app, "3.1.0"


def _pydantic_models() -> tuple[type, type]:
    from pydantic import BaseModel, Field

    class Query(BaseModel):
        n: int = Field(10, ge=1, le=100)
        alpha: float | None = Field(None, ge=0, le=1)
        max_per_artist: int | None = Field(None, ge=1, le=1000)

    class Rec(BaseModel):
        track_id: str
        title: str
        artist: str
        audio_url: str | None
        score: float
        kind: str
        reason: str
        because: str | None
        because_title: str | None

    class Similar(BaseModel):
        track_id: str
        alpha: float | None
        results: list[Rec]

    return Query, Similar


def spectree_variant(validate_response: bool) -> Callable[[], tuple[Flask, str]]:
    def build() -> tuple[Flask, str]:
        from spectree import Response, SpecTree

        query_model, similar_model = _pydantic_models()
        app = Flask("spectree")
        spec = SpecTree("flask", annotations=True)
        resp = Response(HTTP_200=similar_model) if validate_response else None

        @app.get("/v1/tracks/<path:track_id>/similar")
        @spec.validate(query=query_model, resp=resp)
        def similar(track_id: str, query: query_model) -> Any:  # type: ignore[valid-type]
            return jsonify({"track_id": track_id, "alpha": query.alpha,  # type: ignore[attr-defined]
                            "results": ITEMS[:query.n]})  # type: ignore[attr-defined]

        spec.register(app)
        with app.app_context():
            return app, spec.spec["openapi"]

    return build


def flask_openapi3_variant() -> tuple[Flask, str]:
    from flask_openapi3 import APIBlueprint, OpenAPI
    from pydantic import BaseModel

    query_model, _ = _pydantic_models()

    class Path(BaseModel):
        track_id: str

    app = OpenAPI("fo3")
    bp = APIBlueprint("v1", __name__, url_prefix="/v1")

    @bp.get("/tracks/<path:track_id>/similar")
    def similar(path: Path, query: query_model) -> Any:  # type: ignore[valid-type]
        return jsonify({"track_id": path.track_id, "alpha": query.alpha,  # type: ignore[attr-defined]
                        "results": ITEMS[:query.n]})  # type: ignore[attr-defined]

    app.register_api(bp)
    return app, app.api_doc["openapi"]


def apiflask_variant() -> tuple[Flask, str]:
    from apiflask import APIBlueprint, APIFlask, Schema
    from apiflask.fields import Float, Integer
    from apiflask.validators import Range

    class Query(Schema):
        n = Integer(load_default=10, validate=Range(1, 100))
        alpha = Float(load_default=None, allow_none=True, validate=Range(0, 1))
        max_per_artist = Integer(load_default=None, allow_none=True, validate=Range(1, 1000))

    app = APIFlask("apiflask")
    bp = APIBlueprint("v1", __name__, url_prefix="/v1")

    @bp.get("/tracks/<path:track_id>/similar")
    @bp.input(Query, location="query", arg_name="query")
    def similar(track_id: str, query: dict[str, Any]) -> Any:
        return {"track_id": track_id, "alpha": query["alpha"], "results": ITEMS[:query["n"]]}

    app.register_blueprint(bp)
    with app.app_context():
        return app, app.spec["openapi"]


VARIANTS: dict[str, Callable[[], tuple[Flask, str]]] = {
    "hand-written": hand_written,
    "musicrec @operation (pydantic)": musicrec_operation,
    "spectree": spectree_variant(False),
    "spectree + response validation": spectree_variant(True),
    "flask-openapi3": flask_openapi3_variant,
    "APIFlask (marshmallow)": apiflask_variant,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    apps: dict[str, tuple[Flask, str]] = {}
    for name, build in VARIANTS.items():
        try:
            apps[name] = build()
        except ImportError as exc:
            print(f"{name}: skipped ({exc})")
    best: dict[str, float] = {}
    for _ in range(args.repeat):
        for name, (app, _) in apps.items():
            with app.test_request_context(URL):
                response = app.full_dispatch_request()
                assert response.status_code == 200 and len(response.json["results"]) == 10, (
                    name, response.get_data()[:300])
                seconds = timeit.timeit(app.full_dispatch_request, number=args.number)
            best[name] = min(best.get(name, math.inf), seconds / args.number * 1e6)
    reference = best["hand-written"]
    print(f"{'variant':34s} {'us/request':>10s} {'vs hand-written':>16s}  OpenAPI")
    for name, (_, version) in apps.items():
        print(f"{name:34s} {best[name]:10.1f} {best[name] - reference:+15.1f}   {version}")


if __name__ == "__main__":
    main()
