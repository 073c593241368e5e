"""JSON errors: every failure becomes ``{"error": code, "message": ...}`` with its status.

One :func:`error_response` builds them; :func:`register_error_handlers` maps musicrec's
exceptions and werkzeug's HTTP errors onto it, and turns anything unexpected into a
500 without a stack trace (the trace goes to the log only).
"""

from __future__ import annotations

import json
import logging
import re
from http import HTTPStatus
from typing import Any

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from musicrec.embedding.audio import AudioDecodeError
from musicrec.errors import (
    CapabilityError,
    DataFormatError,
    ModelFormatError,
    MusicrecError,
    ParameterError,
    UnknownIdError,
    UnknownTrackError,
    UnknownUserError,
)

log = logging.getLogger(__name__)

#: Error code of each HTTP status raised by werkzeug (routing, size limits, methods).
HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "model_capability",
    413: "payload_too_large",
    414: "uri_too_long",
    416: "range_not_satisfiable",
    417: "expectation_failed",
    415: "unsupported_media_type",
    422: "undecodable_audio",
    431: "headers_too_large",
    500: "internal_error",
    501: "not_implemented",
    503: "not_ready",
}


class APIError(Exception):
    """An error raised by a view with its status, code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


#: An absolute POSIX path of two or more parts, not inside a word or a URL.
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/])/(?:[^\s/'\"]+/)+([^\s/'\"]+)")


def redact_paths(text: str) -> str:
    """``text`` with each absolute server path shortened to its last part.

    Examples
    --------
    >>> redact_paths("/srv/models/demo: content.npy is missing")
    'demo: content.npy is missing'
    """
    return _ABSOLUTE_PATH.sub(r"\1", text)


def public_manifest(value: Any) -> Any:
    """A manifest as clients may see it: absolute paths shortened to their last part."""
    if isinstance(value, dict):
        return {k: public_manifest(v) for k, v in value.items()}
    if isinstance(value, list):
        return [public_manifest(v) for v in value]
    if isinstance(value, str) and value.startswith("/"):
        return redact_paths(value)
    return value


def error_body(status: int, message: str, code: str | None = None) -> dict[str, str]:
    """The JSON body of every error: ``{"error": code, "message": message}``; server
    paths in the message are shortened (:func:`redact_paths`)."""
    return {"error": code or HTTP_CODES.get(status, "error"), "message": redact_paths(message)}


def error_response(status: int, message: str, code: str | None = None,
                   headers: dict[str, str] | None = None) -> tuple[Response, int]:
    """:func:`error_body` as a Flask response with ``status``."""
    response = jsonify(error_body(status, message, code))
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response, status


def raw_error_response(status: int, message: str) -> bytes:
    """:func:`error_body` as a whole HTTP/1.1 response that closes the connection.

    For the server's transport layer (:mod:`musicrec.api.worker`), which answers some
    requests before the app sees them.
    """
    body = json.dumps(error_body(status, message)).encode()
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    head = (f"HTTP/1.1 {status} {phrase}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    return head.encode("latin-1") + body


def status_of(exc: MusicrecError) -> tuple[int, str]:
    """The (status, code) that a musicrec exception maps to."""
    if isinstance(exc, UnknownUserError):
        return 404, "unknown_user"
    if isinstance(exc, UnknownTrackError):
        return 404, "unknown_track"
    if isinstance(exc, UnknownIdError):
        return 404, "not_found"
    if isinstance(exc, CapabilityError):
        # The request is well formed, but the loaded model cannot answer it.
        return 409, "model_capability"
    if isinstance(exc, ModelFormatError):
        return 503, "not_ready"
    if isinstance(exc, AudioDecodeError) and exc.kind == "too_large":
        return 413, "payload_too_large"
    if isinstance(exc, DataFormatError):
        return 422, "undecodable_audio"
    if isinstance(exc, ParameterError):
        return 400, "bad_request"
    return 400, "bad_request"


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(APIError)
    def _api(exc: APIError) -> Any:
        return error_response(exc.status, exc.message, exc.code)

    @app.errorhandler(MusicrecError)
    def _musicrec(exc: MusicrecError) -> Any:
        status, code = status_of(exc)
        return error_response(status, str(exc), code)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Any:
        status = exc.code or 500
        original = exc.get_response().headers
        headers = {name: original[name] for name in ("Allow", "Content-Range", "Retry-After")
                   if name in original}
        message = exc.description or exc.name
        return error_response(status, message, HTTP_CODES.get(status, "error"), headers)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Any:
        log.exception("unhandled error")
        return error_response(500, "internal server error", "internal_error")
