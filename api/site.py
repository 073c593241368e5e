"""Routes outside ``/v1``: health, readiness, the OpenAPI document, its docs page and
the web page (plain HTML and JavaScript from ``api/static/``, no build step, no CDN)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Blueprint, current_app, jsonify, send_from_directory

import musicrec.api.models as m
from musicrec.api.errors import error_response
from musicrec.api.openapi import openapi_document, operation
from musicrec.api.state import model_state

STATIC = Path(__file__).with_name("static")

site = Blueprint("site", __name__, static_folder=str(STATIC), static_url_path="/static")


@site.get("/")
def index() -> Any:
    return send_from_directory(STATIC, "index.html", max_age=0)


@site.get("/docs")
def docs() -> Any:
    return send_from_directory(STATIC, "docs.html", max_age=0)


@operation(site, "/healthz", operation_id="healthz", summary="the process is alive",
           ok={200: (m.Health, "alive")})
def healthz() -> Any:
    out: m.Health = {"status": "ok"}
    return jsonify(out)


@operation(site, "/readyz", operation_id="readyz", summary="the model is loaded",
           ok={200: (m.Ready, "ready")}, errors=(503,))
def readyz() -> Any:
    loaded = model_state(current_app).current()
    if loaded is None:
        return error_response(503, "no model is loaded yet", "not_ready")
    problem = loaded.watch.problem()
    if problem is not None:
        return error_response(503, f"the model cannot answer: {problem}", "not_ready")
    out: m.Ready = {"status": "ready", "kind": loaded.recommender.kind,
                    "tracks": len(loaded.recommender.tracks)}
    return jsonify(out)


@site.get("/openapi.json")
def openapi() -> Any:
    return jsonify(openapi_document(current_app._get_current_object()))  # type: ignore[attr-defined]
