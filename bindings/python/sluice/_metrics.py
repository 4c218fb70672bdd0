"""sluice's metrics in prometheus_client: ``PrometheusCollector``.

A ``sluice.MetricsRegistry`` renders the Prometheus text format itself (``render()``); an app
that already serves prometheus_client's ``/metrics`` registers the registry there instead::

    import prometheus_client, sluice
    registry = sluice.MetricsRegistry(shared_region="myapp-metrics")   # host-wide totals
    prometheus_client.REGISTRY.register(sluice.PrometheusCollector(registry))

Each scrape renders the registry and parses the text back into prometheus_client's metric
families (``prometheus_client.parser.text_string_to_metric_families``), so any one Gunicorn
worker reports the whole host's series: no ``PROMETHEUS_MULTIPROC_DIR`` is needed for them.
prometheus_client is imported on the first ``collect()``: sluice does not depend on it.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

from ._errors import InvalidArgument


class PrometheusCollector:
    """A prometheus_client collector of ``source``'s series: anything with a ``render()`` or a
    ``metrics_text()`` method returning the text exposition format (a MetricsRegistry, or a
    Governor). Raises TypeError if ``source`` has neither."""

    def __init__(self, source: Any) -> None:
        text_of = getattr(source, "render", None)
        if not callable(text_of):
            text_of = getattr(source, "metrics_text", None)
        if not callable(text_of):
            raise TypeError("sluice.PrometheusCollector: source must have a render() or "
                            f"metrics_text() method, got {type(source).__name__}")
        self._text_of: Callable[[], Any] = text_of

    def collect(self) -> Iterator[Any]:
        """The source's metric families, rendered now (prometheus_client calls it per scrape).
        Raises sluice.InvalidArgument (a ValueError) if the text does not parse, TypeError if it
        is not str or bytes."""
        from prometheus_client.parser import text_string_to_metric_families

        text = self._text_of()
        if isinstance(text, bytes):
            text = text.decode("utf-8", errors="replace")
        if not isinstance(text, str):
            raise TypeError("sluice.PrometheusCollector: the source's text must be str or bytes, "
                            f"got {type(text).__name__}")
        try:
            # Parsed whole before the first family is handed over: a malformed text fails the
            # scrape with a documented error rather than half-way through.
            families = list(text_string_to_metric_families(text))
        except Exception as e:  # the parser raises ValueError, and IndexError on some garbage
            raise InvalidArgument("sluice.PrometheusCollector: the source's text is not the "
                                  f"Prometheus text format: {e}") from e
        yield from families
