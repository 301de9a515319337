"""The Redis backend (``redis://host:port/db``): lowest latency, several replicas.

Layout, every Redis key under the ``prefix`` option (default ``botmemory:``),
so several stores (and test runs) share one database without meeting:

- ``{P}e:{id}``: one hash per entry, fields ``v`` (value bytes), ``ver``,
  ``x`` (expires_at, absent when none) and ``m`` (modified_at). The entry id
  is ``{len(ns in UTF-8)}:{ns}{key}``: the length prefix keeps every
  (namespace, key) pair apart whatever characters they hold.
- ``{P}k:{ns}``: sorted set of the namespace's keys, all at score 0, so
  ``ZRANGEBYLEX`` lists them in UTF-8 byte order (= code point order) under a
  literal prefix: no ``SCAN MATCH``, no glob characters to escape.
- ``{P}x:{ns}``: sorted set of the namespace's keys that expire, by
  ``expires_at``: liveness checks, live counts and ``scan_expired``.
- ``{P}d`` (and ``{P}dp`` for the runtime's private namespaces): sorted set
  of entry ids by ``expires_at``, so the janitor finds the oldest expired
  entries of every namespace in bounded batches.
- ``{P}n``: set of namespaces; ``{P}l:{name}`` lock leases; ``{P}fence``
  the fencing-token counter.

Every read filters by the ``now`` argument (the store's clock), so Redis
behaves exactly like the other backends under a fake clock. Each entry with an
expiry also gets a native ``PEXPIREAT`` a day after its deadline (measured on
the real clock when the store's clock runs behind it): garbage collection
only, it never removes what the store's clock still sees as live, and index
members left behind by it are treated as absent and cleaned up lazily.

Writes are Lua scripts (atomic, one round trip); ``mutate`` calls a Python
function, so it runs as optimistic ``WATCH``/``MULTI``/``EXEC`` and retries
when another client touched the entry (the function may run more than once).
No call waits much longer than ``timeout`` seconds: socket reads and connects
time out. A read whose pooled connection turned out dead (server restart) runs
once more on a fresh connection; a write is never resent, so it is never
applied twice. Redis Cluster is not supported: scripts build key names.
"""

from __future__ import annotations

import asyncio
import math
import random
import re
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    ConnectionError as RedisConnectionError,
)
from redis.exceptions import (
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    ResponseError,
    WatchError,
)
from redis.exceptions import (
    TimeoutError as RedisTimeoutError,
)

from ..cancellation import keep_cancellation
from ..errors import (
    InvalidInputError,
    QuotaExceededError,
    StoreError,
    StoreFullError,
    StoreTimeoutError,
    StoreUnavailableError,
)
from .base import PRIVATE_NS_PREFIX, Backend, BatchWrite, Keep, LockLease, MutateFn, Purged, Row, check_moves
from .keyrange import prefix_upper_bound
from .urlquery import positive_seconds, seconds, take_query_options, text

__all__ = ["RedisBackend", "glob_escape", "open_backend"]

T = TypeVar("T")

#: Native expiry fires this long after an entry's deadline: garbage collection
#: for entries the janitor never purged, with room for clock skew.
NATIVE_GRACE: Final = 86_400.0
_QUOTA: Final = "BOTMEMORY_QUOTA"
_BATCH: Final = 500

# -- Lua -------------------------------------------------------------------
# Floats travel as Python's shortest repr and are stored as those strings:
# Lua's own number formatting keeps only 14 digits.
_LIB = """
local function is_live(x, now)
  return (not x) or tonumber(x) > now
end
local function fmt(n)
  return string.format('%.0f', n)
end
local function native(e, exp, now, real, grace)
  local at = tonumber(exp)
  at = math.max(at, at - now + real) + grace
  redis.call('PEXPIREAT', e, fmt(at * 1000))
end
local function write(e, kz, xz, dz, nz, ns, key, id, value, ver, exp, now, real, grace)
  redis.call('HSET', e, 'v', value, 'ver', fmt(ver), 'm', now)
  if exp == '' then
    redis.call('HDEL', e, 'x')
    redis.call('ZREM', xz, key)
    redis.call('ZREM', dz, id)
    redis.call('PERSIST', e)
  else
    redis.call('HSET', e, 'x', exp)
    redis.call('ZADD', xz, exp, key)
    redis.call('ZADD', dz, exp, id)
    native(e, exp, tonumber(now), real, grace)
  end
  redis.call('ZADD', kz, 0, key)
  redis.call('SADD', nz, ns)
end
local function acquire(lock, fence, owner, now, exp, real, grace)
  local cur = redis.call('HMGET', lock, 'owner', 'token', 'x')
  local token
  if cur[1] and tonumber(cur[3]) > now then
    if cur[1] ~= owner then return false end
    token = cur[2]
  else
    token = fmt(redis.call('INCR', fence))
  end
  redis.call('HSET', lock, 'owner', owner, 'token', token, 'x', exp)
  native(lock, exp, now, real, grace)
  return tonumber(token)
end
local function live_count(kz, xz, now)
  return redis.call('ZCARD', kz) - redis.call('ZCOUNT', xz, '-inf', now)
end
local function forget(e, kz, xz, dz, key, id)
  redis.call('DEL', e)
  redis.call('ZREM', kz, key)
  redis.call('ZREM', xz, key)
  redis.call('ZREM', dz, id)
end
local function held(key, keep)
  for _, p in ipairs(keep) do
    if string.sub(key, 1, #p) == p then return true end
  end
  return false
end
"""

# KEYS: e, kz, xz, dz, nz. ARGV: ns, key, id, value, exp ('' none), keep ('1'),
# now, max_keys ('' none), real now, grace. Returns the new version.
_PUT = (
    _LIB
    + """
local now = tonumber(ARGV[7])
local cur = redis.call('HMGET', KEYS[1], 'ver', 'x')
local live = cur[1] and is_live(cur[2], now)
if not live and ARGV[8] ~= '' and live_count(KEYS[2], KEYS[3], ARGV[7]) >= tonumber(ARGV[8]) then
  return redis.error_reply('BOTMEMORY_QUOTA')
end
local ver = 1
if live then ver = tonumber(cur[1]) + 1 end
local exp = ARGV[5]
if ARGV[6] == '1' then
  exp = ''
  if live and cur[2] then exp = cur[2] end
end
write(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ver, exp, ARGV[7],
      tonumber(ARGV[9]), tonumber(ARGV[10]))
return ver
"""
)

# KEYS: kz, xz, dz, nz, e1..en. ARGV: ns, exp, now, max_keys, real, grace,
# then key, id, value for each entry. All or nothing: the quota is checked
# before anything is written. Returns the versions.
_PUT_MANY = (
    _LIB
    + """
local now = tonumber(ARGV[3])
local n = #KEYS - 4
if ARGV[4] ~= '' then
  local seen, new = {}, 0
  for i = 1, n do
    local key = ARGV[4 + 3 * i]
    if not seen[key] then
      seen[key] = true
      local cur = redis.call('HMGET', KEYS[4 + i], 'ver', 'x')
      if not (cur[1] and is_live(cur[2], now)) then new = new + 1 end
    end
  end
  if new > 0 and live_count(KEYS[1], KEYS[2], ARGV[3]) + new > tonumber(ARGV[4]) then
    return redis.error_reply('BOTMEMORY_QUOTA')
  end
end
local out = {}
for i = 1, n do
  local e = KEYS[4 + i]
  local cur = redis.call('HMGET', e, 'ver', 'x')
  local ver = 1
  if cur[1] and is_live(cur[2], now) then ver = tonumber(cur[1]) + 1 end
  write(e, KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[4 + 3 * i], ARGV[5 + 3 * i], ARGV[6 + 3 * i],
        ver, ARGV[2], ARGV[3], tonumber(ARGV[5]), tonumber(ARGV[6]))
  out[i] = ver
end
return out
"""
)

# KEYS: kz, xz, dz, nz. ARGV: ns, now, entry-key prefix of ns, id prefix of
# ns, then keys. Returns how many were live.
_DELETE = (
    _LIB
    + """
local now = tonumber(ARGV[2])
local live = 0
for i = 5, #ARGV do
  local key = ARGV[i]
  local e = ARGV[3] .. key
  local cur = redis.call('HMGET', e, 'ver', 'x')
  if cur[1] and is_live(cur[2], now) then live = live + 1 end
  forget(e, KEYS[1], KEYS[2], KEYS[3], key, ARGV[4] .. key)
end
if redis.call('ZCARD', KEYS[1]) == 0 then redis.call('SREM', KEYS[4], ARGV[1]) end
return live
"""
)

# KEYS: kz, xz, dz, nz. ARGV: ns, now, entry-key prefix, id prefix, lex min,
# lex max. Returns how many were live.
_DELETE_PREFIX = (
    _LIB
    + """
local now = tonumber(ARGV[2])
local live = 0
while true do
  local keys = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[5], ARGV[6], 'LIMIT', 0, 500)
  if #keys == 0 then break end
  for _, key in ipairs(keys) do
    local e = ARGV[3] .. key
    local cur = redis.call('HMGET', e, 'ver', 'x')
    if cur[1] and is_live(cur[2], now) then live = live + 1 end
    forget(e, KEYS[1], KEYS[2], KEYS[3], key, ARGV[4] .. key)
  end
end
if redis.call('ZCARD', KEYS[1]) == 0 then redis.call('SREM', KEYS[4], ARGV[1]) end
return live
"""
)

# KEYS: e, xz, dz. ARGV: key, id, exp ('' = persist), now, real, grace.
_SET_EXPIRY = (
    _LIB
    + """
local now = tonumber(ARGV[4])
local cur = redis.call('HMGET', KEYS[1], 'ver', 'x')
if not (cur[1] and is_live(cur[2], now)) then return 0 end
if ARGV[3] == '' then
  if not cur[2] then return 0 end
  redis.call('HDEL', KEYS[1], 'x')
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[2])
  redis.call('PERSIST', KEYS[1])
else
  redis.call('HSET', KEYS[1], 'x', ARGV[3])
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
  redis.call('ZADD', KEYS[3], ARGV[3], ARGV[2])
  native(KEYS[1], ARGV[3], now, tonumber(ARGV[5]), tonumber(ARGV[6]))
end
return 1
"""
)

# KEYS: dz, nz. ARGV: prefix P, now, limit, then (ns, key prefix) pairs to
# keep. Deletes the oldest expired entries of every namespace indexed in dz;
# returns id, expires_at pairs.
_PURGE_ALL = (
    _LIB
    + """
local P, now, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])
local keep = {}
for i = 4, #ARGV, 2 do
  keep[ARGV[i]] = keep[ARGV[i]] or {}
  table.insert(keep[ARGV[i]], ARGV[i + 1])
end
local out, skipped, emptied = {}, 0, {}
while #out < 2 * limit do
  local batch = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', skipped, limit)
  if #batch == 0 then break end
  for i = 1, #batch, 2 do
    local id = batch[i]
    local colon = string.find(id, ':', 1, true)
    local len = tonumber(string.sub(id, 1, colon - 1))
    local ns = string.sub(id, colon + 1, colon + len)
    local key = string.sub(id, colon + len + 1)
    if keep[ns] and held(key, keep[ns]) then
      skipped = skipped + 1
    else
      local kz = P .. 'k:' .. ns
      forget(P .. 'e:' .. id, kz, P .. 'x:' .. ns, KEYS[1], key, id)
      emptied[ns] = kz
      table.insert(out, id)
      table.insert(out, batch[i + 1])
      if #out >= 2 * limit then break end
    end
  end
end
for ns, kz in pairs(emptied) do
  if redis.call('ZCARD', kz) == 0 then redis.call('SREM', KEYS[2], ns) end
end
return out
"""
)

# KEYS: kz, xz, dz, nz. ARGV: ns, entry-key prefix, id prefix, now, limit,
# then key prefixes to keep. Returns key, expires_at pairs.
_PURGE_NS = (
    _LIB
    + """
local now, limit = ARGV[4], tonumber(ARGV[5])
local keep = {}
for i = 6, #ARGV do table.insert(keep, ARGV[i]) end
local out, skipped = {}, 0
while #out < 2 * limit do
  local batch = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'WITHSCORES', 'LIMIT', skipped, limit)
  if #batch == 0 then break end
  for i = 1, #batch, 2 do
    local key = batch[i]
    if held(key, keep) then
      skipped = skipped + 1
    else
      forget(ARGV[2] .. key, KEYS[1], KEYS[2], KEYS[3], key, ARGV[3] .. key)
      table.insert(out, key)
      table.insert(out, batch[i + 1])
      if #out >= 2 * limit then break end
    end
  end
end
if redis.call('ZCARD', KEYS[1]) == 0 then redis.call('SREM', KEYS[4], ARGV[1]) end
return out
"""
)

# KEYS: nz. ARGV: prefix P, private namespace prefix, then (target, source or '')
# pairs. Each target is emptied, then gets the source's entries (hashes renamed,
# indexes moved), all in this one script: atomic for every other client, and a
# client that dies while it runs cannot stop it half-way. An entry already
# collected natively is dropped from the indexes instead of moved.
_REPLACE_NAMESPACES = (
    _LIB
    + """
local P, private = ARGV[1], ARGV[2]
local function names(ns)
  local dz = P .. 'd'
  if string.sub(ns, 1, #private) == private then dz = P .. 'dp' end
  local id = string.len(ns) .. ':' .. ns
  return P .. 'k:' .. ns, P .. 'x:' .. ns, dz, id, P .. 'e:' .. id
end
for i = 3, #ARGV, 2 do
  local target, source = ARGV[i], ARGV[i + 1]
  local tkz, txz, tdz, tid, tep = names(target)
  while true do
    local keys = redis.call('ZRANGE', tkz, 0, 499)
    if #keys == 0 then break end
    for _, key in ipairs(keys) do forget(tep .. key, tkz, txz, tdz, key, tid .. key) end
  end
  redis.call('DEL', tkz, txz)
  redis.call('SREM', KEYS[1], target)
  if source ~= '' then
    local skz, sxz, sdz, sid, sep = names(source)
    for _, key in ipairs(redis.call('ZRANGE', skz, 0, -1)) do
      local x = redis.call('ZSCORE', sxz, key)
      redis.call('ZREM', sdz, sid .. key)
      if redis.call('EXISTS', sep .. key) == 1 then
        redis.call('RENAME', sep .. key, tep .. key)
        if x then redis.call('ZADD', tdz, x, tid .. key) end
      else
        redis.call('ZREM', skz, key)
        redis.call('ZREM', sxz, key)
      end
    end
    if redis.call('EXISTS', skz) == 1 then redis.call('RENAME', skz, tkz) end
    if redis.call('EXISTS', sxz) == 1 then redis.call('RENAME', sxz, txz) end
    redis.call('SREM', KEYS[1], source)
    if redis.call('ZCARD', tkz) > 0 then redis.call('SADD', KEYS[1], target) end
  end
end
return 1
"""
)

# KEYS: kz, xz. ARGV: lex min, lex max, limit, now. Live keys in order.
_SCAN = """
local limit, now = tonumber(ARGV[3]), tonumber(ARGV[4])
local out, offset = {}, 0
while #out < limit do
  local want = math.max(limit - #out, 64)
  local batch = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[1], ARGV[2], 'LIMIT', offset, want)
  for _, key in ipairs(batch) do
    local x = redis.call('ZSCORE', KEYS[2], key)
    if (not x) or tonumber(x) > now then
      table.insert(out, key)
      if #out >= limit then break end
    end
  end
  if #batch < want then break end
  offset = offset + #batch
end
return out
"""

# KEYS: kz, xz. ARGV: now. The number of live keys.
_COUNT = _LIB + "return live_count(KEYS[1], KEYS[2], ARGV[1])"

# KEYS: xz. ARGV: entry-key prefix, key prefix, now, limit. Expired rows
# (key, v, ver, x, m) under the prefix, oldest deadline first; entries already
# collected natively are skipped.
_SCAN_EXPIRED = """
local prefix, limit = ARGV[2], tonumber(ARGV[4])
local out, offset = {}, 0
while #out < limit do
  local batch = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[3], 'LIMIT', offset, 200)
  for _, key in ipairs(batch) do
    if string.sub(key, 1, #prefix) == prefix then
      local h = redis.call('HMGET', ARGV[1] .. key, 'v', 'ver', 'x', 'm')
      if h[1] then
        table.insert(out, {key, h[1], h[2], h[3], h[4]})
        if #out >= limit then break end
      end
    end
  end
  if #batch < 200 then break end
  offset = offset + #batch
end
return out
"""

# KEYS: lock, fence. ARGV: owner, now, expires_at, real now, grace.
_ACQUIRE = (
    _LIB
    + """
return acquire(KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5]))
"""
)

# KEYS: lock. ARGV: owner. The fence counter keeps tokens growing after a release.
_RELEASE = """
if redis.call('HGET', KEYS[1], 'owner') == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""

# KEYS: entries. Returns one string per entry, "ver NUL x NUL m NUL v" (x
# empty when none; v last, so it may hold any byte), or nil when the entry is
# absent or incomplete. One command instead of a pipeline of HMGETs, and one
# reply element per entry instead of four: redis-py spends most of the time
# packing and parsing commands and reply elements in Python.
_GET_MANY = """
local out = {}
for i = 1, #KEYS do
  local h = redis.call('HMGET', KEYS[i], 'v', 'ver', 'x', 'm')
  if h[1] and h[2] and h[4] then
    out[i] = h[2] .. '\0' .. (h[3] or '') .. '\0' .. h[4] .. '\0' .. h[1]
  else
    out[i] = false
  end
end
return out
"""

# KEYS: nz, lock, then e, kz, xz, dz per write. ARGV: now, real now, grace,
# owner ('' to release nothing), then ns, key, id, value, exp ('' none),
# keep ('1'), version, expected per write. Every check before any write.
# Returns 1 when written, 0 (nothing changed) on a version mismatch.
_WRITE_BATCH = (
    _LIB
    + """
local now = tonumber(ARGV[1])
local n = (#KEYS - 2) / 4
local kept = {}
for i = 1, n do
  local h = redis.call('HMGET', KEYS[3 + 4 * (i - 1)], 'ver', 'x')
  local live = h[1] and is_live(h[2], now)
  local ver = 0
  if live then ver = tonumber(h[1]) end
  if ver ~= tonumber(ARGV[12 + 8 * (i - 1)]) then return 0 end
  if live and h[2] then kept[i] = h[2] else kept[i] = '' end
end
for i = 1, n do
  local b = 2 + 4 * (i - 1)
  local a = 4 + 8 * (i - 1)
  local exp = ARGV[a + 5]
  if ARGV[a + 6] == '1' then exp = kept[i] end
  write(KEYS[b + 1], KEYS[b + 2], KEYS[b + 3], KEYS[b + 4], KEYS[1], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3],
        ARGV[a + 4], tonumber(ARGV[a + 7]), exp, ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]))
end
if ARGV[4] ~= '' and redis.call('HGET', KEYS[2], 'owner') == ARGV[4] then
  redis.call('DEL', KEYS[2])
end
return 1
"""
)

# KEYS: lock, fence, then entries. ARGV: as _ACQUIRE. Returns {token, entries as
# _GET_MANY packs them}, token 0 (and no entries) when another owner holds the lock.
_ACQUIRE_AND_READ = (
    _LIB
    + """
local token = acquire(KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5]))
if not token then return {0} end
local out = {token}
for i = 3, #KEYS do
  local h = redis.call('HMGET', KEYS[i], 'v', 'ver', 'x', 'm')
  if h[1] and h[2] and h[4] then
    out[i - 1] = h[2] .. '\0' .. (h[3] or '') .. '\0' .. h[4] .. '\0' .. h[1]
  else
    out[i - 1] = false
  end
end
return out
"""
)

_SCRIPTS: Final = {
    "acquire_and_read": _ACQUIRE_AND_READ,
    "write_batch": _WRITE_BATCH,
    "get_many": _GET_MANY,
    "put": _PUT,
    "put_many": _PUT_MANY,
    "delete": _DELETE,
    "delete_prefix": _DELETE_PREFIX,
    "set_expiry": _SET_EXPIRY,
    "purge_all": _PURGE_ALL,
    "purge_ns": _PURGE_NS,
    "scan": _SCAN,
    "count": _COUNT,
    "scan_expired": _SCAN_EXPIRED,
    "acquire": _ACQUIRE,
    "release": _RELEASE,
    "replace_namespaces": _REPLACE_NAMESPACES,
}


def glob_escape(text: str) -> str:
    """``text`` with Redis glob characters (``* ? [ ] \\``) escaped, for ``MATCH``."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _translate(exc: BaseException, what: str) -> BaseException:
    """The one seam where redis-py errors become botmemory errors."""
    if isinstance(exc, ResponseError) and str(exc).startswith(_QUOTA):
        return QuotaExceededError(f"the namespace would hold more keys than its quota ({what})")
    if isinstance(exc, OutOfMemoryError):  # maxmemory reached with a noeviction policy
        return StoreFullError(f"Redis {what}: {exc}")
    if isinstance(exc, RedisTimeoutError | TimeoutError):
        return StoreTimeoutError(f"Redis {what}: {exc or 'timed out'}")
    if isinstance(exc, RedisConnectionError | ReadOnlyError | OSError):
        return StoreUnavailableError(f"Redis {what}: {exc}")
    return StoreError(f"Redis {what}: {exc}")


def _f(value: float) -> str:
    return repr(float(value))


def _float(raw: bytes | None) -> float | None:
    return None if raw is None else float(raw)


def _lex_range(prefix: str, after: str | None = None) -> tuple[bytes, bytes]:
    """``ZRANGEBYLEX`` bounds for keys under the literal ``prefix`` (and > ``after``)."""
    if after is not None and after >= prefix:
        low = b"(" + after.encode()
    elif prefix:
        low = b"[" + prefix.encode()
    else:
        low = b"-"
    bound = prefix_upper_bound(prefix)
    return low, (b"+" if bound is None else b"(" + bound.encode())


class RedisBackend(Backend):
    """Entries in Redis hashes, indexed by sorted sets, under one key prefix."""

    name = "redis"

    def __init__(self, client: aioredis.Redis, prefix: str, timeout: float, url: str) -> None:
        self._r: aioredis.Redis | None = client
        self.prefix = prefix
        self.timeout = timeout
        self._url = url
        self._scripts = {name: client.register_script(src) for name, src in _SCRIPTS.items()}
        p = prefix
        self._nz = f"{p}n"
        self._fence = f"{p}fence"
        # per-entry locks of the mutations in flight; a lock goes away with its last user
        self._mutating: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    # -- names -------------------------------------------------------------
    def _id(self, ns: str, key: str) -> str:
        return f"{len(ns.encode())}:{ns}{key}"

    def _ekey(self, ns: str, key: str) -> str:
        return f"{self.prefix}e:{self._id(ns, key)}"

    def _ns_keys(self, ns: str) -> tuple[str, str, str, str]:
        """kz, xz, dz, nz of namespace ``ns``."""
        p = self.prefix
        dz = f"{p}dp" if ns.startswith(PRIVATE_NS_PREFIX) else f"{p}d"
        return f"{p}k:{ns}", f"{p}x:{ns}", dz, self._nz

    # -- plumbing ----------------------------------------------------------
    def _client(self) -> aioredis.Redis:
        if self._r is None:
            raise StoreUnavailableError("the Redis store is closed")
        return self._r

    async def _call(self, what: str, fn: Callable[[aioredis.Redis], Awaitable[T]], *, read: bool = False) -> T:
        """Run ``fn`` with the client, errors translated.

        A read whose connection turns out dead (the server restarted or
        dropped it while it sat in the pool) runs once more on a fresh one; a
        write never does, as it may have been applied before the connection
        died.
        """
        client = self._client()
        with keep_cancellation():  # redis-py's wait_for may swallow one (Python 3.11)
            try:
                return await fn(client)
            except RedisConnectionError as exc:
                if not read:
                    raise _translate(exc, what) from exc
            except (TimeoutError, RedisError, OSError) as exc:
                raise _translate(exc, what) from exc
            try:
                return await fn(client)
            except (TimeoutError, RedisError, OSError) as exc:
                raise _translate(exc, what) from exc

    async def _script(self, name: str, keys: Sequence[Any], args: Sequence[Any], *, read: bool = False) -> Any:
        script = self._scripts[name]
        return await self._call(name, lambda client: script(keys=list(keys), args=list(args), client=client), read=read)

    def _real(self) -> tuple[str, str]:
        return _f(time.time()), _f(NATIVE_GRACE)

    @staticmethod
    def _row(key: str, h: Sequence[Any], now: float) -> Row | None:
        value, ver, x, m = h
        if value is None or ver is None or m is None:
            return None
        expires_at = _float(x)
        if expires_at is not None and expires_at <= now:
            return None
        return Row(key, bytes(value), int(ver), expires_at, float(m))

    # -- reads -------------------------------------------------------------
    async def get(self, ns: str, key: str, now: float) -> Row | None:
        ek = self._ekey(ns, key)
        h = await self._call("get", lambda r: r.hmget(ek, ["v", "ver", "x", "m"]), read=True)
        return self._row(key, h, now)

    async def get_many(self, ns: str, keys: Sequence[str], now: float) -> list[Row]:
        keys = list(dict.fromkeys(keys))
        if not keys:
            return []
        found: list[Any] = []
        for i in range(0, len(keys), _BATCH):  # bounded scripts: Redis serves no one else while one runs
            entries = [self._ekey(ns, key) for key in keys[i : i + _BATCH]]
            found += await self._script("get_many", entries, [], read=True)
        rows = []
        for key, packed in zip(keys, found, strict=True):
            if packed is None:
                continue
            ver, x, m, value = bytes(packed).split(b"\0", 3)
            expires_at = float(x) if x else None
            if expires_at is None or expires_at > now:
                rows.append(Row(key, value, int(ver), expires_at, float(m)))
        return rows

    async def acquire_and_read(
        self, name: str, owner: str, ttl: float, keys: Sequence[tuple[str, str]], now: float
    ) -> tuple[LockLease | None, list[tuple[str, Row]]]:
        pairs = list(dict.fromkeys(keys))
        if len(pairs) > _BATCH:  # bounded scripts: the lock, then the reads in pages
            lease = await self.acquire_lock(name, owner, ttl, now)
            return (None, []) if lease is None else (lease, await self.read_many(pairs, now))
        real, grace = self._real()
        exp = now + ttl
        keys_ = [f"{self.prefix}l:{name}", self._fence, *(self._ekey(ns, key) for ns, key in pairs)]
        found = await self._script("acquire_and_read", keys_, [owner, _f(now), _f(exp), real, grace])
        token = int(found[0])
        if not token:
            return None, []
        return LockLease(name, owner, token, exp), self._unpack(pairs, found[1:], now)

    async def read_many(self, keys: Sequence[tuple[str, str]], now: float) -> list[tuple[str, Row]]:
        pairs = list(dict.fromkeys(keys))
        found: list[Any] = []
        for i in range(0, len(pairs), _BATCH):  # bounded scripts: Redis serves no one else while one runs
            entries = [self._ekey(ns, key) for ns, key in pairs[i : i + _BATCH]]
            found += await self._script("get_many", entries, [], read=True)
        return self._unpack(pairs, found, now)

    @staticmethod
    def _unpack(pairs: Sequence[tuple[str, str]], found: Sequence[Any], now: float) -> list[tuple[str, Row]]:
        out = []
        for (ns, key), packed in zip(pairs, found, strict=True):
            if packed is None:
                continue
            ver, x, m, value = bytes(packed).split(b"\0", 3)
            expires_at = float(x) if x else None
            if expires_at is None or expires_at > now:
                out.append((ns, Row(key, value, int(ver), expires_at, float(m))))
        return out
    async def scan(
        self, ns: str, prefix: str, after: str | None, limit: int, now: float, *, expired: bool = False
    ) -> list[str]:
        if expired:
            return [row.key for row in await self.scan_expired(ns, prefix, now, limit)]
        kz, xz, _, _ = self._ns_keys(ns)
        low, high = _lex_range(prefix, after)
        keys = await self._script("scan", [kz, xz], [low, high, limit, _f(now)], read=True)
        return [k.decode() for k in keys]

    async def count(self, ns: str, now: float) -> int:
        kz, xz, _, _ = self._ns_keys(ns)
        return int(await self._script("count", [kz, xz], [_f(now)], read=True))

    async def namespaces(self) -> list[str]:
        members = await self._call("namespaces", lambda r: r.smembers(self._nz), read=True)
        return sorted(m.decode() if isinstance(m, bytes) else m for m in members)

    async def scan_expired(self, ns: str, prefix: str, now: float, limit: int) -> list[Row]:
        _, xz, _, _ = self._ns_keys(ns)
        eprefix = self._ekey(ns, "")
        found = await self._script("scan_expired", [xz], [eprefix, prefix, _f(now), limit], read=True)
        return [Row(k.decode(), bytes(v), int(ver), float(x), float(m)) for k, v, ver, x, m in found]

    # -- writes ------------------------------------------------------------
    def _put_args(
        self, ns: str, key: str, value: bytes, expires_at: float | Keep | None, now: float, max_keys: int | None
    ) -> tuple[list[str], list[Any]]:
        keep = isinstance(expires_at, Keep)
        exp = "" if isinstance(expires_at, Keep) or expires_at is None else _f(expires_at)
        kz, xz, dz, nz = self._ns_keys(ns)
        real, grace = self._real()
        keys = [self._ekey(ns, key), kz, xz, dz, nz]
        args = [ns, key, self._id(ns, key), value, exp, "1" if keep else "0", _f(now),
                "" if max_keys is None else max_keys, real, grace]  # fmt: skip
        return keys, args

    async def put(
        self, ns: str, key: str, value: bytes, expires_at: float | Keep | None, now: float, max_keys: int | None
    ) -> int:
        keys, args = self._put_args(ns, key, value, expires_at, now, max_keys)
        return int(await self._script("put", keys, args))

    async def mutate(self, ns: str, key: str, fn: MutateFn, now: float, max_keys: int | None) -> int | None:
        ek = self._ekey(ns, key)
        # Optimistic transactions on one hot key conflict with each other:
        # callers in this process take turns, so only other processes retry.
        lock = self._mutating.get(ek)
        if lock is None:
            lock = self._mutating[ek] = asyncio.Lock()
        with keep_cancellation():  # redis-py's wait_for may swallow one (Python 3.11)
            async with lock:
                return await self._mutate(ek, ns, key, fn, now, max_keys)

    async def _mutate(self, ek: str, ns: str, key: str, fn: MutateFn, now: float, max_keys: int | None) -> int | None:
        client = self._client()
        script = self._scripts["put"]
        source = _PUT
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        attempt = 0
        try:
            async with client.pipeline(transaction=True) as pipe:
                while True:
                    attempt += 1
                    try:
                        await pipe.watch(ek)
                        current = self._row(key, await pipe.hmget(ek, ["v", "ver", "x", "m"]), now)
                        mutation = fn(current)
                        if mutation is None:
                            return None
                        if not mutation.bump and current is not None:
                            keys, args = self._expiry_args(ns, key, mutation.expires_at, current, now)
                            sha, source = self._scripts["set_expiry"].sha, _SET_EXPIRY
                        else:
                            keys, args = self._put_args(ns, key, mutation.value, mutation.expires_at, now, max_keys)
                            sha, source = script.sha, _PUT
                        pipe.multi()  # type: ignore[no-untyped-call]
                        pipe.evalsha(sha, len(keys), *keys, *args)
                        # unannotated errors, so the quota reply is recognised exactly
                        (result,) = await pipe.execute(raise_on_error=False)
                        if isinstance(result, Exception):
                            raise result
                        if not mutation.bump and current is not None:
                            return current.version
                        return int(result)
                    except WatchError:
                        # Another client wrote the entry between our read and
                        # EXEC: read again (fn may run more than once).
                        if loop.time() > deadline:
                            raise StoreTimeoutError(
                                f"Redis mutate: {attempt} attempts conflicted within {self.timeout:g} s"
                            ) from None
                        if attempt > 2:
                            await asyncio.sleep(random.uniform(0, 0.0005 * min(attempt, 20)))
                    except ResponseError as exc:
                        if not isinstance(exc, NoScriptError) and "NOSCRIPT" not in str(exc):
                            raise
                        # The server lost its script cache (restart, SCRIPT FLUSH).
                        await client.script_load(source)
                    finally:
                        await pipe.reset()  # type: ignore[no-untyped-call]
        except (TimeoutError, RedisError, OSError) as exc:
            raise _translate(exc, "mutate") from exc

    async def write_batch(self, writes: Sequence[BatchWrite], now: float, release: tuple[str, str] | None) -> bool:
        real, grace = self._real()
        lock = f"{self.prefix}l:{release[0]}" if release is not None else f"{self.prefix}l:"
        keys: list[Any] = [self._nz, lock]
        args: list[Any] = [_f(now), real, grace, "" if release is None else release[1]]
        for w in writes:
            kz, xz, dz, _ = self._ns_keys(w.ns)
            keys += [self._ekey(w.ns, w.key), kz, xz, dz]
            keep = isinstance(w.expires_at, Keep)
            exp = "" if isinstance(w.expires_at, Keep) or w.expires_at is None else _f(w.expires_at)
            args += [w.ns, w.key, self._id(w.ns, w.key), w.value, exp, "1" if keep else "0", w.version, w.expected]
        return bool(await self._script("write_batch", keys, args))

    async def put_many(
        self, ns: str, items: Sequence[tuple[str, bytes]], expires_at: float | None, now: float, max_keys: int | None
    ) -> list[int]:
        if not items:
            return []
        kz, xz, dz, nz = self._ns_keys(ns)
        real, grace = self._real()
        keys: list[Any] = [kz, xz, dz, nz]
        args: list[Any] = [ns, "" if expires_at is None else _f(expires_at), _f(now),
                           "" if max_keys is None else max_keys, real, grace]  # fmt: skip
        for key, value in items:
            keys.append(self._ekey(ns, key))
            args.extend((key, self._id(ns, key), value))
        return [int(v) for v in await self._script("put_many", keys, args)]

    async def delete(self, ns: str, keys: Sequence[str], now: float, *, prefix: str | None = None) -> int:
        if prefix is not None:
            return await self.delete_prefix(ns, prefix, now)
        keys = list(dict.fromkeys(keys))
        if not keys:
            return 0
        live = 0
        for i in range(0, len(keys), _BATCH):
            args = [ns, _f(now), self._ekey(ns, ""), self._id(ns, ""), *keys[i : i + _BATCH]]
            live += int(await self._script("delete", self._ns_keys(ns), args))
        return live

    async def delete_prefix(self, ns: str, prefix: str, now: float) -> int:
        low, high = _lex_range(prefix)
        args = [ns, _f(now), self._ekey(ns, ""), self._id(ns, ""), low, high]
        return int(await self._script("delete_prefix", self._ns_keys(ns), args))

    def _expiry_args(
        self, ns: str, key: str, expires_at: float | Keep | None, current: Row, now: float
    ) -> tuple[list[str], list[Any]]:
        _, xz, dz, _ = self._ns_keys(ns)
        real, grace = self._real()
        if isinstance(expires_at, Keep):
            expires_at = current.expires_at
        exp = "" if expires_at is None else _f(expires_at)
        return [self._ekey(ns, key), xz, dz], [key, self._id(ns, key), exp, _f(now), real, grace]

    async def set_expiry(self, ns: str, key: str, expires_at: float | None, now: float) -> bool:
        _, xz, dz, _ = self._ns_keys(ns)
        real, grace = self._real()
        exp = "" if expires_at is None else _f(expires_at)
        args = [key, self._id(ns, key), exp, _f(now), real, grace]
        return bool(await self._script("set_expiry", [self._ekey(ns, key), xz, dz], args))

    async def restore(self, ns: str, rows: Sequence[Row]) -> None:
        kz, xz, dz, nz = self._ns_keys(ns)
        real, grace = time.time(), NATIVE_GRACE

        async def job(r: aioredis.Redis) -> None:
            pipe = r.pipeline(transaction=True)
            for row in rows:
                ek = self._ekey(ns, row.key)
                ident = self._id(ns, row.key)
                pipe.delete(ek)
                fields: list[Any] = ["v", row.value, "ver", row.version, "m", _f(row.modified_at)]
                if row.expires_at is None:
                    pipe.zrem(xz, row.key)
                    pipe.zrem(dz, ident)
                else:
                    fields += ["x", _f(row.expires_at)]
                    pipe.zadd(xz, {row.key: row.expires_at})
                    pipe.zadd(dz, {ident: row.expires_at})
                pipe.hset(ek, items=fields)
                if row.expires_at is not None:
                    at = max(row.expires_at, row.expires_at - row.modified_at + real) + grace
                    pipe.pexpireat(ek, math.ceil(at * 1000))
                pipe.zadd(kz, {row.key: 0})
            pipe.sadd(nz, ns)
            await pipe.execute()

        if rows:
            await self._call("restore", job)

    async def replace_namespaces(self, moves: Mapping[str, str | None]) -> None:
        pairs = check_moves(moves)
        args: list[Any] = [self.prefix, PRIVATE_NS_PREFIX]
        for target, source in pairs:
            args.extend((target, "" if source is None else source))
        await self._script("replace_namespaces", [self._nz], args)

    async def purge_expired(
        self, now: float, limit: int, ns: str | None = None, keep: Sequence[tuple[str, str]] = ()
    ) -> list[Purged]:
        if ns is None:
            kept: list[str] = [s for pair in keep for s in pair]
            args = [self.prefix, _f(now), limit, *kept]
            found = await self._script("purge_all", [f"{self.prefix}d", self._nz], args)
            out = []
            for i in range(0, len(found), 2):
                ident = found[i].decode()
                size, rest = ident.split(":", 1)
                n = len(rest.encode()[: int(size)].decode())
                out.append(Purged(rest[:n], rest[n:], float(found[i + 1])))
        else:
            prefixes = [p for kns, p in keep if kns == ns]
            args = [ns, self._ekey(ns, ""), self._id(ns, ""), _f(now), limit, *prefixes]
            found = await self._script("purge_ns", self._ns_keys(ns), args)
            out = [Purged(ns, found[i].decode(), float(found[i + 1])) for i in range(0, len(found), 2)]
        out.sort(key=lambda p: p.expires_at)
        return out

    # -- locks -------------------------------------------------------------
    async def acquire_lock(self, name: str, owner: str, ttl: float, now: float) -> LockLease | None:
        real, grace = self._real()
        exp = now + ttl
        keys = [f"{self.prefix}l:{name}", self._fence]
        token = await self._script("acquire", keys, [owner, _f(now), _f(exp), real, grace])
        return None if token is None else LockLease(name, owner, int(token), exp)

    async def release_lock(self, name: str, owner: str) -> bool:
        return bool(await self._script("release", [f"{self.prefix}l:{name}"], [owner]))

    # -- lifecycle ---------------------------------------------------------
    async def ping(self) -> None:
        await self._call("ping", lambda r: r.ping(), read=True)

    async def drop_everything(self) -> None:
        """Delete every Redis key under this store's prefix (tests use it to clean up)."""
        pattern = glob_escape(self.prefix) + "*"

        async def job(r: aioredis.Redis) -> None:
            batch: list[bytes] = []
            async for key in r.scan_iter(match=pattern, count=1000):
                batch.append(key)
                if len(batch) >= _BATCH:
                    await r.unlink(*batch)
                    batch = []
            if batch:
                await r.unlink(*batch)

        await self._call("drop_everything", job)

    async def close(self) -> None:
        client, self._r = self._r, None
        if client is not None:
            await client.aclose()

    def describe(self) -> dict[str, Any]:
        parts = urlsplit(self._url)
        return {
            "backend": self.name,
            "host": parts.hostname or "localhost",
            "port": parts.port or 6379,
            "db": parts.path.lstrip("/") or "0",
            "prefix": self.prefix,
        }


def _redis_url_parameter(name: str) -> bool:
    """redis-py URL parameters left to redis-py: the database and TLS settings.

    The others (``socket_timeout``, ``max_connections``, ``retry_on_timeout``…)
    would override, in redis-py, the settings the backend's guarantees rest
    on (every call answers within ``timeout``, writes are never resent), so
    they are refused; ``timeout`` covers them.
    """
    return name == "db" or name.startswith("ssl_")


def _check_database(url: str) -> None:
    """Refuse a database that is not a number (redis-py would quietly use database 0)."""
    parts = urlsplit(url)
    path = parts.path.strip("/")
    if path and not (path.isascii() and path.isdigit()):
        raise InvalidInputError(f"bad Redis URL: the database must be a number (redis://host:6379/0), got {path!r}")
    try:
        port = parts.port
    except ValueError:
        raise InvalidInputError(f"bad Redis URL: the port must be a number, got {parts.netloc!r}") from None
    if port == 0:
        raise InvalidInputError("bad Redis URL: port 0")


async def open_backend(url: str, **options: Any) -> RedisBackend:
    """Open ``redis://[user:password@]host[:port][/db]`` (or ``rediss://`` for TLS).

    Args:
        url: a redis-py connection URL. Its query may set ``prefix`` and
            ``timeout`` (``redis://host/0?prefix=botmemory-a:``) next to
            redis-py's ``db`` and ``ssl_*`` parameters; any other name is
            refused.
        **options: ``prefix`` prepended to every Redis key (default
            ``"botmemory:"``; several stores can share a database under
            different prefixes), ``timeout`` (seconds to connect and to wait
            for each answer, default 5), ``max_connections`` (default 64).
            An option given here wins over the same one in the URL.

    Raises:
        InvalidInputError: a malformed URL or option.
        StoreUnavailableError: the server cannot be reached.
    """
    url = take_query_options(
        url,
        {"prefix": text, "timeout": seconds},
        options,
        backend="Redis",
        driver_parameter=_redis_url_parameter,
        driver_note=" and redis-py's db and ssl_* parameters",
    )
    prefix = options.pop("prefix", "botmemory:")
    options.pop("create", None)  # opening creates nothing on Redis: a missing store reads as empty
    timeout = options.pop("timeout", 5.0)
    max_connections = options.pop("max_connections", 64)
    if options:
        raise InvalidInputError(f"unknown Redis options: {sorted(options)}")
    if not isinstance(prefix, str) or not prefix:
        raise InvalidInputError(f"prefix must be a non-empty string, got {prefix!r}")
    timeout = positive_seconds("timeout", timeout)
    if type(max_connections) is not int or max_connections < 1:
        raise InvalidInputError(f"max_connections must be an int >= 1, got {max_connections!r}")
    _check_database(url)
    try:
        # A blocking pool waits (up to timeout) for a free connection instead
        # of failing at once when every connection is busy.
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=float(timeout),
            socket_timeout=float(timeout),
            socket_connect_timeout=float(timeout),
            # Never resend a command behind the caller's back: a write whose
            # answer was lost may have been applied. The pool replaces broken
            # connections, and health checks probe idle ones.
            retry=Retry(NoBackoff(), 0),
            health_check_interval=10,
            # CLIENT LIST shows which store a connection serves
            client_name=re.sub(r"[^!-~]", "_", f"botmemory:{prefix}")[:128],
        )
        client = aioredis.Redis.from_pool(pool)
    except (ValueError, RedisError) as exc:
        raise InvalidInputError(f"bad Redis URL: {exc}") from exc
    backend = RedisBackend(client, prefix, float(timeout), url)
    try:
        await backend.ping()
    except StoreError as exc:
        await backend.close()
        raise StoreUnavailableError(f"cannot reach Redis: {exc}") from exc
    return backend
