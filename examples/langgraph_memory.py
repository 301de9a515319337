"""A LangGraph graph that remembers a user across threads on botmemory, then forgets them.

    python examples/langgraph_memory.py [--store sqlite:///agent.db]

``BotMemorySaver`` keeps each thread's checkpoints (short-term memory) and
``BotMemoryStore`` the facts the graph learns about a user (long-term
memory, namespace ``("memories", user_id)``), both in the user's botmemory
scopes: the ``user_id`` in the config links each thread to its user. The
graph asks a new user's name with ``interrupt`` and greets a known one in
any thread. Then ``bot.users.forget`` erases the user's memories and the
checkpoints of all their threads, and leaves other users alone. No model
is called, so the example runs anywhere.
"""

from __future__ import annotations

import argparse
import operator
from typing import Annotated, Any, TypedDict

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.store.base import BaseStore
from langgraph.types import Command, interrupt

import botmemory
from botmemory.integrations.langgraph import BotMemorySaver, BotMemoryStore


class State(TypedDict):
    messages: Annotated[list[str], operator.add]


def greet(state: State, config: RunnableConfig, *, store: BaseStore) -> dict[str, Any]:
    namespace = ("memories", config["configurable"]["user_id"])
    known = store.get(namespace, "profile")
    if known is None:
        name = interrupt("Hello! What's your name?")
        store.put(namespace, "profile", {"name": name})
        return {"messages": [f"Nice to meet you, {name}."]}
    return {"messages": [f"Welcome back, {known.value['name']}."]}


def build(store: botmemory.SyncStore) -> Any:
    builder = StateGraph(State)
    builder.add_node("greet", greet)
    builder.add_edge(START, "greet")
    builder.add_edge("greet", END)
    return builder.compile(
        checkpointer=BotMemorySaver(store, bot_id="assistant"),
        store=BotMemoryStore(store, bot_id="assistant", user_namespaces=[("memories",)]),
    )


def turn(graph: Any, user: str, thread: str, message: Any) -> str:
    config = {"configurable": {"thread_id": thread, "user_id": user}}
    result = graph.invoke(message if isinstance(message, Command) else {"messages": [message]}, config)
    if "__interrupt__" in result:
        return f"[{thread}] bot asks: {result['__interrupt__'][0].value}"
    return f"[{thread}] bot: {result['messages'][-1]}"


def main(url: str) -> None:
    with botmemory.open_sync(url) as store:
        graph = build(store)
        print(turn(graph, "u-ada", "ada-monday", "hi"))
        print(turn(graph, "u-ada", "ada-monday", Command(resume="Ada")))
        print(turn(graph, "u-ada", "ada-tuesday", "hi again"))  # another thread, same user
        print(turn(graph, "u-bob", "bob-monday", "hello"))
        print(turn(graph, "u-bob", "bob-monday", Command(resume="Bob")))

        bot = store.bot("assistant")
        print("ada's threads:", bot.users.conversations("u-ada"))
        receipt = bot.users.forget("u-ada")
        print("forget u-ada:", receipt["counts"])

        saver, memory = graph.checkpointer, graph.store
        for thread in ("ada-monday", "ada-tuesday", "bob-monday"):
            kept = saver.get_tuple({"configurable": {"thread_id": thread}}) is not None
            print(f"checkpoints of {thread}:", "kept" if kept else "erased")
        print("memories:", sorted(ns for ns in memory.list_namespaces(prefix=("memories",))))
        print(turn(graph, "u-bob", "bob-tuesday", "hi"))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="memory://", help="botmemory store URL (default memory://)")
    main(parser.parse_args().store)
