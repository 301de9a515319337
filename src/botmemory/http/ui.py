"""The web admin at ``/ui``: static files committed in ``static/`` (no build step, no CDN), and sign-in.

The page talks to the same ``/api/v1`` as any client, authenticated by the
session cookie that ``POST /ui/login`` sets (see ``auth``); state-changing
requests send the session's CSRF token in ``X-CSRF-Token``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, StrictStr
from starlette.responses import FileResponse, RedirectResponse, Response

from .api import caller, ok, read_json
from .auth import COOKIE, Caller
from .context import get_state
from .errors import ApiError, error_responses
from .state import consume_login_code, verify_token

__all__ = ["SECURITY_HEADERS", "STATIC_DIR", "router"]

STATIC_DIR: Final = Path(__file__).parent / "static"

#: Sent with every UI page: no inline script, nothing from elsewhere, no framing.
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}

router = APIRouter(tags=["admin UI"])


class LoginIn(BaseModel):
    """Sign in with a token, or with the one-time code of a login link."""

    model_config = ConfigDict(extra="forbid")
    token: StrictStr | None = Field(default=None, max_length=200)
    code: StrictStr | None = Field(default=None, max_length=200)


class SessionOut(BaseModel):
    scope: str
    bot: str | None
    csrf: str
    token_id: str


def _session(who_token: Any, csrf: str) -> dict[str, Any]:
    return {"scope": who_token.scope, "bot": who_token.bot, "csrf": csrf, "token_id": who_token.id}


@router.get("/", include_in_schema=False)
async def root() -> Response:
    return RedirectResponse("/ui/", status_code=307)


@router.get("/ui", include_in_schema=False)
async def ui_redirect() -> Response:
    return RedirectResponse("/ui/", status_code=307)


@router.get("/ui/", include_in_schema=False)
async def ui_page() -> Response:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers=SECURITY_HEADERS)


@router.post(
    "/ui/login",
    response_class=Response,
    responses={200: {"model": SessionOut}, **error_responses(400, 401, 413, 415, 422, 429, 503)},
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": LoginIn.model_json_schema()}}}
    },
    summary="Sign the admin UI in",
)
async def login(request: Request) -> Response:
    """Check a token (or consume a login code) and set the session cookie (HttpOnly, SameSite=Strict)."""
    state = get_state(request)
    client = state.auth.check_brake(request)
    body = LoginIn.model_validate(await read_json(request))
    if (body.token is None) == (body.code is None):
        raise ApiError(400, "bad_request", "send exactly one of 'token' and 'code'")
    if body.token is not None:
        info = await verify_token(state.store, body.token.strip())
    else:
        info = await consume_login_code(state.store, body.code or "")
    if info is None:
        state.auth.failed(client)
        raise ApiError(401, "unauthorized", "unknown or revoked token, or a login link already used or expired")
    cookie, csrf = state.auth.new_session(info)
    response = ok(_session(info, csrf))
    response.set_cookie(
        COOKIE,
        cookie,
        max_age=int(state.auth.session_ttl),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.get(
    "/ui/session",
    response_class=Response,
    responses={200: {"model": SessionOut}, **error_responses(401, 429, 503)},
    summary="The signed-in session",
)
async def session(who: Annotated[Caller, Depends(caller)]) -> Response:
    """Who is signed in, and the CSRF token to send with state-changing requests."""
    if not who.via_cookie or who.csrf is None:
        raise ApiError(401, "unauthorized", "no UI session: sign in first")
    return ok(_session(who.token, who.csrf))


@router.post(
    "/ui/logout",
    response_class=Response,
    responses={200: {"model": dict[str, bool]}, **error_responses(401, 403, 429)},
    summary="Sign the admin UI out",
)
async def logout(request: Request, who: Annotated[Caller, Depends(caller)]) -> Response:
    """Forget the session cookie (CSRF-protected like every state change)."""
    response = ok({"signed_out": True})
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response
