"""The HTTP API and web page: the only package that imports flask.

:func:`create_app` builds the app over one model directory; ``musicrec serve`` runs it
under gunicorn.
"""

from musicrec.api.app import create_app

__all__ = ["create_app"]
