"""The HTTP server (``botmemory serve``): the API under ``/api/v1``, the web admin at ``/ui``, metrics.

Modules: ``app`` (``create_app``, lifespan, janitor), ``api`` (routes),
``ui`` (the admin UI's sign-in and static files), ``auth`` (tokens, session
cookie, CSRF), ``errors`` (the one error shape and status mapping),
``middleware`` (path decoding, body limit, request metrics), ``metrics``,
``state`` (tokens and other server state in the store).

``botmemory.http.state`` needs no web framework (the CLI's ``token``
commands use it); everything else needs the ``server`` extra.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import create_app
    from .context import ServerConfig

__all__ = ["ServerConfig", "create_app"]


def __getattr__(name: str) -> Any:
    # FastAPI is imported on first use: `botmemory token ...` must not pay for it.
    if name == "create_app":
        from .app import create_app

        return create_app
    if name == "ServerConfig":
        from .context import ServerConfig

        return ServerConfig
    raise AttributeError(f"module 'botmemory.http' has no attribute {name!r}")
