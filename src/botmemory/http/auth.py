"""Who is calling: bearer tokens, the admin UI's session cookie, CSRF, and a brake on guessing.

- API clients send ``Authorization: Bearer bm_<id>_<secret>``; the token is
  looked up in the store on every request (so a new token works at once and
  a revoked one stops at once, on every replica) and its secret compared in
  constant time (``state.verify_token``).
- The admin UI signs in once with a token (or a one-time login code) and
  then holds a session cookie: ``HttpOnly``, ``SameSite=Strict``, signed with
  the server's key, naming the token (never containing it), valid for
  ``session_ttl`` seconds and only while the token exists. Requests that
  change state with the cookie must carry the session's CSRF token in
  ``X-CSRF-Token`` (derived from the session, so nothing is stored).
- Tokens in query strings are refused before routing (``middleware``).
- After ``max_failures`` failed authentications from one client address in
  a minute, that address gets 429 for the rest of the minute.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Final

import orjson
from starlette.requests import Request

from ..store import Store
from .errors import ApiError
from .state import TokenInfo, get_token, verify_token

__all__ = ["COOKIE", "CSRF_HEADER", "Authenticator", "Caller"]

COOKIE: Final = "botmemory_session"
CSRF_HEADER: Final = "x-csrf-token"
_SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
_WINDOW: Final = 60.0


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated caller: the token's rights, and whether it came through the UI's cookie."""

    token: TokenInfo
    via_cookie: bool
    csrf: str | None = None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class _FailureBrake:
    """Counts failed authentications per client address over a sliding minute."""

    def __init__(self, max_failures: int) -> None:
        self.max_failures = max_failures
        self._seen: dict[str, deque[float]] = {}

    def _recent(self, client: str, now: float) -> deque[float]:
        times = self._seen.setdefault(client, deque())
        while times and times[0] <= now - _WINDOW:
            times.popleft()
        return times

    def check(self, client: str) -> None:
        times = self._seen.get(client)
        if not times:
            return
        now = time.monotonic()
        times = self._recent(client, now)
        if len(times) >= self.max_failures:
            retry = max(1, int(times[0] + _WINDOW - now) + 1)
            raise ApiError(
                429,
                "too_many_requests",
                "too many failed authentications from this address; wait and retry",
                {"Retry-After": str(retry)},
            )

    def failed(self, client: str) -> None:
        now = time.monotonic()
        self._recent(client, now).append(now)
        if len(self._seen) > 10_000:  # bounded memory under a flood of addresses
            for key in [k for k, v in self._seen.items() if not v or v[-1] <= now - _WINDOW]:
                del self._seen[key]


class Authenticator:
    """Authenticates requests against the tokens in ``store``.

    Args:
        store: where tokens live.
        key: the server's signing key (``state.signing_key``).
        session_ttl: seconds a UI session lasts.
        max_failures: failed authentications per client address and minute before 429.
        on_failure: called on every failed authentication (metrics).
    """

    def __init__(
        self, store: Store, key: bytes, *, session_ttl: float, max_failures: int, on_failure: Any = None
    ) -> None:
        self.store = store
        self._key = key
        self.session_ttl = session_ttl
        self._brake = _FailureBrake(max_failures)
        self._on_failure = on_failure

    # -- signing ---------------------------------------------------------------
    def sign(self, purpose: str, payload: bytes) -> str:
        """A MAC of ``payload`` for ``purpose`` (cursors, sessions, CSRF)."""
        return _b64(hmac.new(self._key, purpose.encode() + b"\0" + payload, hashlib.sha256).digest()[:24])

    def seal(self, purpose: str, value: Any) -> str:
        """``value`` as an opaque, signed string."""
        payload = _b64(orjson.dumps(value))
        return f"{payload}.{self.sign(purpose, payload.encode())}"

    def unseal(self, purpose: str, text: str) -> Any:
        """The value sealed by ``seal``; None when the string is malformed or forged."""
        if not isinstance(text, str) or text.count(".") != 1 or len(text) > 8192:
            return None
        payload, mac = text.split(".")
        if not hmac.compare_digest(mac, self.sign(purpose, payload.encode("ascii", "replace"))):
            return None
        try:
            return orjson.loads(_unb64(payload))
        except (ValueError, orjson.JSONDecodeError):
            return None

    # -- sessions ----------------------------------------------------------------
    def new_session(self, token: TokenInfo) -> tuple[str, str]:
        """A session cookie value for ``token`` and the session's CSRF token."""
        nonce = secrets.token_urlsafe(16)
        cookie = self.seal("session", {"t": token.id, "e": time.time() + self.session_ttl, "n": nonce})
        return cookie, self.sign("csrf", nonce.encode())

    async def _from_cookie(self, cookie: str) -> tuple[TokenInfo, str] | None:
        data = self.unseal("session", cookie)
        if not isinstance(data, dict) or not isinstance(data.get("e"), int | float) or data["e"] <= time.time():
            return None
        token = await get_token(self.store, str(data.get("t")))
        if token is None:
            return None
        return token, self.sign("csrf", str(data.get("n")).encode())

    # -- requests -------------------------------------------------------------------
    def _fail(self, client: str, message: str, error: str = "invalid_token") -> ApiError:
        self._brake.failed(client)
        if self._on_failure is not None:
            self._on_failure()
        return ApiError(401, "unauthorized", message, {"WWW-Authenticate": f'Bearer error="{error}"'})

    def check_brake(self, request: Request) -> str:
        client = request.client.host if request.client else "unknown"
        self._brake.check(client)
        return client

    def failed(self, client: str) -> None:
        """Count a failed sign-in (the UI's login form)."""
        self._brake.failed(client)
        if self._on_failure is not None:
            self._on_failure()

    async def authenticate(self, request: Request) -> Caller:
        """The caller of ``request``.

        Raises:
            ApiError: 401 (no, malformed, unknown or revoked token; expired
                session), 403 (cookie without CSRF token on a state-changing
                request), 429 (too many failures from this address).
        """
        client = self.check_brake(request)
        header = request.headers.get("authorization")
        if header is not None:
            scheme, _, token = header.partition(" ")
            token = token.strip(" ")
            if scheme.lower() != "bearer" or not token:
                raise self._fail(client, "expected 'Authorization: Bearer <token>'", "invalid_request")
            info = await verify_token(self.store, token)
            if info is None:
                raise self._fail(client, "unknown or revoked token")
            return Caller(info, via_cookie=False)
        cookie = request.cookies.get(COOKIE)
        if cookie is None:
            raise self._fail(client, "authentication required: send 'Authorization: Bearer <token>'", "invalid_request")
        found = await self._from_cookie(cookie)
        if found is None:
            raise self._fail(client, "the session has expired or its token was revoked: sign in again")
        info, csrf = found
        if request.method not in _SAFE_METHODS:
            sent = request.headers.get(CSRF_HEADER, "")
            if not hmac.compare_digest(sent.encode(), csrf.encode()):
                raise ApiError(403, "csrf", f"missing or wrong {CSRF_HEADER} header for a session request")
        return Caller(info, via_cookie=True, csrf=csrf)
