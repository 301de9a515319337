"""Dialog memory: scopes and handles."""

from __future__ import annotations

import pytest

from ...errors import (
    InvalidKeyError,
)
from ...store import Store
from ..clock import FakeClock
from ._support import all_keys, dump_store

# -- dialog memory ---------------------------------------------------------------------


class MemoryContract:
    """The three scopes, scope handles and the percent-encoded key layout."""

    async def test_user_variables(self, store: Store) -> None:
        memory = store.bot("b1").memory
        assert await memory.get_user_variable("u-17", "firstname") is None
        assert await memory.get_user_variable("u-17", "firstname", "anon") == "anon"
        assert await memory.set_user_variable("u-17", "firstname", "Ada") == 1
        assert await memory.set_user_variable("u-17", "firstname", "Grace") == 2
        assert await memory.get_user_variable("u-17", "firstname") == "Grace"
        assert await memory.get_user_variable("u-18", "firstname") is None
        assert await memory.delete_user_variable("u-17", "firstname") is True
        assert await memory.delete_user_variable("u-17", "firstname") is False

    async def test_conversation_variables(self, store: Store) -> None:
        memory = store.bot("b1").memory
        assert await memory.set_conversation_variable("c1", "step", 1) == 1
        assert await memory.get_conversation_variable("c1", "step") == 1
        assert await memory.get_conversation_variable("c2", "step", "d") == "d"
        assert await memory.delete_conversation_variable("c1", "step") is True
        assert await memory.delete_conversation_variable("c1", "step") is False

    async def test_global_variables(self, store: Store) -> None:
        memory = store.bot("b1").memory
        assert await memory.set_global_variable("motd", "hi") == 1
        assert await memory.get_global_variable("motd") == "hi"
        assert await memory.get_global_variable("other", 0) == 0
        assert await memory.delete_global_variable("motd") is True
        assert await memory.delete_global_variable("motd") is False

    async def test_global_variables_are_per_bot(self, store: Store) -> None:
        m1, m2 = store.bot("b1").memory, store.bot("b2").memory
        await m1.set_global_variable("motd", "one")
        assert await m2.get_global_variable("motd") is None
        await m2.set_global_variable("motd", "two")
        assert await m1.get_global_variable("motd") == "one"
        assert await m1.global_scope().clear() == 1
        assert await m2.get_global_variable("motd") == "two"
        assert await store.global_kvs.get("storage/global/motd") is None

    async def test_variables_with_expiry(self, store: Store, clock: FakeClock) -> None:
        memory = store.bot("b1").memory
        await memory.set_user_variable("u", "a", 1, expiry="1h")
        await memory.set_conversation_variable("c", "a", 1, "10m")
        await memory.set_global_variable("a", 1, expiry=30)
        clock.advance(30)
        assert await memory.get_global_variable("a") is None
        assert await memory.get_conversation_variable("c", "a") == 1
        clock.advance(570)
        assert await memory.get_conversation_variable("c", "a") is None
        assert await memory.get_user_variable("u", "a") == 1
        clock.advance(3000)
        assert await memory.get_user_variable("u", "a") is None

    async def test_key_layout(self, store: Store) -> None:
        memory = store.bot("b1").memory
        await memory.set_user_variable("u/x", "first name", "Ada")
        await memory.set_conversation_variable("c:1", "step", 1)
        await memory.set_global_variable("é~-._", 2)
        assert await all_keys(store.bot("b1").kvs) == [
            "storage/conversation/c%3A1/step",
            "storage/global/%C3%A9~-._",
            "storage/users/u%2Fx/first%20name",
        ]
        assert await store.bot("b1").kvs.get("storage/users/u%2Fx/first%20name") == "Ada"

    async def test_tricky_user_ids_are_distinct_and_isolated(self, store: Store) -> None:
        memory = store.bot("b1").memory
        ids = [
            "u/x",
            "u%2Fx",
            "u%252Fx",
            "..",
            "%",
            ".",
            "u",
            "x",
            "__proto__",
            "alice/../bob",
            "bob",
            "a:b",
            "storage",
            "users",
        ]
        for uid in ids:
            await memory.set_user_variable(uid, "v", uid)
            await memory.set_user_variable(uid, "n/..", uid + "!")
        for uid in ids:
            assert await memory.get_user_variable(uid, "v") == uid
            assert await memory.user(uid).items() == {"v": uid, "n/..": uid + "!"}
        assert len(await all_keys(store.bot("b1").kvs, "storage/users/")) == 2 * len(ids)
        assert await memory.user("%").clear() == 2
        for uid in ids:
            expected = None if uid == "%" else uid
            assert await memory.get_user_variable(uid, "v") == expected

    async def test_ids_and_names_do_not_collide(self, store: Store) -> None:
        memory = store.bot("b1").memory
        await memory.set_user_variable("a/b", "c", 1)
        await memory.set_user_variable("a", "b/c", 2)
        await memory.set_user_variable("x", "n", "user")
        await memory.set_conversation_variable("x", "n", "conversation")
        await memory.set_global_variable("n", "global")
        assert await memory.get_user_variable("a/b", "c") == 1
        assert await memory.get_user_variable("a", "b/c") == 2
        assert await memory.user("a").items() == {"b/c": 2}
        assert await memory.get_user_variable("x", "n") == "user"
        assert await memory.get_conversation_variable("x", "n") == "conversation"
        assert await memory.get_global_variable("n") == "global"
        assert await memory.end_conversation("x") == 1
        assert await memory.get_user_variable("x", "n") == "user"
        assert await memory.get_global_variable("n") == "global"

    async def test_scope_handles(self, store: Store, clock: FakeClock) -> None:
        memory = store.bot("b1").memory
        for scope in (memory.user("u1"), memory.conversation("c1"), memory.global_scope()):
            assert await scope.items() == {}
            assert await scope.set("a", 1) == 1
            assert await scope.set("b", {"x": [1]}) == 1
            assert await scope.set("gone", 0, expiry="1s") == 1
            assert await scope.get("a") == 1
            assert await scope.get("missing", "d") == "d"
            clock.advance(1)
            assert await scope.items() == {"a": 1, "b": {"x": [1]}}
            assert await scope.delete("a") is True
            assert await scope.delete("a") is False
            assert await scope.clear() == 1
            assert await scope.items() == {}
            assert await scope.clear() == 0
        assert await all_keys(store.bot("b1").kvs) == []

    async def test_scope_handles_see_the_named_methods(self, store: Store) -> None:
        memory = store.bot("b1").memory
        await memory.set_user_variable("u", "a", 1)
        await memory.conversation("c").set("a", 2)
        await memory.global_scope().set("a", 3)
        assert await memory.user("u").get("a") == 1
        assert await memory.get_conversation_variable("c", "a") == 2
        assert await memory.get_global_variable("a") == 3

    async def test_end_conversation(self, store: Store) -> None:
        memory = store.bot("b1").memory
        for name in ("a", "b", "c"):
            await memory.set_conversation_variable("c1", name, name)
        await memory.set_conversation_variable("c10", "a", "other")
        await memory.set_user_variable("c1", "a", "user")
        assert await memory.end_conversation("c1") == 3
        assert await memory.end_conversation("c1") == 0
        assert await memory.get_conversation_variable("c1", "a") is None
        assert await memory.get_conversation_variable("c10", "a") == "other"
        assert await memory.get_user_variable("c1", "a") == "user"

    async def test_items_decode_names(self, store: Store) -> None:
        memory = store.bot("b1").memory
        names = ["a b", "é", "x/y", "%41", "~", "50%"]
        for i, name in enumerate(names):
            await memory.set_user_variable("u", name, i)
        assert await memory.user("u").items() == {name: i for i, name in enumerate(names)}

    async def test_items_skip_keys_memory_could_not_have_written(self, store: Store) -> None:
        # Botpress code writes "storage/users/<id>/<name>" through the KVS
        # without percent-encoding; such keys are not variables and must not
        # break the listing of the ones that are.
        kvs = store.bot("b1").kvs
        memory = store.bot("b1").memory
        await memory.set_user_variable("u", "first name", "Ada")
        for raw in ("first name", "%41", "bad%", "%zz", "%0A", "%C3", "a/b", "x%2f"):
            await kvs.set("storage/users/u/" + raw, "raw")
            await kvs.set("storage/global/" + raw, "raw")
        assert await memory.user("u").items() == {"first name": "Ada"}
        assert await memory.global_scope().items() == {}
        assert await memory.get_user_variable("u", "first name") == "Ada"
        assert await memory.user("u").clear() == 9  # clear() empties the whole prefix

    async def test_kvs_prefix_operations_see_memory(self, store: Store) -> None:
        memory = store.bot("b1").memory
        kvs = store.bot("b1").kvs
        await memory.set_user_variable("u1", "a", 1)
        await memory.set_user_variable("u2", "a", 1)
        await memory.set_conversation_variable("c", "a", 1)
        assert await kvs.delete_prefix("storage/users/") == 2
        assert await memory.get_user_variable("u1", "a") is None
        assert await memory.get_conversation_variable("c", "a") == 1

    async def test_bad_ids_and_names(self, store: Store) -> None:
        memory = store.bot("b1").memory
        for bad in ("", " u", "u ", "\t", "a\x00b", "a\nb", "\u2028", "\ud800", 5, None):
            for make in (
                lambda b: memory.set_user_variable(b, "n", 1),
                lambda b: memory.set_user_variable("u", b, 1),
                lambda b: memory.set_conversation_variable(b, "n", 1),
                lambda b: memory.set_global_variable(b, 1),
                lambda b: memory.get_user_variable(b, "n"),
                lambda b: memory.end_conversation(b),
            ):
                with pytest.raises(InvalidKeyError):
                    await make(bad)
        assert await dump_store(store) == {}
