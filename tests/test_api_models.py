"""The API's typed contract: request models, the messages of bad values, and the OpenAPI
document generated from the same models."""

from __future__ import annotations

from typing import Any, get_args

import pytest
from werkzeug.datastructures import MultiDict

from musicrec.api import create_app
from musicrec.api import models as m
from musicrec.api.errors import APIError
from musicrec.api.openapi import OPERATIONS


@pytest.fixture(scope="module")
def unready() -> Any:
    """An app without a model: requests are validated before a view asks for the model,
    so a bad one is a 400 and a good one a 503."""
    return create_app({"MODEL_DIR": None}).test_client()


@pytest.mark.parametrize(("method", "url", "kwargs", "message"), [
    ("get", "/v1/radio?" + "&".join(f"seed=t{i}" for i in range(51)), {},
     "seed has 51 entries; at most 50 are allowed"),
    ("get", "/v1/radio?random_seed=-1", {}, "random_seed=-1 must be an integer from 0 to "
     "2147483647"),
    ("get", "/v1/radio?variety=2", {}, "variety='2' must be a number from 0 to 1"),
    ("get", "/v1/radio?popularity=inf", {}, "popularity='inf' must be a number from 0 to 1"),
    ("get", "/v1/search", {}, "q must be a non-empty text, e.g. q=calm+piano"),
    ("get", "/v1/search?q=%20%20", {}, "q must be a non-empty text, e.g. q=calm+piano"),
    ("get", "/v1/search?q=" + "a" * 201, {}, "q has 201 characters; at most 200 are allowed"),
    ("get", "/v1/search?q=piano&tau=0", {}, "tau='0' must be a number from 0.001 to 10"),
    ("get", "/v1/search?q=piano&text_encoder=bert", {},
     "text_encoder='bert' must be one of 'minilm', 'wordllama'"),
    ("get", "/v1/tracks?q=" + "b" * 201, {}, "q has 201 characters; at most 200 are allowed"),
    ("get", "/v1/users/u1/history?n=1e3", {}, "n='1e3' must be an integer from 1 to 100"),
    ("get", "/v1/users?limit=" + "9" * 5000, {},
     f"limit={'9' * 5000!r} must be an integer from 1 to 1000"),
    ("post", "/v1/recommendations", {"json": {"tracks": ["t1", 2]}},
     "tracks must be a list of track id strings"),
    ("post", "/v1/recommendations", {"json": {"plays": [1]}},
     "tracks must be a list of track id strings"),
    ("post", "/v1/recommendations", {"json": {"tracks": ["t1"] * 10_001}},
     "tracks has 10001 entries; at most 10000 are allowed"),
    ("post", "/v1/recommendations", {"json": {"tracks": ["t1"], "exclude": "t2"}},
     "exclude must be a list of track id strings"),
    ("post", "/v1/recommendations", {"json": {"tracks": ["t1"], "plays": ["3"]}},
     "plays must be a list of numbers above 0 and at most 1e+09"),
    ("post", "/v1/recommendations", {"json": {"tracks": ["t1"], "plays": [0]}},
     "plays must be a list of numbers above 0 and at most 1e+09"),
    ("post", "/v1/recommendations", {"json": {"tracks": ["t1"], "n": 101}},
     "n=101 must be an integer from 1 to 100"),
    ("post", "/v1/recommendations", {"json": {"tracks": ["t1"], "n": True}},
     "n=True must be an integer from 1 to 100"),
    ("post", "/v1/recommendations", {"json": {"tracks": ["t1"], "n": "5"}},
     "n='5' must be an integer from 1 to 100"),
    ("post", "/v1/recommendations", {"json": {"tracks": ["t1"], "max_per_artist": 0.5}},
     "max_per_artist=0.5 must be an integer from 1 to 1000"),
    ("post", "/v1/recommendations", {"data": '{"tracks": ["t1"]', "content_type":
                                     "application/json"},
     "the body is not valid JSON: EOF while parsing an object at line 1 column 17"),
    ("post", "/v1/recommendations", {"data": "", "content_type": "application/json"},
     "the body is not valid JSON: EOF while parsing a value at line 1 column 0"),
])
def test_a_bad_request_is_400_naming_the_field_and_value(
        unready: Any, method: str, url: str, kwargs: dict[str, Any], message: str) -> None:
    response = getattr(unready, method)(url, **kwargs)
    assert (response.status_code, response.json) == (400, {"error": "bad_request",
                                                          "message": message})


@pytest.mark.parametrize(("method", "url", "kwargs"), [
    ("get", "/v1/radio?seed=t1&seed=t2&variety=0&popularity=1&random_seed=2147483647", {}),
    ("get", "/v1/search?q=calm+piano&text_encoder=wordllama&tau=10", {}),
    ("get", "/v1/users/u1/recommendations?exclude_played=no&unknown=1", {}),
    ("post", "/v1/recommendations", {"json": {"tracks": ["t1"], "plays": [1e9], "n": 100,
                                              "exclude": [], "max_per_artist": None}}),
])
def test_a_good_request_reaches_the_view(unready: Any, method: str, url: str,
                                         kwargs: dict[str, Any]) -> None:
    response = getattr(unready, method)(url, **kwargs)
    assert (response.status_code, response.json["error"]) == (503, "not_ready")


def test_a_repeated_parameter_is_a_list_and_unknown_ones_are_ignored() -> None:
    args = MultiDict([("seed", "t1"), ("seed", "t2"), ("n", "3"), ("n", "4"), ("x", "y")])
    query = m.parse_query(m.RadioQuery, args)
    assert query.seed == ["t1", "t2"] and query.n == 3  # a scalar takes its first value
    assert (m.RadioQuery().seed, m.RadioQuery().variety) == ([], None)


def test_max_n_bounds_validation_and_document_alike() -> None:
    client = create_app({"MODEL_DIR": None, "MAX_N": 5}).test_client()
    for url, kwargs in [("/v1/tracks/t1/similar?n=6", {}), ("/v1/radio?n=6", {}),
                        ("/v1/recommendations", {"json": {"tracks": ["t1"], "n": 6}})]:
        response = client.open(url, method="POST" if kwargs else "GET", **kwargs)
        assert response.json["message"] == "n=6 must be an integer from 1 to 5", url
    assert client.get("/v1/tracks/t1/similar?n=5").status_code == 503
    doc = client.get("/openapi.json").json
    bounds = {(path, method): p["schema"]["maximum"] for path, ops in doc["paths"].items()
              for method, op in ops.items() for p in op.get("parameters", [])
              if p["name"] == "n"}
    assert len(bounds) == 6 and set(bounds.values()) == {5}, bounds
    assert doc["components"]["schemas"]["ListenerRequest"]["properties"]["n"]["maximum"] == 5
    assert m.bounded(m.SimilarQuery, 100) is m.SimilarQuery
    assert m.bounded(m.SimilarQuery, 5) is m.bounded(m.SimilarQuery, 5)


def test_query_parameters_are_never_null_and_state_their_limits() -> None:
    doc = create_app({"MODEL_DIR": None}).test_client().get("/openapi.json").json
    radio = {p["name"]: p for p in doc["paths"]["/v1/radio"]["get"]["parameters"]}
    assert radio["seed"]["schema"] == {"default": [], "items": {"type": "string"},
                                       "maxItems": m.MAX_SEEDS, "type": "array"}
    assert radio["variety"]["schema"] == {"maximum": 1, "minimum": 0, "type": "number"}
    assert radio["variety"]["description"].endswith("default 0.1")
    search = {p["name"]: p for p in doc["paths"]["/v1/search"]["get"]["parameters"]}
    assert search["q"]["required"] is True and search["q"]["schema"]["maxLength"] == 200
    assert search["text_encoder"]["schema"]["enum"] == ["minilm", "wordllama"]
    for ops in doc["paths"].values():
        for op in ops.values():
            for parameter in op.get("parameters", []):
                assert "anyOf" not in parameter["schema"], parameter
                assert parameter["schema"].get("default", 0) is not None, parameter


def test_the_enums_follow_their_homes() -> None:
    from musicrec.embedding.text import TEXT_ENCODERS
    from musicrec.recommender.layout import SPACES
    from musicrec.recommender.types import REASONS

    assert set(get_args(m.TextEncoder)) == set(TEXT_ENCODERS)
    assert get_args(m.Space) == SPACES
    assert set(get_args(m.RecommendationKind)) == set(REASONS)


def test_every_view_of_the_app_is_declared() -> None:
    """Every route outside the static pages is declared with @operation (so validated and
    documented), and the document is built once per app."""
    app = create_app({"MODEL_DIR": None, "ADMIN_TOKEN": "t"})
    pages = {"site.index", "site.docs", "site.static", "site.openapi"}
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()} - pages
    assert endpoints <= set(OPERATIONS), endpoints - set(OPERATIONS)
    client = app.test_client()
    assert client.get("/openapi.json").json == client.get("/openapi.json").json
    assert app.extensions["musicrec.openapi"]["paths"]["/v1/admin/reload"]["post"][
        "security"] == [{"adminToken": []}]


def test_parse_raises_an_api_error_with_status_400() -> None:
    with pytest.raises(APIError) as info:
        m.parse(m.ListenerRequest, b'{"tracks": ["a", "b"], "plays": [1]}')
    assert (info.value.status, info.value.code, info.value.message) == (
        400, "bad_request", "1 play counts for 2 tracks")


def test_every_schema_of_the_document_is_valid_json_schema_2020_12() -> None:
    """OpenAPI 3.1's schemas are JSON Schema draft 2020-12: each one checks against the
    draft's meta-schema, and each $ref points at a component."""
    jsonschema = pytest.importorskip("jsonschema")
    doc = create_app({"MODEL_DIR": None, "ADMIN_TOKEN": "t"}).test_client().get(
        "/openapi.json").json
    schemas = doc["components"]["schemas"]
    found = list(schemas.values())
    for ops in doc["paths"].values():
        for op in ops.values():
            found += [p["schema"] for p in op.get("parameters", [])]
            for part in [op.get("requestBody", {}), *op["responses"].values()]:
                found += [c["schema"] for c in part.get("content", {}).values()]
    refs: list[str] = []

    def collect(node: Any) -> None:
        if isinstance(node, dict):
            refs.extend([node["$ref"]] if "$ref" in node else [])
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    for schema in found:
        jsonschema.Draft202012Validator.check_schema(schema)
        collect(schema)
    assert len(found) > 100 and refs
    assert {r.removeprefix("#/components/schemas/") for r in refs} <= set(schemas)
