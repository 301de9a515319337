"""BotMemorySaver and BotMemoryStore: LangGraph's own conformance suite, real graphs, users and GDPR, every backend."""

from __future__ import annotations

import asyncio
import itertools
import operator
import threading
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES
from langgraph.graph import END, START, StateGraph
from langgraph.store.base import BaseStore, TTLConfig
from langgraph.types import Command, interrupt

import botmemory
from botmemory.integrations.langgraph import BotMemorySaver, BotMemoryStore
from botmemory.testing import FakeClock
from botmemory.testing.backends import POSTGRES_URL, REDIS_URL, open_test_store, unique_suffix
from conftest import require_backend

_bots = itertools.count()


def _bot() -> str:
    return f"lg{next(_bots)}"


def _where(backend: str, tmp_path: Path) -> tuple[str, dict[str, Any]]:
    """A URL and options that two Store objects can open in turn (a fresh schema or prefix)."""
    return {
        "memory": ("memory://", {}),
        "sqlite": (f"sqlite:///{tmp_path / 'test.db'}", {}),
        "postgres": (POSTGRES_URL, {"schema": unique_suffix()}),
        "redis": (REDIS_URL, {"prefix": f"botmemory-test:{unique_suffix()}:"}),
    }[backend]


# -- the checkpointer --------------------------------------------------------------------------
async def test_conformance_suite_passes_every_capability(store: botmemory.Store) -> None:
    @checkpointer_test(name="BotMemorySaver")
    async def saver() -> Any:
        yield BotMemorySaver(store, bot_id=_bot())  # a fresh bot (empty namespace) per capability

    report = await validate(saver)
    failures = {cap: result.failures for cap, result in report.results.items() if not result.passed}
    assert not failures
    assert report.passed_all_base()
    assert {cap for cap, result in report.results.items() if result.passed} == {c.value for c in ALL_CAPABILITIES}


class Chat(TypedDict):
    messages: Annotated[list[str], operator.add]


def _graph(saver: BotMemorySaver, memory: BaseStore | None = None) -> Any:
    """Asks a name (interrupt), greets, and remembers the name across the user's threads."""

    def ask(state: Chat, config: RunnableConfig, *, store: BaseStore) -> dict[str, Any]:
        user = config["configurable"]["user_id"]
        known = store.get(("memories", user), "name") if store is not None else None
        name = known.value["name"] if known is not None else interrupt("what is your name?")
        if store is not None:
            store.put(("memories", user), "name", {"name": name})
        return {"messages": [f"hello {name}"]}

    builder = StateGraph(Chat)
    builder.add_node("ask", ask)
    builder.add_edge(START, "ask")
    builder.add_edge("ask", END)
    return builder.compile(checkpointer=saver, store=memory)


@pytest.mark.parametrize("backend", ["sqlite", "postgres", "redis"])
def test_interrupt_and_resume_keep_the_thread_across_two_stores(backend: str, tmp_path: Path) -> None:
    require_backend(backend)
    url, options = _where(backend, tmp_path)
    config = {"configurable": {"thread_id": "t-1", "user_id": "u-1"}}
    first = botmemory.open_sync(url, **options)
    try:
        graph = _graph(BotMemorySaver(first, bot_id="agent"))
        result = graph.invoke({"messages": ["hi"]}, config)
        assert result["__interrupt__"][0].value == "what is your name?"
    finally:
        first.close()
    second = botmemory.open_sync(url, **options)
    try:
        graph = _graph(BotMemorySaver(second, bot_id="agent"))
        assert graph.get_state(config).next == ("ask",)  # the thread waits at the interrupt
        result = graph.invoke(Command(resume="Ada"), config)
        assert result["messages"] == ["hi", "hello Ada"]
        assert len(list(graph.get_state_history(config))) >= 3
    finally:
        if backend != "sqlite":
            second.run(second.async_store.backend.drop_everything())
        second.close()


@pytest.mark.parametrize("backend_name", ["sqlite", "postgres", "redis"])  # memory:// keeps nothing once closed
async def test_async_graph_resumes_on_a_second_store(backend_name: str, tmp_path: Path) -> None:
    require_backend(backend_name)
    url, options = _where(backend_name, tmp_path)
    config = {"configurable": {"thread_id": "t async", "user_id": "u-2"}}
    async with open_test_store(backend_name, tmp_path, **options) as first:
        graph = _graph(BotMemorySaver(first, bot_id="agent"))
        assert (await graph.ainvoke({"messages": ["hi"]}, config))["__interrupt__"]
        second = await botmemory.open(url, **options)
        try:
            graph = _graph(BotMemorySaver(second, bot_id="agent"))
            result = await graph.ainvoke(Command(resume="Bo"), config)
            assert result["messages"] == ["hi", "hello Bo"]
        finally:
            await second.close()


async def test_forget_erases_the_users_store_items_and_thread_checkpoints(
    store: botmemory.Store, clock: FakeClock
) -> None:
    saver = BotMemorySaver(store, bot_id="agent")
    memory = BotMemoryStore(store, bot_id="agent", user_namespaces=[("memories",)])
    graph = _graph(saver, memory)
    for user, name in (("ada", "Ada"), ("bob", "Bob")):
        first = {"configurable": {"thread_id": f"{user}-1", "user_id": user}}
        await graph.ainvoke({"messages": ["hi"]}, first)
        await graph.ainvoke(Command(resume=name), first)
        # a second thread: the store remembers the user, no interrupt
        second = {"configurable": {"thread_id": f"{user}-2", "user_id": user}}
        assert (await graph.ainvoke({"messages": ["hi again"]}, second))["messages"][-1] == f"hello {name}"
    await memory.aput(("shared", "faq"), "q1", {"a": 1})

    bot = store.bot("agent")
    assert await bot.users.conversations("ada") == ["ada-1", "ada-2"]
    export = await bot.users.export("ada")
    assert any("langgraph/store/memories/ada" in key for key in export["kvs"])
    assert set(export["conversation"]) == {"ada-1", "ada-2"}

    receipt = await bot.users.forget("ada")
    assert receipt["counts"]["conversations"] == 2 and receipt["counts"]["kvs"] == 1
    for thread in ("ada-1", "ada-2"):
        assert await saver.aget_tuple({"configurable": {"thread_id": thread}}) is None
        assert [t async for t in saver.alist({"configurable": {"thread_id": thread}})] == []
    assert await memory.aget(("memories", "ada"), "name") is None
    assert await memory.asearch(("memories",)) == [await memory.aget(("memories", "bob"), "name")]
    assert await saver.aget_tuple({"configurable": {"thread_id": "bob-2"}}) is not None
    assert (await memory.aget(("shared", "faq"), "q1")).value == {"a": 1}

    # ada comes back (writes that start after forget returned are kept): her thread is hers again
    clock.advance(1)
    again = {"configurable": {"thread_id": "ada-1", "user_id": "ada"}}
    assert (await graph.ainvoke({"messages": ["hi"]}, again))["__interrupt__"]
    assert (await bot.users.forget("ada"))["counts"]["conversations"] == 1
    assert await saver.aget_tuple(again) is None


def test_blocking_methods_work_from_many_threads(backend_name: str, tmp_path: Path) -> None:
    url, options = _where(backend_name, tmp_path)
    store = botmemory.open_sync(url, **options)
    saver = BotMemorySaver(store, bot_id="agent")
    graph = _graph(saver)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            config = {"configurable": {"thread_id": f"t{i}", "user_id": f"u{i}"}}
            graph.invoke({"messages": [f"hi {i}"]}, config)
            assert graph.invoke(Command(resume=f"n{i}"), config)["messages"] == [f"hi {i}", f"hello n{i}"]
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    try:
        threads = [threading.Thread(target=run, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        assert len(list(saver.list(None))) >= 6 * 3
    finally:
        if backend_name in ("postgres", "redis"):
            store.run(store.async_store.backend.drop_everything())
        store.close()


async def test_blocking_calls_on_an_async_store(store: botmemory.Store) -> None:
    saver = BotMemorySaver(store, bot_id="agent")
    config = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}
    with pytest.raises(botmemory.InvalidInputError, match="another thread"):
        saver.get_tuple(config)  # from the store's own event loop: would deadlock
    assert await asyncio.to_thread(saver.get_tuple, config) is None  # from another thread: fine


async def test_big_channel_values_are_split_over_several_keys(store: botmemory.Store) -> None:
    saver = BotMemorySaver(store, bot_id="agent")
    graph = _graph(saver)
    big = "x" * 3_000_000  # three times a botmemory value's limit
    config = {"configurable": {"thread_id": "big", "user_id": "u"}}
    await graph.ainvoke({"messages": [big]}, config)
    state = await graph.aget_state(config)
    assert state.values["messages"] == [big]


# -- the store ------------------------------------------------------------------------------------
async def test_store_ttl_refresh_on_read_and_default_ttl(store: botmemory.Store, clock: FakeClock) -> None:
    memory = BotMemoryStore(store, bot_id="agent", ttl=TTLConfig(default_ttl=5, refresh_on_read=True))
    assert memory.supports_ttl
    await memory.aput(("a",), "refreshed", {"v": 1}, ttl=1)
    await memory.aput(("a",), "not-refreshed", {"v": 2}, ttl=1)
    await memory.aput(("a",), "default", {"v": 3})  # default_ttl: 5 minutes
    await memory.aput(("a",), "forever", {"v": 4}, ttl=None)
    for _ in range(3):
        clock.advance(50)
        assert await memory.aget(("a",), "refreshed") is not None  # each read restarts its minute
    assert await memory.aget(("a",), "not-refreshed", refresh_ttl=False) is None  # t=150
    clock.advance(50)  # t=200: a search refreshes what it returns
    assert [i.key for i in await memory.asearch(("a",))] == ["default", "forever", "refreshed"]
    clock.advance(70)  # t=270: "refreshed" expired at 260
    assert [i.key for i in await memory.asearch(("a",), refresh_ttl=False)] == ["default", "forever"]
    clock.advance(240)  # t=510: "default" expired at 200 + 300
    assert [i.key for i in await memory.asearch(("a",))] == ["forever"]
    assert await memory.alist_namespaces() == [("a",)]
    await memory.adelete(("a",), "forever")
    assert await memory.alist_namespaces() == []  # InMemoryStore would still list ("a",)


async def test_store_keys_botmemory_refuses_are_encoded(store: botmemory.Store) -> None:
    memory = BotMemoryStore(store, bot_id="agent", user_namespaces=[("users",)])
    odd = ["", " ", "*", "a b", " lead", "trail ", "%2F", "a/b", "\x00", "\ud800", "é", "k" * 3000]
    for i, key in enumerate(odd):
        await memory.aput(("users", " u*", "x y"), key, {"i": i})
        await memory.aput(("long" * 100, "*"), key, {"i": i})
    for i, key in enumerate(odd):
        assert (await memory.aget(("users", " u*", "x y"), key)).value == {"i": i}
    found = await memory.asearch(("long" * 100,), limit=100)
    assert sorted(i.key for i in found) == sorted(odd) and {i.namespace for i in found} == {("long" * 100, "*")}
    assert await memory.alist_namespaces(prefix=("users",)) == [("users", " u*", "x y")]
    assert await memory.alist_namespaces(suffix=("x y",)) == [("users", " u*", "x y")]
    assert len(await memory.alist_namespaces(suffix=("*",))) == 2  # "*" is a wildcard, as in InMemoryStore
    created = (await memory.aget(("users", " u*", "x y"), "")).created_at
    await memory.aput(("users", " u*", "x y"), "", {"i": "again"})
    item = await memory.aget(("users", " u*", "x y"), "")
    assert item.created_at == created and item.updated_at >= created


def test_import_botmemory_imports_no_framework() -> None:
    import subprocess
    import sys

    code = (
        "import sys, botmemory, botmemory.integrations; "
        "frameworks = ('botbuilder', 'langgraph', 'langchain_core', 'jsonpickle'); "
        "loaded = [m for m in sys.modules if m.split('.')[0] in frameworks]; "
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_unknown_store_type_is_refused() -> None:
    with pytest.raises(botmemory.InvalidInputError):
        BotMemorySaver(object(), bot_id="x")  # type: ignore[arg-type]
    with botmemory.open_sync("memory://") as store, pytest.raises(botmemory.InvalidInputError, match="prefix"):
        BotMemoryStore(store, bot_id="x", user_namespaces=[("a",), ("a", "b")])

