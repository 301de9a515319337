"""BotMemoryStore against LangGraph's InMemoryStore: random put/delete/get/search/list_namespaces, every backend.

InMemoryStore is the model, minus what the README says BotMemoryStore does
differently on purpose: only namespaces with a live item are listed, and
search results come in (namespace, key) order. Deterministic (derandomize).
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test
from langgraph.store.base import MatchCondition
from langgraph.store.memory import InMemoryStore

import botmemory
from botmemory.integrations.langgraph import BotMemoryStore
from botmemory.testing.backends import POSTGRES_URL, REDIS_URL, unique_suffix

ALL = 10**6
# labels and keys botmemory would refuse as keys, or that look like the key layout, are the interesting ones
_labels = st.sampled_from(["users", "memories", "a", "b", "a b", " x", "*", "%2F", "/", ":", "é", "#h", "="])
_namespaces = st.lists(_labels, min_size=1, max_size=3).map(tuple)
_prefixes = st.lists(_labels, max_size=2).map(tuple)
_keys = st.sampled_from(["", " ", "*", "k", "k k", "%", "/", "é", ":", "#", "k\u0000"]) | st.text(max_size=4)
_scalars = st.none() | st.booleans() | st.integers(-3, 3) | st.sampled_from(["x", "y", ""])
_values = st.fixed_dictionaries(
    {"n": st.integers(-5, 5)},
    optional={
        "tag": st.sampled_from(["x", "y"]),
        "nested": st.dictionaries(st.sampled_from(["p", "q"]), _scalars, max_size=2),
        "list": st.lists(_scalars, max_size=2),
    },
)
_small = st.integers(-5, 5)
_filters = st.none() | st.one_of(
    st.builds(lambda n: {"n": n}, st.integers(-5, 5)),
    st.builds(lambda op, n: {"n": {op: n}}, st.sampled_from(["$gt", "$gte", "$lt", "$lte", "$ne", "$eq"]), _small),
    st.builds(lambda t: {"tag": t}, st.sampled_from(["x", "y"])),
    st.builds(lambda v: {"nested": {"p": v}}, _scalars),
    st.builds(lambda v: {"list": v}, st.lists(_scalars, max_size=2)),
)


def _matches(conditions: list[MatchCondition], namespace: tuple[str, ...]) -> bool:
    for condition in conditions:
        path = condition.path
        if len(namespace) < len(path):
            return False
        pairs = zip(namespace, path) if condition.match_type == "prefix" else zip(reversed(namespace), reversed(path))
        if not all(p == "*" or n == p for n, p in pairs):
            return False
    return True


def store_model_machine(sync_store: botmemory.SyncStore) -> type[RuleBasedStateMachine]:
    bots = itertools.count()

    class StoreModel(RuleBasedStateMachine):
        @initialize()
        def fresh(self) -> None:
            # a fresh bot per test case: bots are isolated, so no clean-up is needed
            self.ours = BotMemoryStore(sync_store, bot_id=f"model{next(bots)}", user_namespaces=[("users",)])
            self.model = InMemoryStore()

        @rule(namespace=_namespaces, key=_keys, value=_values)
        def put(self, namespace: tuple[str, ...], key: str, value: dict[str, Any]) -> None:
            self.ours.put(namespace, key, value)
            self.model.put(namespace, key, value)

        @rule(namespace=_namespaces, key=_keys)
        def delete(self, namespace: tuple[str, ...], key: str) -> None:
            self.ours.delete(namespace, key)
            self.model.delete(namespace, key)

        @rule(namespace=_namespaces, key=_keys)
        def get(self, namespace: tuple[str, ...], key: str) -> None:
            ours, model = self.ours.get(namespace, key), self.model.get(namespace, key)
            assert (ours is None) == (model is None)
            if ours is not None and model is not None:
                assert (ours.namespace, ours.key, ours.value) == (model.namespace, model.key, model.value)
                assert ours.created_at <= ours.updated_at

        @rule(prefix=_prefixes, filter=_filters, limit=st.integers(1, 6), offset=st.integers(0, 3))
        def search(self, prefix: tuple[str, ...], filter: Any, limit: int, offset: int) -> None:
            ours = self.ours.search(prefix, filter=filter, limit=limit, offset=offset)
            everything = self.model.search(prefix, filter=filter, limit=ALL)
            expected = sorted(everything, key=lambda i: (i.namespace, i.key))[offset : offset + limit]
            assert [(i.namespace, i.key, i.value) for i in ours] == [(i.namespace, i.key, i.value) for i in expected]

        @rule(
            prefix=st.none() | st.lists(_labels | st.just("*"), min_size=1, max_size=2).map(tuple),
            suffix=st.none() | st.lists(_labels | st.just("*"), min_size=1, max_size=2).map(tuple),
            max_depth=st.none() | st.integers(1, 3),
            limit=st.integers(1, 6),
            offset=st.integers(0, 3),
        )
        def list_namespaces(self, prefix: Any, suffix: Any, max_depth: Any, limit: int, offset: int) -> None:
            ours = self.ours.list_namespaces(
                prefix=prefix, suffix=suffix, max_depth=max_depth, limit=limit, offset=offset
            )
            listed = self.model.list_namespaces(prefix=prefix, suffix=suffix, max_depth=max_depth, limit=ALL)
            # InMemoryStore also lists namespaces with no live item left: leave those out
            conditions = [MatchCondition("prefix", prefix)] if prefix else []
            conditions += [MatchCondition("suffix", suffix)] if suffix else []
            live = {i.namespace for i in self.model.search((), limit=ALL) if _matches(conditions, i.namespace)}
            shown = {ns[:max_depth] if max_depth is not None else ns for ns in live}
            assert ours == [ns for ns in listed if ns in shown][offset : offset + limit]

        @invariant()
        def same_items(self) -> None:
            ours = self.ours.search((), limit=ALL)
            model = self.model.search((), limit=ALL)
            assert sorted((i.namespace, i.key) for i in ours) == sorted((i.namespace, i.key) for i in model)

    return StoreModel


def test_store_behaves_like_in_memory_store(backend_name: str, tmp_path: Path) -> None:
    url, options, examples = {
        "memory": ("memory://", {}, 50),
        "sqlite": (f"sqlite:///{tmp_path / 'model.db'}", {}, 25),
        "postgres": (POSTGRES_URL, {"schema": unique_suffix()}, 15),
        "redis": (REDIS_URL, {"prefix": f"botmemory-test:{unique_suffix()}:"}, 15),
    }[backend_name]
    store = botmemory.open_sync(url, **options)
    try:
        run_state_machine_as_test(
            store_model_machine(store),
            settings=settings(
                max_examples=examples,
                stateful_step_count=25,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            ),
        )
    finally:
        if backend_name in ("postgres", "redis"):
            store.run(store.async_store.backend.drop_everything())
        store.close()
