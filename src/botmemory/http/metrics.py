"""``/metrics``: Prometheus counters and histograms of one server process (prometheus-client).

Each app has its own registry (several apps in one test process do not
share counters). With ``--workers N`` each worker process counts its own
requests; a scrape reaches one of them, as with any pre-fork server.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE", "ServerMetrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _TurnTotals(Collector):
    """The runtime's own counters (turns and the store calls they made), read at scrape time."""

    def __init__(self, totals: Callable[[], dict[str, float | int] | None]) -> None:
        self._totals = totals

    def collect(self) -> Iterator[CounterMetricFamily]:
        totals = self._totals() or {}
        yield CounterMetricFamily(
            "botmemory_turn_store_calls", "Store calls made by conversation turns", value=totals.get("store_calls", 0)
        )
        yield CounterMetricFamily(
            "botmemory_turn_store_seconds",
            "Seconds conversation turns spent in the store",
            value=totals.get("store_seconds", 0.0),
        )
        yield CounterMetricFamily(
            "botmemory_turn_errors", "Turns answered with the bot's error message", value=totals.get("errors", 0)
        )


class ServerMetrics:
    """Every metric the server exports."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "botmemory_http_requests", "HTTP requests answered", ["method", "route", "status"], registry=r
        )
        self.latency = Histogram(
            "botmemory_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.turns = Counter("botmemory_turns", "Conversation turns", ["bot"], registry=r)
        self.turn_latency = Histogram(
            "botmemory_turn_duration_seconds",
            "Conversation turn latency",
            ["bot"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.store_calls = Counter("botmemory_store_calls", "Store calls made by the HTTP API", ["op"], registry=r)
        self.store_latency = Histogram(
            "botmemory_store_call_duration_seconds",
            "Latency of the HTTP API's store calls",
            ["op"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.store_errors = Counter(
            "botmemory_store_errors", "Store calls that failed (backend down or too slow)", ["op"], registry=r
        )
        self.expired_reads = Counter(
            "botmemory_expired_reads_refused",
            "Reads that found only an expired entry (not yet deleted by the janitor) and answered 404",
            registry=r,
        )
        self.janitor_runs = Counter("botmemory_janitor_runs", "Janitor runs done by this process", registry=r)
        self.janitor_skipped = Counter(
            "botmemory_janitor_skipped", "Janitor runs left to another replica holding the lease", registry=r
        )
        self.janitor_deleted = Counter(
            "botmemory_janitor_deleted", "Entries the janitor deleted, by reason", ["reason"], registry=r
        )
        self.janitor_errors = Counter("botmemory_janitor_errors", "Errors met by janitor runs", registry=r)
        self.janitor_duration = Histogram(
            "botmemory_janitor_run_duration_seconds",
            "Janitor run duration",
            buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300),
            registry=r,
        )
        self.janitor_last = Gauge(
            "botmemory_janitor_last_run_timestamp_seconds",
            "When this process last finished a janitor run",
            registry=r,
        )
        self.auth_failures = Counter(
            "botmemory_auth_failures", "Requests refused for a bad or missing token", registry=r
        )

    def watch_runtime(self, totals: Callable[[], dict[str, float | int] | None]) -> None:
        """Export the runtime's turn totals (read at every scrape)."""
        self.registry.register(_TurnTotals(totals))

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def observe_store(self, op: str, seconds: float, failed: bool = False) -> None:
        self.store_calls.labels(op).inc()
        self.store_latency.labels(op).observe(seconds)
        if failed:
            self.store_errors.labels(op).inc()

    def observe_janitor(self, report: dict[str, Any], seconds: float) -> None:
        self.janitor_runs.inc()
        self.janitor_duration.observe(seconds)
        self.janitor_last.set(time.time())
        for reason in ("purged", "policy_deleted", "sessions_ended", "audit_purged"):
            value = report.get(reason)
            if isinstance(value, int) and value > 0:
                self.janitor_deleted.labels(reason).inc(value)
        errors = report.get("errors")
        if isinstance(errors, int) and errors > 0:
            self.janitor_errors.inc(errors)

    def render(self) -> bytes:
        return generate_latest(self.registry)
