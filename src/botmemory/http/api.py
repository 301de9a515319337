"""The HTTP API under ``/api/v1``: converse, the KVS, dialog memory, users, audit, dashboard data.

Bodies are JSON (``Content-Type: application/json``, UTF-8), parsed
strictly: no NaN or Infinity, no duplicate object keys. A KVS or variable
``PUT`` takes the value itself as its body; ``expiry``, ``path``,
``if_version`` and ``keep_ttl`` are query parameters.

Every ``/bots/{bot}/…`` route answers 404 to a token of another bot, as if
the bot did not exist; ``/global/kvs`` needs an admin token.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Final, Literal

import orjson
from fastapi import APIRouter, Depends, Query, Request
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
    field_validator,
)
from starlette.responses import Response

from ..codec import loads_strict
from ..errors import InvalidInputError, KeyNotFoundError, ValueTooLargeError
from ..expiry import expires_at
from ..keys import validate_bot_id, validate_key, validate_prefix
from ..kvs import KVS, Entry
from ..memory import Scope
from ..retention import AuditLog
from ..retention.audit import describe_key, user_of_key
from ..store import Bot
from .auth import Caller
from .context import ServerState, get_state
from .errors import ApiError, error_responses
from .middleware import path_param
from .state import current_conversation, live_sessions

__all__ = ["router"]

log = logging.getLogger("botmemory.http")

JSON: Final = "application/json"
_MAX_LIST: Final = 1000
_MAX_BATCH: Final = 1000
_STATS_SCAN: Final = 5000
_USERS_PREFIX: Final = "storage/users/"
_CONVERSATIONS_PREFIX: Final = "storage/conversation/"
_LAST: Final = "\U0010ffff"  # sorts after every character a key can hold

router = APIRouter(
    prefix="/api/v1",
    # 507: any write may find the store full (StoreFullError), not only the quota'd ones
    responses=error_responses(400, 401, 404, 413, 415, 422, 429, 503, 507),
)


# -- plumbing -----------------------------------------------------------------------


def ok(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type=JSON)


async def caller(request: Request) -> Caller:
    """The dependency every API route has: who calls (401/403/429 otherwise)."""
    return await get_state(request).auth.authenticate(request)


CallerDep = Annotated[Caller, Depends(caller)]




async def read_json(request: Request) -> Any:
    """The request body as JSON, strictly (see the module docstring)."""
    media, _, params = request.headers.get("content-type", "").partition(";")
    media = media.strip().lower()
    if media != JSON and not (media.startswith("application/") and media.endswith("+json")):
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    charset = params.strip().lower()
    if charset and charset.replace(" ", "") not in ("charset=utf-8", 'charset="utf-8"'):
        raise ApiError(415, "unsupported_media_type", "JSON bodies are UTF-8")
    body = await request.body()
    if not body:
        raise InvalidInputError("empty body: send a JSON value (null stores JSON null)")
    if body[:3] == b"\xef\xbb\xbf" or body[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise InvalidInputError("the body starts with a byte order mark: send UTF-8 without one")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInputError("the body is not valid UTF-8") from None
    try:
        return loads_strict(text)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(
            f"the body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise ValueTooLargeError("the body is nested too deeply") from None
    except ValueError as exc:
        if isinstance(exc, InvalidInputError):
            raise
        raise InvalidInputError(f"the body is not valid JSON: {exc}") from None


def _body_doc(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"requestBody": {"required": True, "description": description, "content": {JSON: {"schema": schema}}}}


def _model_doc(model: type[BaseModel], description: str) -> dict[str, Any]:
    return _body_doc(model.model_json_schema(), description)


VALUE_BODY: Final = _body_doc({}, "The JSON value to store (any JSON; null stores JSON null)")


def _bot(state: ServerState, who: Caller, raw: str) -> Bot:
    """The bot named in the path, if this caller may reach it (else 404)."""
    bot_id = path_param(raw)
    validate_bot_id(bot_id)
    if not who.token.may_use(bot_id):
        raise KeyNotFoundError(f"no bot {bot_id!r}")
    return state.store.bot(bot_id)


def _admin(who: Caller) -> None:
    if not who.token.is_admin:
        raise ApiError(403, "forbidden", "this needs an admin token")


def _entry(entry: Entry, now: float, **extra: Any) -> dict[str, Any]:
    return {
        **extra,
        "value": entry.value,
        "version": entry.version,
        "expires_at": entry.expires_at,
        "modified_at": entry.modified_at,
        "ttl": None if entry.expires_at is None else max(0.0, entry.expires_at - now),
    }


async def _missing(state: ServerState, kvs: KVS, key: str, what: str) -> KeyNotFoundError:
    """The 404 of a read that found nothing; counts reads refused because the entry expired."""
    try:
        if await kvs.is_expired(key):
            state.metrics.expired_reads.inc()
    except Exception:  # a metric must never turn a 404 into an error
        log.debug("expired-read check failed", exc_info=True)
    return KeyNotFoundError(f"{what} does not exist (or has expired)")


# -- models (OpenAPI documentation and body validation) ----------------------------------

Expiry = StrictStr | StrictInt | StrictFloat | None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _utf8(value: str | None) -> str | None:
    if value is not None:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("contains a lone surrogate") from None
    return value


class ConverseIn(_Strict):
    """A user message."""

    text: StrictStr = Field(max_length=100_000)
    conversation_id: StrictStr | None = Field(default=None, description="omit for the user's current conversation")

    _check = field_validator("text", "conversation_id")(_utf8)


class Reply(BaseModel):
    """A reply: ``type`` and ``text``, plus its type's fields (Botpress bots: ``choices``, ``image``, ``items`` …)."""

    model_config = ConfigDict(extra="allow")

    type: str
    text: str


def _reply(reply: dict[str, Any]) -> dict[str, Any]:
    """A reply as the API answers it: every field but the conversation id (given once, beside the replies)."""
    fields = {k: v for k, v in reply.items() if k not in ("type", "text", "conversation_id")}
    return {"type": reply.get("type", "text"), "text": reply.get("text", ""), **fields}


class ConverseOut(BaseModel):
    """The Botpress converse shape: the bot's replies and the conversation they belong to."""

    responses: list[Reply]
    conversation_id: str | None


class KeyEntry(BaseModel):
    key: str
    value: Any
    version: int
    expires_at: float | None
    modified_at: float
    ttl: float | None


class PathValue(BaseModel):
    key: str
    path: str
    value: Any


class Written(BaseModel):
    key: str
    version: int


class Deleted(BaseModel):
    deleted: bool


class KeyPage(BaseModel):
    keys: list[str]
    cursor: str | None = Field(description="pass as ?cursor= for the next page; null on the last page")


class BatchIn(_Strict):
    """Several operations in one request: ``set`` (all or nothing), then ``delete``, then ``get``."""

    set: dict[str, Any] | None = Field(default=None, description="key -> value")
    expiry: Expiry = Field(default=None, description="expiry of every key set")
    delete: list[StrictStr] | None = Field(default=None, max_length=_MAX_BATCH)
    get: list[StrictStr] | None = Field(default=None, max_length=_MAX_BATCH)


class BatchOut(BaseModel):
    versions: dict[str, int]
    deleted: int
    values: dict[str, Any]


class VariableEntry(BaseModel):
    name: str
    value: Any
    version: int
    expires_at: float | None
    modified_at: float
    ttl: float | None


class VariableList(BaseModel):
    variables: list[VariableEntry]


class VariableWritten(BaseModel):
    name: str
    version: int


class HoldIn(_Strict):
    reason: StrictStr | None = Field(default=None, max_length=1024)


class Held(BaseModel):
    user_id: str
    held: bool


class Receipt(BaseModel):
    bot_id: str
    user_id: str
    dry_run: bool
    time: float
    counts: dict[str, int]


class BotInfo(BaseModel):
    id: str
    name: str | None
    mounted: bool
    load_error: str | None


class BotList(BaseModel):
    bots: list[BotInfo]


class UserPage(BaseModel):
    users: list[str]
    cursor: str | None


class ConversationInfo(BaseModel):
    id: str
    user_id: str | None
    live: bool
    flow: str | None
    node: str | None
    last_activity: float | None


class ConversationList(BaseModel):
    conversations: list[ConversationInfo]
    truncated: bool


class AuditOut(BaseModel):
    records: list[dict[str, Any]]


class Stats(BaseModel):
    bot: str
    users: int
    conversations: int
    keys: dict[str, int]
    expiring: dict[str, int]
    scanned: int
    truncated: bool
    janitor_deletions: list[dict[str, Any]]
    held_users: list[dict[str, Any]]
    janitor_last_run: float | None


def _doc(model: Any, *extra: int) -> dict[int | str, dict[str, Any]]:
    responses: dict[int | str, dict[str, Any]] = {200: {"model": model}}
    responses.update(error_responses(*extra))
    return responses


# -- bots -------------------------------------------------------------------------------


@router.get("/bots", responses=_doc(BotList), response_class=Response, tags=["bots"], summary="List bots")
async def list_bots(request: Request, who: CallerDep) -> Response:
    """Mounted bots, bots that failed to load (with the error), and bots that only have stored data."""
    state = get_state(request)
    runtime = state.runtime
    ids = set(runtime.bots) | set(runtime.load_errors) | set(await state.timed("bots", state.store.bots()))
    out = []
    for bot_id in sorted(ids):
        if not who.token.may_use(bot_id):
            continue
        loaded = runtime.bots.get(bot_id)
        out.append(
            {
                "id": bot_id,
                "name": getattr(loaded, "name", None),
                "mounted": loaded is not None,
                "load_error": runtime.load_errors.get(bot_id),
            }
        )
    return ok({"bots": out})


@router.post(
    "/bots/{bot}/converse/{user_id}",
    responses=_doc(ConverseOut),
    response_class=Response,
    openapi_extra=_model_doc(ConverseIn, "The user's message"),
    tags=["converse"],
    summary="Send a message to a bot",
)
async def converse(request: Request, bot: str, user_id: str, who: CallerDep) -> Response:
    """Run one turn of the conversation and answer the bot's replies (Botpress converse API shape).

    Without ``conversation_id`` the user's current conversation continues
    (a new one starts when there is none). A conversation id that belongs
    to another user answers 404.
    """
    return await _converse(request, get_state(request), who, bot, user_id)


async def _converse(request: Request, state: ServerState, who: Caller, bot: str, user_id: str) -> Response:
    handle = _bot(state, who, bot)
    user = path_param(user_id)
    validate_key(user, state.store.limits.max_id_bytes, "user id")
    message = ConverseIn.model_validate(await read_json(request))
    started = time.perf_counter()
    replies = await state.runtime.converse(
        handle.id, user_id=user, text=message.text, conversation_id=message.conversation_id
    )
    state.metrics.turns.labels(handle.id).inc()
    state.metrics.turn_latency.labels(handle.id).observe(time.perf_counter() - started)
    cid = replies[0].get("conversation_id") if replies else message.conversation_id
    if cid is None:
        cid = await current_conversation(state.store, handle.id, user)
    return ok(
        {
            "responses": [_reply(r) for r in replies],
            "conversation_id": cid,
        }
    )


# -- the KVS ------------------------------------------------------------------------------

QueryPath = Annotated[str | None, Query(description="a JSON path inside the value: a.b[0]")]
QueryExpiry = Annotated[str | None, Query(description='"30s", "10 m", "PT10M", "2030-01-01T00:00:00Z" or "never"')]


async def _kvs_get(state: ServerState, kvs: KVS, raw_key: str, path: str | None) -> Response:
    key = path_param(raw_key)
    if path is not None:
        missing = object()
        value = await state.timed("get", kvs.get(key, path, default=missing))
        if value is missing:
            raise KeyNotFoundError(f"key {key!r} or path {path!r} does not exist")
        return ok({"key": key, "path": path, "value": value})
    entry = await state.timed("get", kvs.get_entry(key))
    if entry is None:
        raise await _missing(state, kvs, key, f"key {key!r}")
    return ok(_entry(entry, state.store.clock.now(), key=key))


async def _kvs_put(
    request: Request,
    state: ServerState,
    kvs: KVS,
    raw_key: str,
    path: str | None,
    expiry: str | None,
    if_version: int | None,
    keep_ttl: bool,
) -> Response:
    key = path_param(raw_key)
    value = await read_json(request)
    version = await state.timed("set", kvs.set(key, value, path, expiry, keep_ttl=keep_ttl, if_version=if_version))
    return ok({"key": key, "version": version})


async def _kvs_delete(state: ServerState, kvs: KVS, raw_key: str) -> Response:
    key = path_param(raw_key)
    if not await state.timed("delete", kvs.delete(key)):
        raise KeyNotFoundError(f"key {key!r} does not exist")
    return ok({"deleted": True})


def _page_scope(namespace: str, prefix: str) -> list[str]:
    return [namespace, prefix]


async def _kvs_list(state: ServerState, kvs: KVS, prefix: str, cursor: str | None, limit: int) -> Response:
    validate_prefix(prefix)
    after = None
    if cursor is not None:
        data = state.auth.unseal("cursor", cursor)
        if not isinstance(data, dict) or data.get("s") != _page_scope(kvs.namespace, prefix):
            raise InvalidInputError("invalid cursor (it belongs to another listing, or was altered)")
        after = data.get("a")
        if not isinstance(after, str):
            raise InvalidInputError("invalid cursor")
    keys = await state.timed("keys", _collect(kvs.keys(prefix, limit=limit + 1, after=after)))
    more = len(keys) > limit
    keys = keys[:limit]
    next_cursor = state.auth.seal("cursor", {"s": _page_scope(kvs.namespace, prefix), "a": keys[-1]}) if more else None
    return ok({"keys": keys, "cursor": next_cursor})


async def _collect(items: AsyncIterator[str]) -> list[str]:
    return [item async for item in items]


async def _kvs_batch(request: Request, state: ServerState, kvs: KVS) -> Response:
    batch = BatchIn.model_validate(await read_json(request))
    versions: dict[str, int] = {}
    if batch.set:
        if len(batch.set) > _MAX_BATCH:
            raise InvalidInputError(f"at most {_MAX_BATCH} keys per batch")
        written = await state.timed("set_many", kvs.set_many(batch.set, expiry=batch.expiry))
        versions = dict(zip(batch.set, written, strict=True))
    elif batch.expiry is not None:
        raise InvalidInputError("expiry applies to the keys of 'set', and there are none")
    deleted = await state.timed("delete_many", kvs.delete_many(batch.delete)) if batch.delete else 0
    values = await state.timed("get_many", kvs.get_many(batch.get)) if batch.get else {}
    return ok({"versions": versions, "deleted": deleted, "values": values})


_KEY_DOC = "the key; '/' may be sent as is, '%' as %25"

QueryPrefix = Annotated[str, Query(description="list only keys starting with this literal prefix")]
QueryCursor = Annotated[str | None, Query(description="the cursor of the previous page")]
QueryLimit = Annotated[int, Query(ge=1, le=_MAX_LIST, description="page size")]
QueryIfVersion = Annotated[
    int | None, Query(ge=0, description="compare-and-set: write only at this version (0: only if absent)")
]


@router.get("/bots/{bot}/kvs", responses=_doc(KeyPage), response_class=Response, tags=["kvs"], summary="List keys")
async def bot_kvs_list(
    request: Request,
    bot: str,
    who: CallerDep,
    prefix: QueryPrefix = "",
    cursor: QueryCursor = None,
    limit: QueryLimit = 100,
) -> Response:
    """Live keys of the bot starting with the literal ``prefix``, in code point order, a page at a time."""
    state = get_state(request)
    return await _kvs_list(state, _bot(state, who, bot).kvs, prefix, cursor, limit)


@router.post(
    "/bots/{bot}/kvs:batch",
    responses=_doc(BatchOut),
    response_class=Response,
    openapi_extra=_model_doc(BatchIn, "Operations"),
    tags=["kvs"],
    summary="Several KVS operations",
)
async def bot_kvs_batch(request: Request, bot: str, who: CallerDep) -> Response:
    """``set`` (all or nothing, with one ``expiry``), then ``delete``, then ``get`` (live keys only)."""
    state = get_state(request)
    return await _kvs_batch(request, state, _bot(state, who, bot).kvs)


@router.get(
    "/bots/{bot}/kvs/{key:path}",
    responses=_doc(KeyEntry),
    response_class=Response,
    tags=["kvs"],
    summary="Read a key",
)
async def bot_kvs_get(request: Request, bot: str, key: str, who: CallerDep, path: QueryPath = None) -> Response:
    """The value with its version, times and seconds left; with ``path``, only that part of it."""
    state = get_state(request)
    return await _kvs_get(state, _bot(state, who, bot).kvs, key, path)


# -- hot paths without FastAPI's dependency machinery ------------------------------------------
# Mounted in front of their FastAPI twins (which stay, for the OpenAPI document and
# as the reference): the same checks, parameters and answers, in a quarter of the
# time per request (solving dependencies and matching ~40 routes cost ~270 µs).

_BOOL: Final = TypeAdapter(bool)
_INT: Final = TypeAdapter(int)


def _query(request: Request, name: str, adapter: TypeAdapter[Any], minimum: int | None = None) -> Any:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        value = adapter.validate_python(raw)
    except ValidationError:
        raise ApiError(422, "validation_error", f"query.{name}: not a valid {adapter.core_schema['type']}") from None
    if minimum is not None and value < minimum:
        raise ApiError(422, "validation_error", f"query.{name}: must be >= {minimum}")
    return value


async def fast_kvs_get(request: Request) -> Response:
    """``GET /api/v1/bots/{bot}/kvs/{key}`` (see ``bot_kvs_get``)."""
    state = get_state(request)
    who = await state.auth.authenticate(request)
    params = request.path_params
    return await _kvs_get(state, _bot(state, who, params["bot"]).kvs, params["key"], request.query_params.get("path"))


async def fast_kvs_put(request: Request) -> Response:
    """``PUT /api/v1/bots/{bot}/kvs/{key}`` (see ``bot_kvs_put``)."""
    state = get_state(request)
    who = await state.auth.authenticate(request)
    params, query = request.path_params, request.query_params
    if_version = _query(request, "if_version", _INT, minimum=0)
    keep_ttl = bool(_query(request, "keep_ttl", _BOOL))
    kvs = _bot(state, who, params["bot"]).kvs
    return await _kvs_put(
        request, state, kvs, params["key"], query.get("path"), query.get("expiry"), if_version, keep_ttl
    )


async def fast_converse(request: Request) -> Response:
    """``POST /api/v1/bots/{bot}/converse/{user_id}`` (see ``converse``)."""
    state = get_state(request)
    who = await state.auth.authenticate(request)
    return await _converse(request, state, who, request.path_params["bot"], request.path_params["user_id"])


FAST_ROUTES: Final = (
    ("/api/v1/bots/{bot}/kvs/{key:path}", fast_kvs_get, "GET"),
    ("/api/v1/bots/{bot}/kvs/{key:path}", fast_kvs_put, "PUT"),
    ("/api/v1/bots/{bot}/converse/{user_id}", fast_converse, "POST"),
)


@router.put(
    "/bots/{bot}/kvs/{key:path}",
    responses=_doc(Written, 409, 507),
    response_class=Response,
    openapi_extra=VALUE_BODY,
    tags=["kvs"],
    summary="Write a key",
)
async def bot_kvs_put(
    request: Request,
    bot: str,
    key: str,
    who: CallerDep,
    path: QueryPath = None,
    expiry: QueryExpiry = None,
    if_version: QueryIfVersion = None,
    keep_ttl: bool = False,
) -> Response:
    """Store the body at ``key`` (or at ``path`` inside it); answers the new version.

    Without ``expiry`` the key's expiry is removed, unless ``keep_ttl`` or a ``path`` is given.
    """
    state = get_state(request)
    return await _kvs_put(request, state, _bot(state, who, bot).kvs, key, path, expiry, if_version, keep_ttl)


@router.delete(
    "/bots/{bot}/kvs/{key:path}",
    responses=_doc(Deleted),
    response_class=Response,
    tags=["kvs"],
    summary="Delete a key",
)
async def bot_kvs_delete(request: Request, bot: str, key: str, who: CallerDep) -> Response:
    """Delete a live key (404 when there is none)."""
    state = get_state(request)
    return await _kvs_delete(state, _bot(state, who, bot).kvs, key)


@router.get(
    "/global/kvs",
    responses=_doc(KeyPage, 403),
    response_class=Response,
    tags=["global kvs"],
    summary="List server-wide keys",
)
async def global_kvs_list(
    request: Request, who: CallerDep, prefix: QueryPrefix = "", cursor: QueryCursor = None, limit: QueryLimit = 100
) -> Response:
    """Keys of the server-wide KVS (admin tokens only)."""
    _admin(who)
    state = get_state(request)
    return await _kvs_list(state, state.store.global_kvs, prefix, cursor, limit)


@router.post(
    "/global/kvs:batch",
    responses=_doc(BatchOut, 403),
    response_class=Response,
    openapi_extra=_model_doc(BatchIn, "Operations"),
    tags=["global kvs"],
    summary="Several server-wide KVS operations",
)
async def global_kvs_batch(request: Request, who: CallerDep) -> Response:
    """As ``/bots/{bot}/kvs:batch``, on the server-wide KVS (admin tokens only)."""
    _admin(who)
    state = get_state(request)
    return await _kvs_batch(request, state, state.store.global_kvs)


@router.get(
    "/global/kvs/{key:path}",
    responses=_doc(KeyEntry, 403),
    response_class=Response,
    tags=["global kvs"],
    summary="Read a server-wide key",
)
async def global_kvs_get(request: Request, key: str, who: CallerDep, path: QueryPath = None) -> Response:
    """As ``GET /bots/{bot}/kvs/{key}``, on the server-wide KVS (admin tokens only)."""
    _admin(who)
    state = get_state(request)
    return await _kvs_get(state, state.store.global_kvs, key, path)


@router.put(
    "/global/kvs/{key:path}",
    responses=_doc(Written, 403, 409),
    response_class=Response,
    openapi_extra=VALUE_BODY,
    tags=["global kvs"],
    summary="Write a server-wide key",
)
async def global_kvs_put(
    request: Request,
    key: str,
    who: CallerDep,
    path: QueryPath = None,
    expiry: QueryExpiry = None,
    if_version: QueryIfVersion = None,
    keep_ttl: bool = False,
) -> Response:
    """As ``PUT /bots/{bot}/kvs/{key}``, on the server-wide KVS (admin tokens only)."""
    _admin(who)
    state = get_state(request)
    return await _kvs_put(request, state, state.store.global_kvs, key, path, expiry, if_version, keep_ttl)


@router.delete(
    "/global/kvs/{key:path}",
    responses=_doc(Deleted, 403),
    response_class=Response,
    tags=["global kvs"],
    summary="Delete a server-wide key",
)
async def global_kvs_delete(request: Request, key: str, who: CallerDep) -> Response:
    """As ``DELETE /bots/{bot}/kvs/{key}``, on the server-wide KVS (admin tokens only)."""
    _admin(who)
    state = get_state(request)
    return await _kvs_delete(state, state.store.global_kvs, key)


# -- dialog memory -------------------------------------------------------------------------


async def _variables(state: ServerState, bot: Bot, scope: Scope) -> Response:
    keys = await state.timed("keys", _collect(bot.kvs.keys(scope.prefix, limit=_MAX_LIST)))
    now = state.store.clock.now()
    out = []
    for key in keys:
        parsed = describe_key(key)
        if parsed[0] != scope.scope:
            continue  # a raw KVS key under the prefix, not a variable
        entry = await state.timed("get", bot.kvs.get_entry(key))
        if entry is not None:
            out.append(_entry(entry, now, name=parsed[2]))
    return ok({"variables": out})


async def _variable_get(state: ServerState, bot: Bot, scope: Scope, raw_name: str) -> Response:
    name = path_param(raw_name)
    key = scope.key(name)
    entry = await state.timed("get", bot.kvs.get_entry(key))
    if entry is None:
        raise await _missing(state, bot.kvs, key, f"{scope.scope} variable {name!r}")
    return ok(_entry(entry, state.store.clock.now(), name=name))


async def _variable_put(
    request: Request, state: ServerState, scope: Scope, raw_name: str, expiry: str | None
) -> Response:
    name = path_param(raw_name)
    scope.key(name)  # a bad name is refused before the body is read
    value = await read_json(request)
    version = await state.timed("set", scope.set(name, value, expiry))
    return ok({"name": name, "version": version})


async def _variable_delete(state: ServerState, scope: Scope, raw_name: str) -> Response:
    name = path_param(raw_name)
    if not await state.timed("delete", scope.delete(name)):
        raise KeyNotFoundError(f"{scope.scope} variable {name!r} does not exist")
    return ok({"deleted": True})


def _user_scope(state: ServerState, who: Caller, bot: str, user: str) -> tuple[Bot, Scope]:
    handle = _bot(state, who, bot)
    return handle, handle.memory.user(path_param(user))


def _conversation_scope(state: ServerState, who: Caller, bot: str, conversation: str) -> tuple[Bot, Scope]:
    handle = _bot(state, who, bot)
    return handle, handle.memory.conversation(path_param(conversation))


def _global_scope(state: ServerState, who: Caller, bot: str) -> tuple[Bot, Scope]:
    handle = _bot(state, who, bot)
    return handle, handle.memory.global_scope()


@router.get(
    "/bots/{bot}/users/{user}/variables",
    responses=_doc(VariableList),
    response_class=Response,
    tags=["memory"],
    summary="A user's variables",
)
async def user_variables(request: Request, bot: str, user: str, who: CallerDep) -> Response:
    state = get_state(request)
    return await _variables(state, *_user_scope(state, who, bot, user))


@router.get(
    "/bots/{bot}/users/{user}/variables/{name}",
    responses=_doc(VariableEntry),
    response_class=Response,
    tags=["memory"],
    summary="Read a user variable",
)
async def user_variable_get(request: Request, bot: str, user: str, name: str, who: CallerDep) -> Response:
    state = get_state(request)
    handle, scope = _user_scope(state, who, bot, user)
    return await _variable_get(state, handle, scope, name)


@router.put(
    "/bots/{bot}/users/{user}/variables/{name}",
    responses=_doc(VariableWritten, 507),
    response_class=Response,
    openapi_extra=VALUE_BODY,
    tags=["memory"],
    summary="Set a user variable",
)
async def user_variable_put(
    request: Request, bot: str, user: str, name: str, who: CallerDep, expiry: QueryExpiry = None
) -> Response:
    state = get_state(request)
    return await _variable_put(request, state, _user_scope(state, who, bot, user)[1], name, expiry)


@router.delete(
    "/bots/{bot}/users/{user}/variables/{name}",
    responses=_doc(Deleted),
    response_class=Response,
    tags=["memory"],
    summary="Delete a user variable",
)
async def user_variable_delete(request: Request, bot: str, user: str, name: str, who: CallerDep) -> Response:
    state = get_state(request)
    return await _variable_delete(state, _user_scope(state, who, bot, user)[1], name)


@router.get(
    "/bots/{bot}/conversations/{conversation}/variables",
    responses=_doc(VariableList),
    response_class=Response,
    tags=["memory"],
    summary="A conversation's variables",
)
async def conversation_variables(request: Request, bot: str, conversation: str, who: CallerDep) -> Response:
    state = get_state(request)
    return await _variables(state, *_conversation_scope(state, who, bot, conversation))


@router.get(
    "/bots/{bot}/conversations/{conversation}/variables/{name}",
    responses=_doc(VariableEntry),
    response_class=Response,
    tags=["memory"],
    summary="Read a conversation variable",
)
async def conversation_variable_get(
    request: Request, bot: str, conversation: str, name: str, who: CallerDep
) -> Response:
    state = get_state(request)
    handle, scope = _conversation_scope(state, who, bot, conversation)
    return await _variable_get(state, handle, scope, name)


@router.put(
    "/bots/{bot}/conversations/{conversation}/variables/{name}",
    responses=_doc(VariableWritten, 507),
    response_class=Response,
    openapi_extra=VALUE_BODY,
    tags=["memory"],
    summary="Set a conversation variable",
)
async def conversation_variable_put(
    request: Request, bot: str, conversation: str, name: str, who: CallerDep, expiry: QueryExpiry = None
) -> Response:
    state = get_state(request)
    return await _variable_put(request, state, _conversation_scope(state, who, bot, conversation)[1], name, expiry)


@router.delete(
    "/bots/{bot}/conversations/{conversation}/variables/{name}",
    responses=_doc(Deleted),
    response_class=Response,
    tags=["memory"],
    summary="Delete a conversation variable",
)
async def conversation_variable_delete(
    request: Request, bot: str, conversation: str, name: str, who: CallerDep
) -> Response:
    state = get_state(request)
    return await _variable_delete(state, _conversation_scope(state, who, bot, conversation)[1], name)


@router.get(
    "/bots/{bot}/variables",
    responses=_doc(VariableList),
    response_class=Response,
    tags=["memory"],
    summary="The bot's global variables",
)
async def global_variables(request: Request, bot: str, who: CallerDep) -> Response:
    state = get_state(request)
    return await _variables(state, *_global_scope(state, who, bot))


@router.get(
    "/bots/{bot}/variables/{name}",
    responses=_doc(VariableEntry),
    response_class=Response,
    tags=["memory"],
    summary="Read a global variable",
)
async def global_variable_get(request: Request, bot: str, name: str, who: CallerDep) -> Response:
    state = get_state(request)
    handle, scope = _global_scope(state, who, bot)
    return await _variable_get(state, handle, scope, name)


@router.put(
    "/bots/{bot}/variables/{name}",
    responses=_doc(VariableWritten, 507),
    response_class=Response,
    openapi_extra=VALUE_BODY,
    tags=["memory"],
    summary="Set a global variable",
)
async def global_variable_put(
    request: Request, bot: str, name: str, who: CallerDep, expiry: QueryExpiry = None
) -> Response:
    state = get_state(request)
    return await _variable_put(request, state, _global_scope(state, who, bot)[1], name, expiry)


@router.delete(
    "/bots/{bot}/variables/{name}",
    responses=_doc(Deleted),
    response_class=Response,
    tags=["memory"],
    summary="Delete a global variable",
)
async def global_variable_delete(request: Request, bot: str, name: str, who: CallerDep) -> Response:
    state = get_state(request)
    return await _variable_delete(state, _global_scope(state, who, bot)[1], name)


# -- users and conversations ------------------------------------------------------------------


@router.get(
    "/bots/{bot}/users", responses=_doc(UserPage), response_class=Response, tags=["users"], summary="List users"
)
async def list_users(
    request: Request, bot: str, who: CallerDep, cursor: QueryCursor = None, limit: QueryLimit = 100
) -> Response:
    """Users that have data in the bot (variables or keys under their prefix), a page at a time."""
    state = get_state(request)
    handle = _bot(state, who, bot)
    after = None
    if cursor is not None:
        data = state.auth.unseal("cursor", cursor)
        if not isinstance(data, dict) or data.get("s") != [handle.id, "users"] or not isinstance(data.get("a"), str):
            raise InvalidInputError("invalid cursor (it belongs to another listing, or was altered)")
        after = data["a"]
    users: list[str] = []
    more = False
    while not more:
        keys = await state.timed("keys", _collect(handle.kvs.keys(_USERS_PREFIX, limit=200, after=after)))
        for key in keys:
            owner = user_of_key(key)
            if owner is None or (users and users[-1] == owner):
                continue
            if len(users) == limit:
                more = True
                break
            users.append(owner)
        if len(keys) < 200:
            break
        after = keys[-1]
    next_cursor = None
    if more:
        last = handle.memory.user(users[-1]).prefix + _LAST
        next_cursor = state.auth.seal("cursor", {"s": [handle.id, "users"], "a": last})
    return ok({"users": users, "cursor": next_cursor})


@router.get(
    "/bots/{bot}/conversations",
    responses=_doc(ConversationList),
    response_class=Response,
    tags=["users"],
    summary="List conversations",
)
async def list_conversations(request: Request, bot: str, who: CallerDep, limit: QueryLimit = 100) -> Response:
    """Conversations with a live session or with variables (at most ``limit`` of each)."""
    state = get_state(request)
    handle = _bot(state, who, bot)
    sessions, more = await state.timed("sessions", live_sessions(state.store, handle.id, limit))
    found: dict[str, dict[str, Any]] = {}
    for cid, session in sessions.items():
        found[cid] = {
            "id": cid,
            "user_id": session.get("user_id") if isinstance(session.get("user_id"), str) else None,
            "live": True,
            "flow": session.get("flow") if isinstance(session.get("flow"), str) else None,
            "node": session.get("node") if isinstance(session.get("node"), str) else None,
            "last_activity": session.get("last_activity")
            if isinstance(session.get("last_activity"), float | int)
            else None,
        }
    keys = await state.timed("keys", _collect(handle.kvs.keys(_CONVERSATIONS_PREFIX, limit=_STATS_SCAN)))
    for key in keys:
        scope, owner, _ = describe_key(key)
        if scope == "conversation" and owner is not None and owner not in found:
            if len(found) >= 2 * limit:
                more = True
                break
            found[owner] = {
                "id": owner,
                "user_id": None,
                "live": False,
                "flow": None,
                "node": None,
                "last_activity": None,
            }
    ordered = sorted(found.values(), key=lambda c: (-(c["last_activity"] or 0), c["id"]))
    return ok({"conversations": ordered, "truncated": more})


@router.get(
    "/bots/{bot}/users/{user}/export",
    responses=_doc(dict[str, Any]),
    response_class=Response,
    tags=["users"],
    summary="Export a user's data (GDPR)",
)
async def export_user(request: Request, bot: str, user: str, who: CallerDep) -> Response:
    """Every live piece of data about the user: variables, KVS keys under the user's prefix,
    the variables of the user's conversations and their sessions."""
    state = get_state(request)
    handle = _bot(state, who, bot)
    return ok(await state.timed("export", handle.users.export(path_param(user))))


@router.post(
    "/bots/{bot}/users/{user}:forget",
    responses=_doc(Receipt, 409),
    response_class=Response,
    tags=["users"],
    summary="Erase a user (GDPR)",
)
async def forget_user(
    request: Request,
    bot: str,
    user: str,
    who: CallerDep,
    dry_run: Annotated[bool, Query(description="only count what would be erased")] = False,
) -> Response:
    """Erase everything about the user and end their sessions; answers the receipt (counts, no values).

    409 when the user is under legal hold (dry run included).
    """
    state = get_state(request)
    handle = _bot(state, who, bot)
    return ok(await state.timed("forget", handle.users.forget(path_param(user), dry_run=dry_run)))


@router.post(
    "/bots/{bot}/users/{user}:hold",
    responses=_doc(Held),
    response_class=Response,
    tags=["users"],
    openapi_extra={"requestBody": {"required": False, "content": {JSON: {"schema": HoldIn.model_json_schema()}}}},
    summary="Put a user under legal hold",
)
async def hold_user(request: Request, bot: str, user: str, who: CallerDep) -> Response:
    """Nothing of the user's is deleted (janitor, end of conversation, erasure) until released."""
    state = get_state(request)
    handle = _bot(state, who, bot)
    user_id = path_param(user)
    reason = None
    if await request.body():
        reason = HoldIn.model_validate(await read_json(request)).reason
    await state.timed("hold", handle.users.hold(user_id, reason=reason))
    return ok({"user_id": user_id, "held": True})


@router.post(
    "/bots/{bot}/users/{user}:release",
    responses=_doc(Held),
    response_class=Response,
    tags=["users"],
    summary="Lift a user's legal hold",
)
async def release_user(request: Request, bot: str, user: str, who: CallerDep) -> Response:
    """Lift the hold (404 when the user was not held)."""
    state = get_state(request)
    handle = _bot(state, who, bot)
    user_id = path_param(user)
    if not await state.timed("release", handle.users.release(user_id)):
        raise KeyNotFoundError(f"user {user_id!r} is not under legal hold")
    return ok({"user_id": user_id, "held": False})


# -- audit and dashboard ------------------------------------------------------------------------

Reason = Literal[
    "expired", "janitor", "policy", "end_of_conversation", "forget", "delete_prefix", "hold", "release", "timeout"
]
AuditScope = Literal["user", "conversation", "global", "kvs"]


def _when(value: str | None, now: float, what: str) -> float | None:
    """Epoch seconds, or a duration back from now (``7d``, ``PT1H``)."""
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        deadline = expires_at(value, now)
        if deadline is None:
            raise InvalidInputError(f"{what} must be epoch seconds or a duration such as 7d") from None
        return now - (deadline - now)
    if not 0 <= number < 1e11:
        raise InvalidInputError(f"{what} must be epoch seconds or a duration such as 7d")
    return number


@router.get("/bots/{bot}/audit", responses=_doc(AuditOut), response_class=Response, tags=["audit"], summary="Audit log")
async def audit(
    request: Request,
    bot: str,
    who: CallerDep,
    user: Annotated[str | None, Query(description="only records about this user")] = None,
    since: Annotated[str | None, Query(description="epoch seconds, or a duration back from now: 7d")] = None,
    until: Annotated[str | None, Query(description="epoch seconds, or a duration back from now")] = None,
    reason: Annotated[Reason | None, Query()] = None,
    scope: Annotated[AuditScope | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> Response:
    """Why data disappeared (time, scope, key or variable, reason, policy; never values), oldest first."""
    state = get_state(request)
    handle = _bot(state, who, bot)
    now = state.store.clock.now()
    if user is not None:
        validate_key(user, None, "user id")
    records = await state.timed(
        "audit",
        AuditLog(state.store).query(
            handle.id,
            user_id=user,
            since=_when(since, now, "since"),
            until=_when(until, now, "until"),
            limit=10_000 if reason or scope else limit,
        ),
    )
    if reason is not None:
        records = [r for r in records if r.get("reason") == reason]
    if scope is not None:
        records = [r for r in records if r.get("scope") == scope]
    return ok({"records": records[:limit]})


_JANITOR_REASONS: Final = frozenset({"expired", "policy", "janitor", "timeout"})


@router.get(
    "/bots/{bot}/stats", responses=_doc(Stats), response_class=Response, tags=["dashboard"], summary="Dashboard"
)
async def stats(request: Request, bot: str, who: CallerDep) -> Response:
    """Counts for the admin dashboard: users, conversations, keys per scope, keys expiring soon,
    janitor deletions per hour over the last day, held users.

    Keys are counted over the first 5,000 (``truncated`` says when there were more).
    """
    state = get_state(request)
    handle = _bot(state, who, bot)
    kvs = handle.kvs
    now = state.store.clock.now()
    keys = await state.timed("keys", _collect(kvs.keys(limit=_STATS_SCAN + 1)))
    truncated = len(keys) > _STATS_SCAN
    keys = keys[:_STATS_SCAN]
    per_scope = {"user": 0, "conversation": 0, "global": 0, "kvs": 0}
    users: set[str] = set()
    conversations: set[str] = set()
    expiring = {"hour": 0, "day": 0, "week": 0}
    for key in keys:
        scope, owner, _ = describe_key(key)
        per_scope[scope] += 1
        owner_user = owner if scope == "user" else user_of_key(key)
        if owner_user is not None:
            users.add(owner_user)
        if scope == "conversation" and owner is not None:
            conversations.add(owner)
    for i in range(0, len(keys), 200):
        for key in keys[i : i + 200]:
            try:
                ttl = await kvs.ttl(key)
            except KeyNotFoundError:
                continue
            if ttl is None:
                continue
            for bucket, seconds in (("hour", 3600), ("day", 86_400), ("week", 604_800)):
                if ttl <= seconds:
                    expiring[bucket] += 1
    sessions, _more = await live_sessions(state.store, handle.id, _STATS_SCAN)
    conversations.update(sessions)
    hour = 3600.0
    start = (now // hour) * hour - 23 * hour
    buckets = [0] * 24
    for record in await AuditLog(state.store).query(handle.id, since=start, limit=100_000):
        if record.get("reason") in _JANITOR_REASONS:
            index = int((float(record.get("time", start)) - start) // hour)
            if 0 <= index < 24:
                buckets[index] += int(record.get("count") or 1)
    held = []
    for user_id, info in (await handle.users.holds()).items():
        count = len(await _collect(kvs.keys(handle.memory.user(user_id).prefix, limit=_MAX_LIST)))
        held.append({"user_id": user_id, "since": info.get("since"), "reason": info.get("reason"), "keys": count})
    return ok(
        {
            "bot": handle.id,
            "users": len(users),
            "conversations": len(conversations),
            "keys": per_scope,
            "expiring": expiring,
            "scanned": len(keys),
            "truncated": truncated,
            "janitor_deletions": [{"time": start + i * hour, "deleted": n} for i, n in enumerate(buckets)],
            "held_users": held,
            "janitor_last_run": state.janitor_last_run,
        }
    )
