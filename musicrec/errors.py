"""The exception hierarchy shared by every layer.

Every error a user can cause derives from :class:`MusicrecError`, so the CLI can print
one line and exit 2, and the API can map each type to a status code. Each error also
derives from the built-in a Python caller would naturally catch.
"""

from __future__ import annotations

from pathlib import Path


class MusicrecError(Exception):
    """Base class of every error raised for bad input, data or models."""


class ParameterError(MusicrecError, ValueError):
    """A parameter has a value outside its allowed range or set."""


class DataFormatError(MusicrecError, ValueError):
    """A data file cannot be read as expected.

    The message names the file and, where known, the line and the column.
    """

    def __init__(
        self,
        path: str | Path,
        message: str,
        *,
        line: int | None = None,
        column: str | None = None,
    ) -> None:
        self.path = str(path)
        self.line = line
        self.column = column
        self.reason = message
        where = self.path
        if line is not None:
            where += f", line {line}"
        if column is not None:
            where += f", column {column!r}"
        super().__init__(f"{where}: {message}")


class UnknownIdError(MusicrecError, KeyError):
    """An id is not known to the model or the catalogue."""

    kind = "id"

    def __init__(self, raw_id: object) -> None:
        self.raw_id = raw_id
        super().__init__(raw_id)

    def __str__(self) -> str:
        return f"unknown {self.kind} {self.raw_id!r}"


class UnknownUserError(UnknownIdError):
    kind = "user"


class UnknownTrackError(UnknownIdError):
    kind = "track"


class NotFittedError(MusicrecError, ValueError, AttributeError):
    """A model was used before ``fit`` was called."""


class ModelFormatError(MusicrecError, ValueError):
    """A saved model or model directory is corrupt, incomplete or of another version."""


class CapabilityError(MusicrecError, ValueError):
    """The model cannot answer this kind of request (e.g. users on a content-only model)."""


class ModelSkipped(MusicrecError):
    """A model declines to run on this data; the evaluation runner records the message in
    its report and goes on with the other models."""
