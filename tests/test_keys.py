"""Ids, keys, prefixes and the memory key layout (api.md, bad-inputs.md K1-K14)."""

from __future__ import annotations

import unicodedata
import urllib.parse

import pytest
from hypothesis import given
from hypothesis import strategies as st

from botmemory.backends.keyrange import prefix_upper_bound
from botmemory.errors import InvalidKeyError
from botmemory.keys import (
    GLOBAL_NS,
    decode_component,
    encode_component,
    validate_bot_id,
    validate_key,
    validate_prefix,
)
from botmemory.memory import (
    CONVERSATION_PREFIX,
    GLOBAL_PREFIX,
    USERS_PREFIX,
    conversation_prefix,
    conversation_variable_key,
    global_variable_key,
    parse_memory_key,
    user_prefix,
    user_variable_key,
)

# ---------------------------------------------------------------- bot ids

BOT_IDS_ACCEPTED = ["a", "A", "0", "welcome-bot", "bot_1.v2", "a" * 64, "0-", "x.", "a..b"]
BOT_IDS_REFUSED: list[object] = [
    "",
    GLOBAL_NS,
    "_bot",
    "-bot",
    ".bot",
    "../x",
    "a/b",
    "a b",
    "a" * 65,
    "bot\n",
    "bot\x00",
    "café",
    "ｂot",
    "bot:1",
    "bot%2F",
    None,
    1,
    b"bot",
]


@pytest.mark.parametrize("bot_id", BOT_IDS_ACCEPTED)
def test_bot_id_accepted(bot_id: str) -> None:
    assert validate_bot_id(bot_id) == bot_id


@pytest.mark.parametrize("bot_id", BOT_IDS_REFUSED, ids=repr)
def test_bot_id_refused(bot_id: object) -> None:
    with pytest.raises(InvalidKeyError):
        validate_bot_id(bot_id)


# ---------------------------------------------------------------- keys

CAFE_NFC = unicodedata.normalize("NFC", "café")
CAFE_NFD = unicodedata.normalize("NFD", "café")

KEYS_ACCEPTED = [
    "a",
    "orders/42",
    "a b",  # inner whitespace is fine
    "a\u00a0b",
    CAFE_NFC,  # K8: kept exact, no normalisation
    CAFE_NFD,
    "User",  # K9
    "user",
    "ß",
    "SS",
    "\u212a",  # KELVIN SIGN
    "а",  # Cyrillic
    "a\u200bb",  # K10: kept exact
    "a\u202eb",
    "alice/../bob",  # K11
    "a:b",
    "%",  # K12
    "_",
    "*",
    "?",
    "[a]",
    "\\",
    "'; DROP TABLE kv;--",  # K13
    "x') OR '1'='1",
    '" OR 1=1',
    "__proto__",
    ".",
    "..",
    "\U0010ffff",
    "\U0001f600",
    "\ud7ff\ue000",
    "a" * 512,  # K3: max exactly
    "é" * 256,
    "\U0001f600" * 128,
]


@pytest.mark.parametrize("key", KEYS_ACCEPTED, ids=ascii)
def test_key_accepted_exactly_as_given(key: str) -> None:
    assert validate_key(key, 512) is key
    assert validate_key(key, None) is key


def test_nfc_and_nfd_are_two_keys() -> None:
    assert CAFE_NFC != CAFE_NFD
    assert validate_key(CAFE_NFC, 512) != validate_key(CAFE_NFD, 512)


KEYS_REFUSED: list[object] = [
    "",  # K1
    " a",  # K2
    "a ",
    "\t",
    " ",
    "\u3000a",
    "a\u00a0",
    "\u2003a",
    "a\x00b",  # K4
    "\n",  # K5
    "\r",
    "a\nb",
    "a\rb",
    "a\x1bb",
    "a\x1fb",
    "a\x7fb",
    "a\x80b",
    "a\x85b",
    "a\x9fb",
    "a\u2028b",
    "a\u2029b",
    "\ud800",  # K6
    "a\udfffb",
    "\udc80",
    "a" * 513,  # K3: max + 1
    "é" * 257,
    "a" * 1_048_576,  # 1 MiB
    None,
    1,
    b"key",
    ["key"],
]


@pytest.mark.parametrize("key", KEYS_REFUSED, ids=lambda k: ascii(k)[:40])
def test_key_refused(key: object) -> None:
    with pytest.raises(InvalidKeyError):
        validate_key(key, 512)


@pytest.mark.parametrize(
    "key",
    [k for k in KEYS_REFUSED if not (isinstance(k, str) and k and k.strip() == k and k.isprintable())],
    ids=lambda k: ascii(k)[:40],
)
def test_key_refused_even_without_length_limit(key: object) -> None:
    with pytest.raises(InvalidKeyError):
        validate_key(key, None)


def test_long_keys_accepted_without_length_limit() -> None:
    assert validate_key("a" * 100_000, None)


@pytest.mark.parametrize(
    ("key", "limit", "ok"),
    [
        ("a" * 256, 256, True),
        ("a" * 257, 256, False),
        ("é" * 128, 256, True),
        ("é" * 129, 256, False),
        ("€" * 85 + "a", 256, True),  # 256 bytes, 86 characters
        ("€" * 86, 256, False),
        ("\U0001f600" * 64, 256, True),
        ("\U0001f600" * 64 + "a", 256, False),
        ("a" * 64, 256, True),  # the fast path: 64 * 4 <= 256
    ],
)
def test_length_is_counted_in_utf8_bytes(key: str, limit: int, ok: bool) -> None:
    if ok:
        assert validate_key(key, limit) == key
    else:
        with pytest.raises(InvalidKeyError, match=rf"is {len(key.encode())} bytes, more than the {limit}"):
            validate_key(key, limit)


def test_messages_use_the_noun_and_never_echo_control_characters() -> None:
    with pytest.raises(InvalidKeyError) as info:
        validate_key("", 256, "user id")
    assert str(info.value) == "invalid user id: must not be empty"
    with pytest.raises(InvalidKeyError) as info:
        validate_key("a" * 513, 512)
    assert str(info.value) == "key is 513 bytes, more than the 512 allowed"
    with pytest.raises(InvalidKeyError, match="variable name") as info:
        validate_key("a\nb\x1b[31m" + "x" * 200, 256, "variable name")
    message = str(info.value)
    assert "\n" not in message
    assert "\x1b" not in message
    assert len(message) < 250
    assert "U+000A" in message
    with pytest.raises(InvalidKeyError) as info:
        validate_key("a\u2028b", 256)
    assert "\u2028" not in str(info.value)
    with pytest.raises(InvalidKeyError) as info:
        validate_key("\ud800", 256)
    str(info.value).encode("utf-8")  # the message itself is encodable


def test_invalid_key_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        validate_key("", 512)


# ---------------------------------------------------------------- prefixes

PREFIXES_ACCEPTED = ["", "a", "a ", "my prefix ", "orders/", "%", "_", "*", "?", "[a]", "\\", "a" * 1000]
PREFIXES_REFUSED: list[object] = [
    " a",
    "\t",
    " ",
    "a\x00",
    "a\n",
    "a\x85",
    "a\u2028",
    "\ud800",
    "a" * 65_537,
    None,
    1,
    b"a",
]


@pytest.mark.parametrize("prefix", PREFIXES_ACCEPTED, ids=repr)
def test_prefix_accepted_and_never_stripped(prefix: str) -> None:
    assert validate_prefix(prefix) is prefix


@pytest.mark.parametrize("prefix", PREFIXES_REFUSED, ids=lambda p: ascii(p)[:40])
def test_prefix_refused(prefix: object) -> None:
    with pytest.raises(InvalidKeyError):
        validate_prefix(prefix)


def test_prefix_limit_is_64_kib_of_utf8() -> None:
    assert validate_prefix("a" * 65_536)
    with pytest.raises(InvalidKeyError):
        validate_prefix("é" * 32_769)


# ---------------------------------------------------------------- percent-encoding

ENCODED = [
    ("abcXYZ019", "abcXYZ019"),
    ("-._~", "-._~"),
    ("u/x", "u%2Fx"),
    ("u%2Fx", "u%252Fx"),
    ("%", "%25"),
    ("..", ".."),
    (".", "."),
    ("a b", "a%20b"),
    ("a+b", "a%2Bb"),
    ("a:b", "a%3Ab"),
    ("é", "%C3%A9"),
    ("\U0001f600", "%F0%9F%98%80"),
    ("__proto__", "__proto__"),
    ("'; DROP TABLE kv;--", "%27%3B%20DROP%20TABLE%20kv%3B--"),
    ("", ""),
]


@pytest.mark.parametrize(("raw", "encoded"), ENCODED, ids=repr)
def test_encode_component(raw: str, encoded: str) -> None:
    assert encode_component(raw) == encoded
    assert decode_component(encoded) == raw


@pytest.mark.parametrize(
    "bad",
    ["%", "%2", "%2f", "%zz", "%41", "%7E", "a/b", "a b", "%FF", "%C3", "%ED%A0%80", "é", "a%2"],
)
def test_decode_component_refuses_what_encode_never_produces(bad: str) -> None:
    with pytest.raises(InvalidKeyError):
        decode_component(bad)


NO_SURROGATES = st.text(st.characters(exclude_categories=["Cs"]))


@given(NO_SURROGATES)
def test_encode_decode_round_trip(text: str) -> None:
    encoded = encode_component(text)
    assert "/" not in encoded
    assert encoded.isascii()
    assert decode_component(encoded) == text


@given(NO_SURROGATES, NO_SURROGATES)
def test_encoding_is_injective(a: str, b: str) -> None:
    if a != b:
        assert encode_component(a) != encode_component(b)


# ---------------------------------------------------------------- memory layout


def test_layout() -> None:
    assert user_variable_key("u-17", "firstname") == "storage/users/u-17/firstname"
    assert user_prefix("u-17") == "storage/users/u-17/"
    assert conversation_variable_key("c/1", "a b") == "storage/conversation/c%2F1/a%20b"
    assert conversation_prefix("c/1") == "storage/conversation/c%2F1/"
    assert global_variable_key("x/y") == "storage/global/x%2Fy"
    assert USERS_PREFIX == "storage/users/"
    assert CONVERSATION_PREFIX == "storage/conversation/"
    assert GLOBAL_PREFIX == "storage/global/"


def test_k11_no_collision_and_no_scope_escape() -> None:
    # "a/b" + "c" and "a" + "b/c" would both be "a/b/c" without encoding.
    assert user_variable_key("a/b", "c") != user_variable_key("a", "b/c")
    for user_id in ["alice/../bob", "..", ".", "%", "u%2Fx", "u/x", "__proto__", "a:b"]:
        key = user_variable_key(user_id, "name")
        assert key.startswith(user_prefix(user_id))
        assert key.count("/") == 3
        assert not key.startswith(user_prefix("bob"))
        assert parse_memory_key(key) == ("user", user_id, "name")
    assert user_prefix("u/x") != user_prefix("u%2Fx")
    # one user's prefix is never a prefix of another user's keys
    assert not user_variable_key("ab", "x").startswith(user_prefix("a"))


@pytest.mark.parametrize(
    ("scope", "owner", "name"),
    [
        ("user", "u-17", "firstname"),
        ("user", "u/x", "a/b"),
        ("user", "..", "%"),
        ("user", "café", "名前"),
        ("conversation", "c-1", "step"),
        ("conversation", "c/1/../2", "x y"),
        ("global", None, "counter"),
        ("global", None, "a/b"),
    ],
)
def test_parse_memory_key_inverts_the_layout(scope: str, owner: str | None, name: str) -> None:
    if scope == "user":
        assert owner is not None
        key = user_variable_key(owner, name)
    elif scope == "conversation":
        assert owner is not None
        key = conversation_variable_key(owner, name)
    else:
        key = global_variable_key(name)
    assert parse_memory_key(key) == (scope, owner, name)


@pytest.mark.parametrize(
    "key",
    [
        "",
        "orders/42",
        "storage/users/",
        "storage/users/u",
        "storage/users/u/",
        "storage/users//x",
        "storage/users/u/x/y",
        "storage/users/u%2/x",
        "storage/users/u%2f/x",
        "storage/users/%41/x",
        "storage/users/%FF/x",
        "storage/users/%00/x",  # decodes to an id the API refuses
        "storage/users/%20u/x",
        "storage/users/u/x%0A",
        "storage/users/a b/x",
        "storage/conversation/c",
        "storage/conversation/c/x/y",
        "storage/global/",
        "storage/global/a/b",
        "storage/global/%2",
        "storage/Users/u/x",
        "storage/user/u/x",
        "xstorage/users/u/x",
    ],
)
def test_parse_memory_key_refuses_other_keys(key: str) -> None:
    assert parse_memory_key(key) is None


@given(NO_SURROGATES.filter(lambda s: s != ""), NO_SURROGATES.filter(lambda s: s != ""))
def test_parse_memory_key_round_trip(owner: str, name: str) -> None:
    try:
        validate_key(owner, None)
        validate_key(name, None)
    except InvalidKeyError:
        return
    assert parse_memory_key(user_variable_key(owner, name)) == ("user", owner, name)
    assert parse_memory_key(conversation_variable_key(owner, name)) == ("conversation", owner, name)
    assert parse_memory_key(global_variable_key(name)) == ("global", None, name)


# ---------------------------------------------------------------- prefix upper bound


@pytest.mark.parametrize(
    ("prefix", "bound"),
    [
        ("a", "b"),
        ("orders/", "orders0"),
        ("ab", "ac"),
        ("a\x7f", "a\x80"),
        ("a\ud7ff", "a\ue000"),  # skips the surrogate range
        ("a\U0010ffff", "b"),
        ("a\U0010ffff\U0010ffff", "b"),
        ("\U0010ffff", None),
        ("\U0010ffff\U0010ffff", None),
        ("", None),
        ("%", "&"),
        ("_", "`"),
        ("z", "{"),
    ],
    ids=ascii,
)
def test_prefix_upper_bound(prefix: str, bound: str | None) -> None:
    assert prefix_upper_bound(prefix) == bound


SCAN_CHARS = st.characters(exclude_categories=["Cs"])
# Small alphabets with the edge code points make near-misses likely.
EDGE_CHARS = st.sampled_from(["a", "b", "\x00", "\ud7ff", "\ue000", "\U0010fffe", "\U0010ffff"])
SCAN_TEXT = st.text(st.one_of(SCAN_CHARS, EDGE_CHARS), max_size=6)


@given(SCAN_TEXT, SCAN_TEXT, SCAN_TEXT)
def test_prefix_upper_bound_is_the_least_upper_bound(prefix: str, suffix: str, other: str) -> None:
    bound = prefix_upper_bound(prefix)
    if bound is None:
        assert prefix == "" or set(prefix) == {"\U0010ffff"}
        return
    # greater than every string that starts with the prefix
    assert prefix + suffix < bound
    assert prefix + "\U0010ffff" * 8 < bound
    # and no greater than any string greater than all of them
    if other > prefix and not other.startswith(prefix):
        assert other >= bound
    # a range scan [prefix, bound) selects exactly the strings with the prefix
    assert (prefix <= other < bound) == other.startswith(prefix)


class BrokenRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


@pytest.mark.parametrize("value", [10**5000, BrokenRepr()], ids=type)
def test_unprintable_inputs_still_raise_the_typed_error(value: object) -> None:
    with pytest.raises(InvalidKeyError):
        validate_bot_id(value)
    with pytest.raises(InvalidKeyError):
        validate_key(value, 512)
    with pytest.raises(InvalidKeyError):
        validate_prefix(value)


@given(NO_SURROGATES)
def test_encode_component_matches_urllib_quote(text: str) -> None:
    assert encode_component(text) == urllib.parse.quote(text, safe="")


def test_encode_component_refuses_lone_surrogates_with_the_typed_error() -> None:
    with pytest.raises(InvalidKeyError):
        encode_component("a\ud800")
