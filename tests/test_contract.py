"""The backend contract suite (``botmemory.testing.contract``) on every backend of the ``store`` fixture."""

from __future__ import annotations

from botmemory.testing.contract import (
    BackendContract,
    BotpressContract,
    ExpiredContract,
    ExpiryContract,
    ExpiryRulesContract,
    IsolationContract,
    KeysContract,
    KVSContract,
    LimitsContract,
    MemoryContract,
    PathContract,
    ValuesContract,
    VersionContract,
)


class TestKVS(KVSContract):
    pass


class TestPaths(PathContract):
    pass


class TestKeys(KeysContract):
    pass


class TestExpiry(ExpiryContract):
    pass


class TestExpiryRules(ExpiryRulesContract):
    pass


class TestExpired(ExpiredContract):
    pass


class TestVersions(VersionContract):
    pass


class TestValues(ValuesContract):
    pass


class TestLimits(LimitsContract):
    pass


class TestMemory(MemoryContract):
    pass


class TestIsolation(IsolationContract):
    pass


class TestBotpress(BotpressContract):
    pass


class TestBackend(BackendContract):
    pass
