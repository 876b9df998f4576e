"""The model server's Prometheus metrics."""

from __future__ import annotations


class Metrics:
    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("secbot_requests", "Chat completion requests", ["status"], registry=self.registry)
        self.tokens = Counter("secbot_generated_tokens", "Tokens generated", registry=self.registry)
        self.latency = Histogram("secbot_request_seconds", "Request latency", registry=self.registry,
                                 buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120))
        self.batch = Histogram("secbot_batch_size", "Requests per generation step", registry=self.registry,
                               buckets=(1, 2, 4, 8, 16, 32, 64))
        self.rate = Gauge("secbot_tokens_per_second", "Tokens per second over the last busy second",
                          registry=self.registry)
        self.queued = Gauge("secbot_queued_requests", "Requests waiting for a place in the batch",
                            registry=self.registry)
        self.decoding = Gauge("secbot_decoding_requests", "Requests in the batch, being decoded",
                              registry=self.registry)
        self.switches = Counter("secbot_adapter_switches", "Adapter switches (each drains the batch)",
                                registry=self.registry)
        self._window = [0, 0.0]  # tokens, seconds

    def on_step(self, rows: int, tokens: int, seconds: float) -> None:
        self.batch.observe(rows)
        self.tokens.inc(tokens)
        self._window[0] += tokens
        self._window[1] += seconds
        if self._window[1] >= 1.0:
            self.rate.set(self._window[0] / self._window[1])
            self._window = [0, 0.0]

    def exposition(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST
