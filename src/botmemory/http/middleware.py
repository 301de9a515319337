"""What every request goes through before routing: its path and query decoded strictly, tokens
refused in query strings, the body limit enforced while the body streams in, and the request metrics.

One pure ASGI middleware (no buffering, no per-request task): it rewrites
``scope["path"]`` from ``raw_path`` so that

- invalid UTF-8 after percent-decoding (``%FF``) is a 400, not U+FFFD
  (uvicorn decodes with ``errors="replace"``);
- ``%2F`` and ``%25`` stay encoded through routing, so an encoded slash in a
  user id, conversation id or name never splits a path segment (no escape
  into another route, bot or scope); handlers decode them (``path_param``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final
from urllib.parse import unquote_to_bytes

from .errors import BodyTooLargeError, error_response
from .metrics import ServerMetrics

__all__ = ["BodyTooLargeError", "RequestGuard", "path_param"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Query parameters that carry credentials somewhere else; never accepted here.
TOKEN_PARAMS: Final = frozenset({"token", "access_token", "api_key", "apikey", "key_token", "bearer", "auth"})

#: Requests with more headers, or more header bytes, are refused with 431 (bad-inputs A5).
MAX_HEADERS: Final = 100
MAX_HEADER_BYTES: Final = 32_768

_ESCAPE_RE: Final = re.compile(rb"%([0-9A-Fa-f]{2})")
_KEPT_RE: Final = re.compile(r"%(2F|25)")


def _unescape(match: re.Match[bytes]) -> bytes:
    byte = int(match.group(1), 16)
    if byte in (0x2F, 0x25):  # '/' and '%' stay escaped through routing
        return b"%2F" if byte == 0x2F else b"%25"
    return bytes((byte,))


def decode_path(raw: bytes) -> str:
    """The request path with every escape but ``%2F``/``%25`` decoded, as strict UTF-8.

    Raises:
        UnicodeDecodeError: the decoded bytes are not UTF-8.
    """
    raw = raw.split(b"?", 1)[0]  # some clients (httpx's ASGI transport) leave the query in raw_path
    return _ESCAPE_RE.sub(_unescape, raw).decode("utf-8")


def path_param(value: str) -> str:
    """A path parameter as the client meant it: ``%2F`` -> ``/``, ``%25`` -> ``%`` (one pass)."""
    if "%" not in value:
        return value
    return _KEPT_RE.sub(lambda m: "/" if m.group(1) == "2F" else "%", value)


def _query_problem(query: bytes) -> str | None:
    """Why the query string is refused, or None."""
    if not query:
        return None
    for part in query.split(b"&"):
        name, _, value = part.partition(b"=")
        try:
            decoded_name = unquote_to_bytes(name.replace(b"+", b" ")).decode("utf-8")
            unquote_to_bytes(value.replace(b"+", b" ")).decode("utf-8")
        except UnicodeDecodeError:
            return "the query string is not valid UTF-8 once percent-decoded"
        if decoded_name.lower() in TOKEN_PARAMS:
            return (
                f"credentials in the query string ({decoded_name!r}) are refused: send 'Authorization: Bearer <token>'"
            )
    return None


def _content_length(scope: Scope) -> tuple[int | None, bool]:
    """The Content-Length header (None when absent), and whether it is malformed."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value), False
            except ValueError:
                return None, True
    return None, False


class RequestGuard:
    """The ASGI middleware described in the module docstring.

    Args:
        app: the application.
        max_body: the largest request body accepted, in bytes.
        metrics: where requests are counted and timed.
    """

    def __init__(self, app: ASGIApp, *, max_body: int, metrics: ServerMetrics) -> None:
        self.app = app
        self.max_body = max_body
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status_box = [0]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_box[0] = message["status"]
            await send(message)

        try:
            await self._handle(scope, receive, send_wrapper, status_box)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) if route is not None else None
            self.metrics.observe_request(
                scope.get("method", "GET"),
                template or "(unmatched)",
                status_box[0] or 500,
                time.perf_counter() - started,
            )

    async def _refuse(self, send: Send, status: int, code: str, message: str) -> None:
        response = error_response(status, code, message)
        await response({"type": "http"}, _no_receive, send)

    async def _handle(self, scope: Scope, receive: Receive, send: Send, status_box: list[int]) -> None:
        headers = scope.get("headers", ())
        if len(headers) > MAX_HEADERS or sum(len(n) + len(v) for n, v in headers) > MAX_HEADER_BYTES:
            await self._refuse(
                send,
                431,
                "headers_too_large",
                f"at most {MAX_HEADERS} headers and {MAX_HEADER_BYTES} bytes of headers are accepted",
            )
            return
        raw = scope.get("raw_path")
        if raw is not None:
            try:
                scope["path"] = decode_path(raw)
            except UnicodeDecodeError:
                await self._refuse(
                    send, 400, "invalid_path_encoding", "the request path is not valid UTF-8 once percent-decoded"
                )
                return
        problem = _query_problem(scope.get("query_string", b""))
        if problem is not None:
            await self._refuse(send, 400, "bad_request", problem)
            return
        length, malformed = _content_length(scope)
        if malformed:
            await self._refuse(send, 400, "bad_request", "malformed Content-Length header")
            return
        limit = self.max_body
        if length is not None and length > limit:
            # refused before a byte of the body is read
            await self._refuse(send, 413, "body_too_large", f"request body of {length} bytes is larger than {limit}")
            return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLargeError(limit)
            return message

        try:
            await self.app(scope, limited_receive, send)
        except BodyTooLargeError as exc:
            if status_box[0]:
                raise  # the answer has begun: nothing better to do than close the connection
            await self._refuse(send, 413, "body_too_large", str(exc))


async def _no_receive() -> Message:  # responses never read the request
    return {"type": "http.disconnect"}
