"""The backend contract suite: one set of tests every backend must pass.

Each class holds ``async def test_*`` methods that take pytest fixtures; a
test module makes pytest collect them by subclassing::

    from botmemory.testing.contract import KVSContract

    class TestKVS(KVSContract):
        pass

The suite is split by what it checks, one module each:

- ``basics``: the KVS methods and the values they store (``KVSContract``,
  ``ValuesContract``);
- ``jsonpaths``: paths into stored values (``PathContract``);
- ``keys``: key validation, listing, literal prefixes (``KeysContract``);
- ``expiry``: ttl/expire/persist, expiry rules, expired data never returned
  (``ExpiryContract``, ``ExpiryRulesContract``, ``ExpiredContract``);
- ``versions``: versions and compare-and-set (``VersionContract``);
- ``limits``: size limits and quotas (``LimitsContract``);
- ``memory``: dialog memory scopes (``MemoryContract``);
- ``isolation``: bots apart, a closed store (``IsolationContract``);
- ``botpress``: the Botpress names (``BotpressContract``);
- ``concurrency``: many tasks on one store (``ConcurrencyContract``);
- ``rows``: counts, namespaces, expired rows, purges (``RowsContract``);
- capabilities, skipped for a backend that does not declare them:
  ``locks`` (``LocksContract``, the ``Locks`` capability) and ``bulk``
  (``BulkLoadContract``: ``restore`` everywhere, ``replace_namespaces``
  with ``BulkLoad`` only).

``BackendContract`` is ``RowsContract`` + ``BulkLoadContract`` +
``LocksContract``, the class earlier versions shipped.

Fixtures the classes use:

- ``store``: a fresh, empty :class:`botmemory.Store` opened with ``clock``;
- ``clock``: the :class:`botmemory.testing.FakeClock` that store uses;
- ``backend_name`` and ``tmp_path`` (the few tests that need a store of
  their own: other ``Limits``, or one they close): the backend's name for
  :func:`botmemory.testing.backends.open_test_store`.

Nothing here looks at which backend runs it: behaviour differences between
backends are bugs. Expiry is driven by the fake clock, never by sleeping.
"""

from __future__ import annotations

from ._support import all_keys, assert_same, dump_store
from .basics import KVSContract, ValuesContract
from .botpress import BotpressContract
from .bulk import BulkLoadContract
from .concurrency import ConcurrencyContract
from .expiry import ExpiredContract, ExpiryContract, ExpiryRulesContract
from .isolation import IsolationContract
from .jsonpaths import PathContract
from .keys import KeysContract
from .limits import LimitsContract
from .locks import LocksContract
from .memory import MemoryContract
from .rows import RowsContract
from .versions import VersionContract

__all__ = [
    "BackendContract",
    "BotpressContract",
    "BulkLoadContract",
    "ConcurrencyContract",
    "ContractSuite",
    "ExpiredContract",
    "ExpiryContract",
    "ExpiryRulesContract",
    "IsolationContract",
    "KVSContract",
    "KeysContract",
    "LimitsContract",
    "LocksContract",
    "MemoryContract",
    "PathContract",
    "RowsContract",
    "ValuesContract",
    "VersionContract",
    "all_keys",
    "assert_same",
    "dump_store",
]


class BackendContract(RowsContract, BulkLoadContract, LocksContract):
    """Rows beyond the KVS methods, and the ``BulkLoad`` and ``Locks`` capabilities."""


class ContractSuite(
    KVSContract,
    PathContract,
    KeysContract,
    ExpiryContract,
    ExpiryRulesContract,
    ExpiredContract,
    VersionContract,
    ValuesContract,
    LimitsContract,
    MemoryContract,
    IsolationContract,
    BotpressContract,
    BackendContract,
):
    """Every class above but ``ConcurrencyContract``, in one: ``class TestMine(ContractSuite): pass``.

    (Their test names are distinct, so none hides another.)
    """
