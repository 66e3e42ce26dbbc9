"""The read-only HTTP status API and Prometheus ``/metrics`` of the daemon.

Endpoints (GET and HEAD only; other methods on them answer 405 with ``Allow: GET, HEAD``,
unknown paths 404, errors are ``{"error": "..."}``):

- ``/healthz``: :meth:`StatusProvider.health`; 200, or 503 when the scheduler is not alive.
- ``/metrics``: Prometheus text format (OpenMetrics when the scraper asks for it), rendered by
  ``prometheus_client`` from a collector that reads the provider at scrape time.
- ``/api/v1/monitoring/latest``: the seed's dashboard summary (:func:`status_summary`) of the
  latest report plus ``links``; ``{"status": "no_reports"}`` when there is none.
- ``/api/v1/monitoring/report/{id}`` and ``/api/v1/monitoring/report/{id}/html``: the stored
  report files. An id that does not match :data:`daemon.status.REPORT_ID_RE` is a 404 before
  any path is built from it.

The server is stdlib ``ThreadingHTTPServer`` in a daemon thread; it is meant for loopback or a
trusted network (there is no authentication), hence off by default.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import threading
from collections.abc import Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import unquote

import structlog
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)

from analyzer.contract import SectionName
from analyzer.severity import Severity
from daemon.config_types import is_loopback_host, parse_listen
from daemon.defaults import HTTP_REQUEST_TIMEOUT_S
from daemon.status import (
    MetricsSnapshot,
    ReportExt,
    StatusProvider,
    is_valid_report_id,
    status_summary,
)

log = structlog.get_logger(__name__)

API_PREFIX = "/api/v1/monitoring"
"""Where the seed's dashboard and report endpoints live."""

ALLOWED_METHODS = "GET, HEAD"
"""The ``Allow`` header of a 405: the API is read-only."""

HTML_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
"""Content-Security-Policy of served HTML reports: they are one self-contained file (inline CSS,
``data:`` images, no script), so nothing may load from elsewhere and no script may run."""

_OFF = ("", "off")


class DriftdCollector:
    """A ``prometheus_client`` collector reading the provider's :class:`MetricsSnapshot` at
    scrape time (the ``driftd_*`` families)."""

    def __init__(self, provider: StatusProvider) -> None:
        self._provider = provider

    def collect(self) -> Iterator[Metric]:
        """Yield every family; report families are empty when there is no readable report."""
        snap = self._provider.metrics_snapshot()
        yield from _daemon_families(snap)
        yield from _report_families(snap)


def _gauge(name: str, doc: str, value: float | None) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc)
    if value is not None:
        family.add_metric([], value)
    return family


def _daemon_families(snap: MetricsSnapshot) -> Iterator[Metric]:
    d = snap.daemon
    yield _gauge("driftd_scheduler_alive", "1 while the scheduler is running.",
                 float(d.scheduler_alive))
    yield _gauge("driftd_start_time_seconds", "Unix time the daemon started.",
                 d.started_at.timestamp())
    yield _gauge("driftd_last_run_start_time_seconds", "Unix time the last run started.",
                 d.last_run_started.timestamp() if d.last_run_started else None)
    yield _gauge("driftd_last_run_finish_time_seconds", "Unix time the last run finished.",
                 d.last_run_finished.timestamp() if d.last_run_finished else None)
    yield _gauge("driftd_last_run_success", "1 when the last run succeeded, 0 when it failed.",
                 None if d.last_run_ok is None else float(d.last_run_ok))
    yield CounterMetricFamily("driftd_runs", "Runs finished since start.", value=d.runs_total)
    yield CounterMetricFamily("driftd_run_failures", "Runs failed since start.",
                              value=d.failures_total)
    alerts = GaugeMetricFamily("driftd_alerts", "Alerts in the outbox by status.",
                               labels=["status"])
    for status, count in sorted(snap.alerts.items()):
        alerts.add_metric([status], count)
    yield alerts
    store = snap.store
    yield _gauge("driftd_pending_store_writes", "Nights waiting to be written to the metric store.",
                 None if store.pending_writes is None else float(store.pending_writes))
    yield _gauge("driftd_store_up", "1 when the metric store is reachable (ping, else the last "
                 "write), 0 when not.", None if store.reachable is None else float(store.reachable))
    yield _gauge("driftd_store_last_ok_time_seconds", "Unix time of the last successful store "
                 "write.", store.last_ok_at.timestamp() if store.last_ok_at else None)
    yield _gauge("driftd_latest_report_readable", "0 when the latest report file is unreadable.",
                 float(snap.report_readable))


def _report_families(snap: MetricsSnapshot) -> Iterator[Metric]:
    report = snap.report
    info = InfoMetricFamily("driftd_report", "The latest report.",
                            labels=["report_id", "severity"])
    severity = GaugeMetricFamily("driftd_severity",
                                 "1 for the latest report's overall severity, 0 for the others.",
                                 labels=["severity"])
    section_rank = GaugeMetricFamily("driftd_section_severity_rank",
                                     "Severity rank (0 none .. 3 high) per report section.",
                                     labels=["section"])
    effect = GaugeMetricFamily("driftd_test_effect_size",
                               "Effect size of each test in the latest report.",
                               labels=["section", "feature", "kind"])
    p_value = GaugeMetricFamily("driftd_test_p_value", "Raw p-value of each test.",
                                labels=["section", "feature"])
    p_adjusted = GaugeMetricFamily("driftd_test_p_value_adjusted",
                                   "Multiple-testing-corrected p-value of each test.",
                                   labels=["section", "feature"])
    quality = GaugeMetricFamily("driftd_data_quality_issues", "Bad files by issue.",
                                labels=["issue"])
    rank = time_s = drift = pixel = conf = dist = images = None
    if report is not None:
        level = report.overall_severity
        info.add_metric([report.report_id, level.value], {})
        for member in Severity:
            severity.add_metric([member.value], float(member is level))
        for name in SectionName:
            section_rank.add_metric([name.value], report.severity_of(name).rank)
        for name, section in report.sections:
            for test in section.tests:
                # A number the report file holds as null (NaN here) is no sample at all.
                if not math.isnan(test.effect_size):
                    effect.add_metric([name.value, test.feature, test.effect_size_kind.value],
                                      float(test.effect_size))
                if not math.isnan(test.p_value):
                    p_value.add_metric([name.value, test.feature], float(test.p_value))
                if not math.isnan(test.p_adjusted):
                    p_adjusted.add_metric([name.value, test.feature], float(test.p_adjusted))
        for issue, detail in sorted(report.data_quality.issues.items()):
            quality.add_metric([issue], float(detail.count))
        rank = float(level.rank)
        time_s = report.timestamp.timestamp()
        drift = float(report.overall_drift_detected)
        pixel = float(report.pixel.overall_mean_shift)
        conf = float(report.confidence.mean_confidence_shift)
        dist = float(report.classes.wasserstein_distance)
        images = float(report.current_image_count)
    yield info
    yield _gauge("driftd_report_time_seconds", "Unix time of the latest report.", time_s)
    yield _gauge("driftd_severity_rank", "Overall severity rank of the latest report "
                 "(0 none, 1 low, 2 medium, 3 high).", rank)
    yield severity
    yield _gauge("driftd_drift_detected", "1 when the latest report detected drift.", drift)
    yield section_rank
    yield _gauge("driftd_pixel_mean_shift", "Mean |channel mean shift| / 255 (seed's "
                 "pixel_mean_shift).", pixel)
    yield _gauge("driftd_confidence_shift", "Mean max-softmax current - baseline (seed's "
                 "confidence_shift).", conf)
    yield _gauge("driftd_class_drift_distance", "Wasserstein distance of predicted-class shares.",
                 dist)
    yield _gauge("driftd_images_analyzed", "Images in the latest report's folder.", images)
    yield effect
    yield p_value
    yield p_adjusted
    yield quality


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    provider: StatusProvider
    registry: CollectorRegistry


class _ServerV6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    """Routes one request; every answer is JSON except /metrics and the HTML report."""

    server: _Server
    timeout = HTTP_REQUEST_TIMEOUT_S
    server_version = "driftd"
    sys_version = ""

    def do_GET(self) -> None:
        self._dispatch(send_body=True)

    def do_HEAD(self) -> None:
        self._dispatch(send_body=False)

    def _refuse_method(self) -> None:
        self.close_connection = True  # the request body, if any, is never read
        if self._route() is None:
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint: {self._path()}"}, True)
        else:
            self._json(HTTPStatus.METHOD_NOT_ALLOWED,
                       {"error": f"{self.command} is not allowed; this API is read-only "
                                 f"(allowed: {ALLOWED_METHODS})"},
                       True, extra={"Allow": ALLOWED_METHODS})

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = _refuse_method

    def send_error(self, code: int, message: str | None = None,
                   explain: str | None = None) -> None:
        """Protocol-level errors (400, 414, 501 …) as JSON too; the connection is closed."""
        self.close_connection = True
        status = HTTPStatus(code)
        self._json(status, {"error": message or status.phrase}, self.command != "HEAD")

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http.request_served", client=self.client_address[0], line=format % args)

    def _path(self) -> str:
        """The request target without its query (no URL normalisation: ``..`` stays as is)."""
        return self.path.partition("?")[0]

    def _route(self) -> tuple[str, str | None] | None:
        """(endpoint, raw report id) for a known path, else None; the id is still encoded."""
        path = self._path()
        if path in ("/healthz", "/metrics", f"{API_PREFIX}/latest"):
            return path, None
        prefix = f"{API_PREFIX}/report/"
        if not path.startswith(prefix):
            return None
        parts = path[len(prefix):].split("/")
        if len(parts) == 1 and parts[0]:
            return "report_json", parts[0]
        if len(parts) == 2 and parts[0] and parts[1] == "html":
            return "report_html", parts[0]
        return None

    def _dispatch(self, send_body: bool) -> None:
        route = self._route()
        try:
            if route is None:
                self._json(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint: {self._path()}"},
                           send_body)
            elif route[0] == "/healthz":
                health = self.server.provider.health()
                code = HTTPStatus.SERVICE_UNAVAILABLE if health.get("status") == "down" \
                    else HTTPStatus.OK
                self._json(code, health, send_body)
            elif route[0] == "/metrics":
                # The library's own negotiation: text 0.0.4 (generate_latest) unless the
                # scraper asks for OpenMetrics or text 1.0.0.
                encode, content_type = choose_encoder(self.headers.get("Accept", ""))
                self._send(HTTPStatus.OK, content_type, encode(self.server.registry), send_body)
            elif route[0] == f"{API_PREFIX}/latest":
                self._latest(send_body)
            else:
                ext: ReportExt = "html" if route[0] == "report_html" else "json"
                self._report(str(route[1]), ext, send_body)
        except Exception as err:  # one bad request must not kill the handler thread silently
            log.exception("http.request_failed", path=self._path(), error_type=type(err).__name__)
            self._json(HTTPStatus.INTERNAL_SERVER_ERROR,
                       {"error": f"internal error ({type(err).__name__}); see the daemon log"},
                       send_body)

    def _latest(self, send_body: bool) -> None:
        try:
            report = self.server.provider.latest_report()
        except (OSError, ValueError) as err:
            log.warning("http.latest_unreadable", error=str(err))
            self._json(HTTPStatus.INTERNAL_SERVER_ERROR,
                       {"error": f"the latest report cannot be read: {err}"}, send_body)
            return
        if report is None:
            self._json(HTTPStatus.OK, {"status": "no_reports"}, send_body)
            return
        summary = status_summary(report)
        if is_valid_report_id(report.report_id):
            summary["links"] = {
                "report": f"{API_PREFIX}/report/{report.report_id}",
                "html": f"{API_PREFIX}/report/{report.report_id}/html",
            }
        self._json(HTTPStatus.OK, summary, send_body)

    def _report(self, raw_id: str, ext: ReportExt, send_body: bool) -> None:
        report_id = unquote(raw_id, errors="replace") if raw_id.isascii() else ""
        # Validate before anything builds a path from the id: the provider is not even asked.
        path = self.server.provider.report_path(report_id, ext) \
            if is_valid_report_id(report_id) else None
        if path is None:
            self._json(HTTPStatus.NOT_FOUND, {"error": "report not found"}, send_body)
            return
        content_type = "text/html; charset=utf-8" if ext == "html" else "application/json"
        with path.open("rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            self.send_response(HTTPStatus.OK)
            self._headers(content_type, size)
            if ext == "html":
                self.send_header("Content-Security-Policy", HTML_CSP)
            self.end_headers()
            if send_body:
                shutil.copyfileobj(fh, self.wfile)

    def _json(self, code: HTTPStatus, payload: dict[str, object], send_body: bool,
              extra: dict[str, str] | None = None) -> None:
        body = json.dumps(payload, allow_nan=False, default=str).encode()
        self._send(code, "application/json", body, send_body, extra)

    def _send(self, code: HTTPStatus, content_type: str, body: bytes, send_body: bool,
              extra: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self._headers(content_type, len(body))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def _headers(self, content_type: str, length: int) -> None:
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(length))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")


class StatusServer:
    """The status API on ``listen`` (``host:port``), serving from ``provider`` in a daemon thread.

    ``start()`` binds and returns the bound (host, port) (port 0 picks a free one); ``stop()``
    shuts the listener down, closes the socket and joins the thread; also a context manager.
    The constructor raises ``ValueError`` for a listen address that is not host:port.
    """

    def __init__(self, listen: str, provider: StatusProvider) -> None:
        self._host, self._port = parse_listen(listen)
        self._listen = listen
        self._provider = provider
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> tuple[str, int]:
        """Bind and serve; raise ``OSError`` naming the address when it cannot be bound."""
        if self._server is not None:
            raise RuntimeError("StatusServer.start() called twice; call stop() first")
        cls = _ServerV6 if ":" in self._host else _Server
        try:
            server = cls((self._host, self._port), _Handler)
        except OSError as err:
            raise OSError(
                err.errno,
                f"cannot listen on {self._listen!r} ([http] listen): {err.strerror}; "
                f"pick a free port or set listen = \"off\"",
            ) from err
        registry = CollectorRegistry(auto_describe=False)
        registry.register(DriftdCollector(self._provider))
        server.provider = self._provider
        server.registry = registry
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name="driftd-http", daemon=True,
            kwargs={"poll_interval": 0.2},
        )
        self._thread.start()
        host, port = self.address
        if not is_loopback_host(self._host):
            log.warning("http.listening_publicly", host=self._host, port=port,
                        hint="the status API has no authentication; prefer 127.0.0.1")
        log.info("http.started", host=host, port=port)
        return host, port

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port); raises ``RuntimeError`` before ``start()``."""
        if self._server is None:
            raise RuntimeError("StatusServer is not started; call start() first")
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def stop(self) -> None:
        """Stop serving, close the listening socket and join the thread (idempotent)."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join()
        log.info("http.stopped")

    def __enter__(self) -> StatusServer:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def start_status_server(listen: str, provider: StatusProvider) -> StatusServer | None:
    """Start the status API on ``listen`` and return it; None (nothing started) when ``listen``
    is empty or ``"off"``. Raises ``ValueError`` for a malformed address, ``OSError`` when the
    address cannot be bound."""
    if listen.strip().lower() in _OFF:
        return None
    server = StatusServer(listen, provider)
    server.start()
    return server
