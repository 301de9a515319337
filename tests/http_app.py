"""An in-process server for tests: the app over a store, driven through httpx's ASGI transport."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

import botmemory
from botmemory.http import ServerConfig, create_app
from botmemory.http.state import create_token

EXAMPLE_BOTS = Path(__file__).resolve().parent.parent / "bots"


@dataclass
class Api:
    client: httpx.AsyncClient
    store: botmemory.Store
    app: FastAPI
    admin: str
    bot_token: str  # a token of bot "example" only

    def auth(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.admin}"}

    async def call(self, method: str, path: str, *, token: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = {**self.auth(token), **kwargs.pop("headers", {})}
        return await self.client.request(method, path, headers=headers, **kwargs)

    async def put_json(
        self, path: str, body: bytes | str, *, token: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        data = body.encode() if isinstance(body, str) else body
        headers = {"Content-Type": "application/json", **kwargs.pop("headers", {})}
        return await self.call("PUT", path, token=token, content=data, headers=headers, **kwargs)


@asynccontextmanager
async def running_app(store: botmemory.Store, **config: Any) -> AsyncIterator[Api]:
    config.setdefault("bots_dir", str(EXAMPLE_BOTS))
    config.setdefault("janitor", False)
    app = create_app(ServerConfig(**config), store=store)
    async with app.router.lifespan_context(app):
        admin, _ = await create_token(store, admin=True)
        bot_token, _ = await create_token(store, bot="example")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield Api(client, store, app, admin, bot_token)


def assert_error(response: httpx.Response, status: int | tuple[int, ...]) -> dict[str, Any]:
    """The response is an error with this status, in the one JSON shape."""
    statuses = status if isinstance(status, tuple) else (status,)
    assert response.status_code in statuses, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert isinstance(body["error"]["code"], str) and isinstance(body["error"]["message"], str)
    return body["error"]
