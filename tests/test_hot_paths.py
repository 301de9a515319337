"""Fast paths added for the benchmarks' hot loops keep the exact rules.

``validate_key`` takes printable-ASCII keys on a shortcut; ``KVS.get``
without a path skips a coroutine. Both must accept and refuse exactly what
the slow paths do.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import botmemory
from botmemory.errors import InvalidKeyError
from botmemory.keys import validate_key

ASCII = st.text(alphabet=st.characters(max_codepoint=127), max_size=12)


def _allowed(key: str, max_bytes: int | None) -> bool:
    """The key rules of the spec, for ASCII: non-empty, no C0/DEL, no whitespace at the ends, short enough."""
    return (
        bool(key)
        and not any(ord(c) < 0x20 or ord(c) == 0x7F for c in key)
        and not key[0].isspace()
        and not key[-1].isspace()
        and (max_bytes is None or len(key) <= max_bytes)
    )


@given(key=ASCII, max_bytes=st.sampled_from([None, 1, 4, 512]))
def test_validate_key_on_ascii_follows_the_rules(key: str, max_bytes: int | None) -> None:
    if _allowed(key, max_bytes):
        assert validate_key(key, max_bytes) is key
    else:
        with pytest.raises(InvalidKeyError):
            validate_key(key, max_bytes)


@pytest.mark.parametrize("key", ["a\x7f", "\x1fa", "a ", " a", "a\tb", "é ", "a\u2028b", "\ud800"])
def test_validate_key_refuses_what_the_shortcut_must_not_take(key: str) -> None:
    with pytest.raises(InvalidKeyError):
        validate_key(key, None)


class _Key(str):
    pass


def test_validate_key_keeps_str_subclasses_on_the_full_check() -> None:
    key = _Key("abc")
    assert validate_key(key, None) is key


async def test_get_without_a_path_returns_value_default_or_refuses(store: botmemory.Store) -> None:
    kvs = store.bot("b1").kvs
    await kvs.set("k", {"a": [1, 2]})
    assert await kvs.get("k") == {"a": [1, 2]}
    assert await kvs.get("k", "a[1]") == 2
    assert await kvs.get("missing", default="d") == "d"
    await kvs.set("null", None)
    assert await kvs.get("null", default="d") is None
    with pytest.raises(InvalidKeyError):
        await kvs.get(" k")
