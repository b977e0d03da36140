"""Prometheus metrics of one landing process (each worker process exports its own)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class LandingMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._children: dict[tuple[Counter, str], Counter] = {}
        self.events_accepted = Counter(
            "cxone_landing_events_accepted",
            "Events staged and acknowledged with 202.",
            ["subject"],
            registry=self.registry,
        )
        self.requests_rejected = Counter(
            "cxone_landing_requests_rejected",
            "Requests answered with an error, by error code.",
            ["reason"],
            registry=self.registry,
        )
        self.batch_events = Histogram(
            "cxone_landing_batch_events",
            "Events per staging object written.",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000),
            registry=self.registry,
        )
        self.flush_seconds = Histogram(
            "cxone_landing_flush_seconds",
            "Time to compress and durably write one staging object, retries included.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.store_errors = Counter(
            "cxone_landing_store_errors",
            "Failed store writes (each retry counts).",
            registry=self.registry,
        )
        self.pending_events = Gauge(
            "cxone_landing_pending_events",
            "Events received and waiting for their staging object to be written.",
            registry=self.registry,
        )

    def accepted(self, subject: str, events: int) -> None:
        self._child(self.events_accepted, subject).inc(events)

    def rejected(self, reason: str) -> None:
        self._child(self.requests_rejected, reason).inc()

    def _child(self, counter: Counter, label: str) -> Counter:
        # `labels()` validates and locks on every call; a child per label is looked up once.
        key = (counter, label)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = counter.labels(label)
        return child

    def render(self) -> bytes:
        return generate_latest(self.registry)
