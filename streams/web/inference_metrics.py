"""The inference endpoint's counters, plain numbers updated per request, read by Prometheus at scrape time.

Every series exists from the start at 0 (each endpoint, each error reason), for the
reason ``streams.web.metrics`` gives: ``rate()`` sees a change only against an earlier
sample of the same series.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from streams.services.inference.errors import REASONS
from streams.services.inference.predictions import ApiPredictions
from streams.services.score.telemetry import Histogram

ENDPOINTS = ("health", "metadata", "ready", "infer")
REQUEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


@dataclass
class InferenceCounters:
    """Requests per endpoint, errors per reason, rows answered, request seconds per endpoint."""

    requests: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ENDPOINTS, 0))
    errors: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    rows: int = 0
    in_flight: int = 0  # infer requests being answered now
    seconds: dict[str, Histogram] = field(
        default_factory=lambda: {e: Histogram(REQUEST_BUCKETS) for e in ENDPOINTS}
    )

    def record(self, endpoint: str, seconds: float, error: str | None = None) -> None:
        self.requests[endpoint] += 1
        self.seconds[endpoint].observe(seconds)
        if error is not None:
            self.errors[error] += 1


class InferenceCollector(Collector):
    def __init__(self, counters: InferenceCounters, writer: ApiPredictions | None = None) -> None:
        self.counters, self.writer = counters, writer

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily]:
        c = self.counters
        requests = CounterMetricFamily(
            "streamscore_inference_requests", "Requests to the /v2 endpoints", labels=["endpoint"]
        )
        for endpoint, count in c.requests.items():
            requests.add_metric([endpoint], count)
        yield requests
        errors = CounterMetricFamily(
            "streamscore_inference_errors",
            "/v2 requests answered with an error, by reason",
            labels=["reason"],
        )
        for reason, count in c.errors.items():
            errors.add_metric([reason], count)
        yield errors
        yield CounterMetricFamily("streamscore_inference_rows", "Rows scored over /v2", value=c.rows)
        yield GaugeMetricFamily(
            "streamscore_inference_in_flight", "/v2 infer requests being answered now", value=c.in_flight
        )
        seconds = HistogramMetricFamily(
            "streamscore_inference_request_duration_seconds",
            "Time to answer a /v2 request, from its arrival to its response",
            labels=["endpoint"],
        )
        for endpoint, histogram in c.seconds.items():
            seconds.add_metric([endpoint], histogram.cumulative(), sum_value=histogram.total)
        yield seconds
        if self.writer is not None:
            written = CounterMetricFamily(
                "streamscore_inference_predictions",
                "/v2 answers written to the predictions topic, by outcome",
                labels=["outcome"],
            )
            for outcome in ("queued", "dropped", "failed"):
                written.add_metric([outcome], getattr(self.writer, outcome))
            yield written
