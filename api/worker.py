"""A gunicorn worker that reads each request whole before a thread takes it.

gunicorn's ``gthread`` worker hands a connection to a thread as soon as its first byte
arrives; the thread then blocks until the request line, the headers and the body are in.
A client that sends one byte a second therefore holds a thread for as long as it likes,
and a handful of them starve a worker (measured: four such clients left a 2-worker
server answering nothing for over a minute).

:class:`BufferingWorker` keeps ``gthread``'s thread pool and keep-alive handling, but a
connection first waits in the worker's event loop, which reads what the client sends
without blocking, as a front proxy such as nginx does. Only a request that has arrived
whole (the headers, then the body its ``Content-Length`` or chunked framing declares) is
handed to a thread. A slow client costs a socket and a buffer, never a thread.

Limits, each answered with the API's JSON error body and ``Connection: close``:

* the headers must arrive within ``header_timeout`` seconds (408) and stay under
  :data:`MAX_HEADER_BYTES` (431);
* the body must arrive within ``body_timeout`` seconds plus one second per
  :data:`MIN_BODY_RATE` bytes it declares (408);
* a body larger than the app's ``MAX_CONTENT_LENGTH`` is refused as soon as its size is
  known, from the header or while chunks arrive (413).

gunicorn's own parse errors (a bad request line, a URI over ``limit_request_line``, too
many or too large headers) are answered in the same JSON form instead of gunicorn's HTML.
"""

from __future__ import annotations

import errno
import re
import selectors
import socket
import time
from functools import partial
from typing import Any

from gunicorn.http import errors as http_errors
from gunicorn.workers.gthread import TConn, ThreadWorker

from musicrec.api.errors import raw_error_response

#: Largest request line plus headers, bytes (gunicorn's own limits are smaller per line).
MAX_HEADER_BYTES = 64 * 1024
#: Bytes per second a body may take on top of ``body_timeout``.
MIN_BODY_RATE = 32 * 1024
#: Slack over the body limit for chunked framing, bytes.
CHUNK_FRAMING_SLACK = 64 * 1024

_EXPECT_CONTINUE = re.compile(rb"\r\nexpect:[ \t]*100-continue[ \t]*\r\n", re.IGNORECASE)

_PARSE_ERRORS: tuple[tuple[type[Exception], int], ...] = (
    (http_errors.LimitRequestLine, 414),
    (http_errors.LimitRequestHeaders, 431),
    (http_errors.UnsupportedTransferCoding, 501),
    (http_errors.ExpectationFailed, 417),
    (http_errors.ForbiddenProxyRequest, 403),
    (http_errors.ParseException, 400),
)


class RequestTooLarge(Exception):
    """The declared or received body is over the limit."""


class BadFraming(Exception):
    """The request's framing cannot be read (bad Content-Length or chunk size)."""


def request_end(
    buf: bytes | bytearray,
    *,
    max_body: int | None,
    framing: tuple[int, int | None] | None = None,
) -> int | None:
    """The offset just past the first whole request in ``buf``, or None while incomplete.

    Parameters
    ----------
    buf : bytes
        What the client sent so far.
    max_body : int or None
        Largest body allowed, bytes.
    framing : tuple, optional
        :func:`body_framing` of ``buf``, when the caller has it already.

    Raises
    ------
    RequestTooLarge
        The headers are over :data:`MAX_HEADER_BYTES` (``args[0] == 431``) or the body
        over ``max_body`` (``args[0] == 413``).
    BadFraming
        The framing headers cannot be parsed; the parser in the thread reports it.

    Examples
    --------
    >>> request_end(b"GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\nGET", max_body=None)
    27
    >>> request_end(b"POST / HTTP/1.1\\r\\nContent-Length: 5\\r\\n\\r\\nab", max_body=None)
    """
    if framing is None:
        framing = body_framing(buf)
    if framing is None:
        return None
    body_start, length = framing
    if length is None:  # chunked
        return _chunked_end(buf, body_start, max_body=max_body)
    if max_body is not None and length > max_body:
        raise RequestTooLarge(413, f"the body declares {length} bytes; at most {max_body} "
                                   "are allowed")
    end = body_start + length
    return end if len(buf) >= end else None


def body_framing(buf: bytes | bytearray) -> tuple[int, int | None] | None:
    """``(body start, declared length)`` once the headers are in, else None.

    The length is 0 without a ``Content-Length``, and None for a chunked body.
    """
    head_end = buf.find(b"\r\n\r\n")
    if head_end < 0 or head_end + 4 > MAX_HEADER_BYTES:
        if len(buf) > MAX_HEADER_BYTES:
            raise RequestTooLarge(431, f"the request headers exceed {MAX_HEADER_BYTES} bytes")
        return None
    length: int | None = 0
    for line in bytes(buf[:head_end]).split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"transfer-encoding" and b"chunked" in value.lower():
            return head_end + 4, None
        if name == b"content-length":
            text = value.strip()
            if not text.isdigit():
                raise BadFraming(f"Content-Length {text[:20]!r} is not a number")
            length = int(text)
    return head_end + 4, length


def _chunked_end(buf: bytes | bytearray, pos: int, *, max_body: int | None) -> int | None:
    total = 0
    while True:
        line_end = buf.find(b"\r\n", pos)
        if line_end < 0:
            if len(buf) - pos > 1024:
                raise BadFraming("a chunk-size line is over 1024 bytes")
            return None
        size_text = bytes(buf[pos:line_end]).split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise BadFraming(f"chunk size {size_text[:20]!r} is not hexadecimal") from None
        total += size
        if max_body is not None and total > max_body:
            raise RequestTooLarge(413, f"the chunked body exceeds {max_body} bytes")
        pos = line_end + 2
        if size == 0:
            # trailers, then an empty line
            trailer_end = buf.find(b"\r\n", pos)
            while trailer_end >= 0 and trailer_end != pos:
                pos = trailer_end + 2
                trailer_end = buf.find(b"\r\n", pos)
            return None if trailer_end < 0 else trailer_end + 2
        if len(buf) < pos + size + 2:
            return None
        pos += size + 2


class BufferingWorker(ThreadWorker):
    """``gthread`` with whole-request buffering in the event loop (see the module doc)."""

    #: Seconds for the request line and headers to arrive.
    header_timeout: float = 10.0
    #: Seconds for a body to arrive, plus one per :data:`MIN_BODY_RATE` bytes.
    body_timeout: float = 30.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: connections still arriving: (bytes so far, deadline)
        self.buffering: dict[TConn, tuple[bytearray, float]] = {}
        self.body_started: set[TConn] = set()

    # -- what a thread gets -------------------------------------------------------------
    def enqueue_req(self, conn: TConn) -> None:
        if getattr(conn, "musicrec_whole", False) or self.cfg.is_ssl:
            conn.musicrec_whole = False
            super().enqueue_req(conn)
            return
        buf = bytearray()
        if conn.parser is not None:  # a kept-alive connection: bytes read ahead
            unreader = conn.parser.unreader
            buf += unreader.buf.getvalue()
            unreader.buf.seek(0)
            unreader.buf.truncate()
        conn.sock.setblocking(False)
        self.buffering[conn] = (buf, time.monotonic() + self.header_timeout)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._readable, conn))
        self._advance(conn)

    def _max_body(self) -> int | None:
        config = getattr(self.wsgi, "config", None)
        limit = None if config is None else config.get("MAX_CONTENT_LENGTH")
        return None if limit is None else int(limit)

    def _readable(self, conn: TConn, _sock: Any) -> None:
        entry = self.buffering.get(conn)
        if entry is None:
            return
        try:
            data = conn.sock.recv(65536)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                return
            self._drop(conn)
            return
        if not data:
            self._drop(conn)
            return
        entry[0].extend(data)
        self._advance(conn)

    def _advance(self, conn: TConn) -> None:
        buf, deadline = self.buffering[conn]
        max_body = self._max_body()
        try:
            framing = body_framing(buf)
            end = request_end(buf, max_body=max_body, framing=framing)
        except RequestTooLarge as exc:
            status, message = exc.args
            self._refuse(conn, status, message)
            return
        except BadFraming:
            framing, end = None, len(buf)  # the parser in the thread names the error
        if end is None:
            if framing is not None and conn not in self.body_started:
                # the headers are in: the body gets a deadline that grows with its size
                self.body_started.add(conn)
                size = framing[1] if framing[1] is not None else (max_body or 0)
                self.buffering[conn] = (buf, time.monotonic() + self.body_timeout
                                        + size / MIN_BODY_RATE)
                if _EXPECT_CONTINUE.search(bytes(buf[:framing[0]])):
                    # the client (curl, for bodies over 1 kB) waits for this before the
                    # body; gunicorn sends its own later, and a client ignores a second
                    try:
                        conn.sock.send(b"HTTP/1.1 100 Continue\r\n\r\n")
                    except OSError:
                        pass
            return
        self._forget(conn)
        self.poller.unregister(conn.sock)
        conn.sock.setblocking(True)
        conn.init()
        conn.parser.unreader.unread(bytes(buf))
        conn.data_ready = True
        conn.musicrec_whole = True
        self.enqueue_req(conn)

    def _forget(self, conn: TConn) -> None:
        self.buffering.pop(conn, None)
        self.body_started.discard(conn)

    # -- deadlines and refusals ---------------------------------------------------------------
    def murder_pending(self) -> None:
        super().murder_pending()
        now = time.monotonic()
        for conn, (buf, deadline) in list(self.buffering.items()):
            if now > deadline:
                what = "the request body" if b"\r\n\r\n" in buf else "the request headers"
                self._refuse(conn, 408, f"{what} did not arrive in time")

    def _refuse(self, conn: TConn, status: int, message: str) -> None:
        self.log.warning("refused a request from %s: %s", conn.client[0] if conn.client
                         else "?", message)
        try:
            conn.sock.setblocking(False)
            conn.sock.send(raw_error_response(status, message))
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        self._drop(conn)

    def _drop(self, conn: TConn) -> None:
        self._forget(conn)
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass
        self.nr_conns -= 1
        conn.close()

    # -- gunicorn's own parse errors, as JSON --------------------------------------------------
    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        for kind, status in _PARSE_ERRORS:
            if isinstance(exc, kind):
                self.log.warning("invalid request from %s: %s", (addr or ("",))[0], exc)
                try:
                    client.setblocking(False)
                    client.send(raw_error_response(status, str(exc) or kind.__name__))
                except OSError:
                    pass
                return
        super().handle_error(req, client, addr, exc)
