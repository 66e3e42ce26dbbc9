"""The read-only status API over real HTTP on 127.0.0.1: shapes, ids, methods, shutdown."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timezone
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from analyzer.contract import DriftReport
from daemon.http import StatusServer, parse_listen, start_status_server
from daemon.state import Outbox, OutboxAlert, StateDB
from daemon.status import (
    DaemonState,
    FileStatusProvider,
    MetricsSnapshot,
    ReportExt,
    StatusProvider,
)
from sinks.files import ReportFiles
from tests.daemon.report_samples import make_report, write_report

T0 = datetime(2026, 11, 26, 1, 0, tzinfo=timezone.utc)
API = "/api/v1/monitoring"


class RecordingProvider(FileStatusProvider):
    """The real file provider, recording every report id the server asks it to resolve."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.report_path_calls: list[tuple[str, str]] = []

    def report_path(self, report_id: str, ext: ReportExt) -> Path | None:
        self.report_path_calls.append((report_id, ext))
        return super().report_path(report_id, ext)


@dataclass
class Served:
    base: str
    host: str
    port: int
    reports: Path
    state: DaemonState
    provider: RecordingProvider
    server: StatusServer
    db: StateDB
    outbox: Outbox


@dataclass
class Answer:
    status: int
    headers: Message
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def request(url: str, method: str = "GET", data: bytes | None = None) -> Answer:
    """One HTTP request with urllib; HTTP errors are answers too."""
    req = urllib.request.Request(url, method=method, data=data)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return Answer(resp.status, resp.headers, resp.read())
    except urllib.error.HTTPError as err:
        with err:
            return Answer(err.code, err.headers, err.read())


def raw_request(host: str, port: int, target: bytes) -> bytes:
    """Send a request line byte for byte (urllib refuses NULs) and return the whole answer."""
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(b"GET " + target + b" HTTP/1.0\r\nHost: x\r\n\r\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


class CurrentProvider:
    """A StatusProvider delegating to the current test's provider, so one server (started once
    per module) serves every test's own reports folder and daemon state."""

    current: StatusProvider

    def health(self) -> dict[str, object]:
        return self.current.health()

    def latest_report(self) -> DriftReport | None:
        return self.current.latest_report()

    def report_path(self, report_id: str, ext: ReportExt) -> Path | None:
        return self.current.report_path(report_id, ext)

    def metrics_snapshot(self) -> MetricsSnapshot:
        return self.current.metrics_snapshot()


@pytest.fixture(scope="module")
def module_server() -> Iterator[tuple[StatusServer, CurrentProvider]]:
    switch = CurrentProvider()
    with StatusServer("127.0.0.1:0", switch) as server:
        yield server, switch


@pytest.fixture
def served(
    tmp_path: Path, module_server: tuple[StatusServer, CurrentProvider]
) -> Iterator[Served]:
    server, switch = module_server
    reports = tmp_path / "reports"
    reports.mkdir()
    state = DaemonState(started_at=T0)
    state.set_scheduler_alive(True)
    db = StateDB(tmp_path / "state" / "state.sqlite")
    outbox = Outbox(tmp_path / "state" / "state.sqlite")
    provider = RecordingProvider(reports, db, None, state, outbox)
    switch.current = provider
    host, port = server.address
    yield Served(f"http://{host}:{port}", host, port, reports, state, provider, server, db,
                 outbox)
    outbox.close()


class TestEndpoints:
    def test_latest_summary(self, served: Served) -> None:
        """/latest gives the seed's dashboard summary of the newest night, with links."""
        write_report(served.reports, make_report("20261125", severity="low"))
        report = make_report("20261126", severity="high")
        report["confidence_drift"]["severity"] = "none"
        write_report(served.reports, report)
        answer = request(served.base + f"{API}/latest")
        assert answer.status == 200
        assert answer.headers["Content-Type"] == "application/json"
        body = answer.json()
        assert body["report_id"] == "20261126"
        assert body["severity_level"] == "high"  # ordered, not max() of strings ("none")
        assert body["drift_detected"] is True
        assert body["metrics"] == {
            "pixel_mean_shift": 0.0832, "confidence_shift": -0.12, "class_drift_distance": 0.03,
        }
        assert body["images_analyzed"] == 480
        assert body["timestamp"] == "2026-11-26T01:15:03+00:00"
        assert body["links"] == {
            "report": f"{API}/report/20261126", "html": f"{API}/report/20261126/html",
        }
        assert request(served.base + body["links"]["report"]).json() == report

    def test_latest_without_reports(self, served: Served) -> None:
        """With no report yet, /latest answers the seed's no_reports status."""
        answer = request(served.base + f"{API}/latest")
        assert (answer.status, answer.json()) == (200, {"status": "no_reports"})

    def test_report_json_and_html(self, served: Served) -> None:
        """A stored report is served as JSON and as HTML by its id."""
        report = make_report("20261126")
        write_report(served.reports, report)
        answer = request(served.base + f"{API}/report/20261126")
        assert answer.status == 200 and answer.json() == report
        html = request(served.base + f"{API}/report/20261126/html")
        assert html.status == 200
        assert html.headers["Content-Type"] == "text/html; charset=utf-8"
        assert b"Report 20261126" in html.body
        assert "default-src 'none'" in html.headers["Content-Security-Policy"]

    def test_check_report_id(self, served: Served) -> None:
        """A `check` command report id is served like a nightly one."""
        write_report(served.reports, make_report("check-20261126T011503Z"))
        answer = request(served.base + f"{API}/report/check-20261126T011503Z")
        assert answer.json()["report_id"] == "check-20261126T011503Z"

    def test_missing_report_is_404_json(self, served: Served) -> None:
        """A well-formed id without a file is a JSON 404."""
        answer = request(served.base + f"{API}/report/20000101")
        assert answer.status == 404 and answer.json() == {"error": "report not found"}
        assert served.provider.report_path_calls == [("20000101", "json")]

    def test_malformed_latest_is_500_and_metrics_still_scrape(self, served: Served) -> None:
        """A hand-broken latest report gives a JSON 500 on /latest; /metrics keeps answering."""
        report = make_report("20261126")
        report["overall_severity"] = "critical"
        write_report(served.reports, report)
        answer = request(served.base + f"{API}/latest")
        assert answer.status == 500 and "critical" in answer.json()["error"]
        (served.reports / "monitor_report_20261126.json").write_text("{torn")
        assert request(served.base + f"{API}/latest").status == 500
        metrics = request(served.base + "/metrics")
        assert metrics.status == 200
        assert b"driftd_latest_report_readable 0.0" in metrics.body

    def test_head_sends_headers_only(self, served: Served) -> None:
        """HEAD answers like GET without a body."""
        write_report(served.reports, make_report("20261126"))
        answer = request(served.base + f"{API}/report/20261126", method="HEAD")
        assert answer.status == 200 and answer.body == b""
        assert int(answer.headers["Content-Length"]) > 0

    def test_healthz_ok_then_503_when_scheduler_stops(self, served: Served) -> None:
        """/healthz is 200 while the scheduler runs and 503 once it is not alive."""
        served.state.run_started(T0)
        served.state.run_finished(T0, ok=True)
        answer = request(served.base + "/healthz")
        assert answer.status == 200
        body = answer.json()
        assert body["status"] == "ok" and body["scheduler_alive"] is True
        assert body["last_run"] == {
            "started": T0.isoformat(), "finished": T0.isoformat(), "ok": True, "error": None,
        }
        served.state.set_scheduler_alive(False)
        answer = request(served.base + "/healthz")
        assert answer.status == 503 and answer.json()["status"] == "down"


class TestMetrics:
    def _samples(self, served: Served) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        answer = request(served.base + "/metrics")
        assert answer.status == 200
        assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        samples = {}
        for family in text_string_to_metric_families(answer.body.decode()):
            for s in family.samples:
                samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return samples

    def test_metrics_of_latest_report(self, served: Served) -> None:
        """/metrics exposes the latest report's severity, headline numbers and per-test stats."""
        write_report(served.reports, make_report("20261126", severity="high"))
        served.state.run_started(T0)
        served.state.run_finished(T0, ok=False, error="store down")
        for channel in ("slack", "pagerduty"):
            served.outbox.outbox_add(OutboxAlert(
                channel=channel, kind="drift", partition=date(2026, 11, 26), severity="high",
                payload={}, created_at=T0, next_attempt_at=T0,
            ))
        served.outbox.outbox_mark_sent("slack:drift:2026-11-26", T0)
        served.outbox.outbox_mark_dead("pagerduty:drift:2026-11-26", T0, "400 invalid key")
        served.db.store_failed(T0, "metric store unreachable")
        served.db.pending_writes_add(date(2026, 11, 26), served.reports / "payload.json")
        s = self._samples(served)
        assert s[("driftd_alerts", (("status", "sent"),))] == 1
        assert s[("driftd_alerts", (("status", "dead"),))] == 1
        assert s[("driftd_alerts", (("status", "pending"),))] == 0
        assert s[("driftd_pending_store_writes", ())] == 1
        assert s[("driftd_store_up", ())] == 0
        assert s[("driftd_severity_rank", ())] == 3
        assert s[("driftd_severity", (("severity", "high"),))] == 1
        assert s[("driftd_severity", (("severity", "none"),))] == 0
        assert s[("driftd_report_info", (("report_id", "20261126"), ("severity", "high")))] == 1
        assert s[("driftd_drift_detected", ())] == 1
        assert s[("driftd_pixel_mean_shift", ())] == pytest.approx(0.0832)
        assert s[("driftd_confidence_shift", ())] == pytest.approx(-0.12)
        assert s[("driftd_class_drift_distance", ())] == pytest.approx(0.03)
        assert s[("driftd_images_analyzed", ())] == 480
        brightness = (("feature", "brightness"), ("section", "pixel_distribution_drift"))
        assert s[("driftd_test_p_value", brightness)] == pytest.approx(1e-9)
        kind = (("feature", "brightness"), ("kind", "wasserstein_norm"),
                ("section", "pixel_distribution_drift"))
        assert s[("driftd_test_effect_size", kind)] == pytest.approx(0.42)
        assert s[("driftd_section_severity_rank", (("section", "confidence_drift"),))] == 2
        assert s[("driftd_data_quality_issues", (("issue", "unreadable"),))] == 1
        assert s[("driftd_report_time_seconds", ())] == datetime.fromisoformat(
            "2026-11-26T01:15:03+00:00").timestamp()
        assert s[("driftd_runs_total", ())] == 1
        assert s[("driftd_run_failures_total", ())] == 1
        assert s[("driftd_last_run_success", ())] == 0
        assert s[("driftd_last_run_finish_time_seconds", ())] == T0.timestamp()
        assert s[("driftd_scheduler_alive", ())] == 1

    def test_openmetrics_on_request(self, served: Served) -> None:
        """A scraper that asks for OpenMetrics gets it, parseable by the OpenMetrics parser."""
        write_report(served.reports, make_report("20261126"))
        req = urllib.request.Request(served.base + "/metrics",
                                     headers={"Accept": "application/openmetrics-text"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
            text = resp.read().decode()
        families = {f.name: f for f in openmetrics_families(text)}
        assert families["driftd_report"].type == "info"
        assert families["driftd_runs"].type == "counter"

    def test_metrics_without_reports(self, served: Served) -> None:
        """Before the first report /metrics still answers, without report samples."""
        s = self._samples(served)
        assert s[("driftd_latest_report_readable", ())] == 1
        assert not any(name.startswith("driftd_severity") for name, _ in s)


INVALID_IDS = [
    "../../etc/passwd",
    "..%2F..%2Fetc%2Fpasswd",
    "%2e%2e",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "..",
    "x" * 300,
    "20261126.json",
    "20261126%2Ejson",
    "a%00b",
    "a%5Cb",
    "a\\b",
    "20261126%0A",
    "%FF%FE",
    "20261126%2F..%2F20261125",
]


class TestIdValidation:
    @pytest.mark.parametrize("raw", INVALID_IDS)
    @pytest.mark.parametrize("suffix", ["", "/html"])
    def test_invalid_id_is_404_without_touching_files(
        self, served: Served, raw: str, suffix: str
    ) -> None:
        """A malformed or traversing id is a 404 and the provider is never asked for a path."""
        write_report(served.reports, make_report("20261126"))
        answer = request(served.base + f"{API}/report/{raw}{suffix}")
        assert answer.status == 404
        assert "error" in answer.json()
        assert served.provider.report_path_calls == []

    def test_raw_nul_and_backslash_rejected(self, served: Served) -> None:
        """Control bytes and backslashes sent unencoded on the wire are rejected the same way."""
        for target in (b"/api/v1/monitoring/report/a\x00b", b"/api/v1/monitoring/report/..\\x"):
            answer = raw_request(served.host, served.port, target)
            assert answer.split(b"\r\n", 1)[0].split(b" ")[1] in (b"400", b"404")
            assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]
        assert served.provider.report_path_calls == []


class TestMethodsAndPaths:
    @pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
    @pytest.mark.parametrize("path", ["/healthz", "/metrics", f"{API}/latest",
                                      f"{API}/report/20261126"])
    def test_writes_are_405(self, served: Served, method: str, path: str) -> None:
        """The API is read-only: writing methods answer 405 with Allow: GET, HEAD."""
        write_report(served.reports, make_report("20261126"))
        answer = request(served.base + path, method=method, data=b"{}")
        assert answer.status == 405
        assert answer.headers["Allow"] == "GET, HEAD"
        assert "read-only" in answer.json()["error"]
        assert (served.reports / "monitor_report_20261126.json").exists()

    @pytest.mark.parametrize("path", ["/", "/api/v1/monitoring", f"{API}/report/",
                                      f"{API}/report/20261126/pdf", "/healthz/", "/metricsx",
                                      f"{API}/generate-baseline"])
    def test_unknown_paths_are_404(self, served: Served, path: str) -> None:
        """Paths that are not an endpoint answer a JSON 404."""
        answer = request(served.base + path)
        assert answer.status == 404 and "error" in answer.json()


class TestLifecycle:
    def test_stop_closes_the_port(self, tmp_path: Path) -> None:
        """After stop() the port refuses connections."""
        provider = FileStatusProvider(tmp_path, None, None, DaemonState(started_at=T0))
        with StatusServer("127.0.0.1:0", provider) as server:
            host, port = server.address
            assert request(f"http://{host}:{port}/healthz").status == 503
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((host, port), timeout=5).close()

    def test_off_starts_nothing(self, tmp_path: Path) -> None:
        """An empty or "off" listen address starts no server."""
        provider = FileStatusProvider(tmp_path, None, None, DaemonState(started_at=T0))
        assert start_status_server("", provider) is None
        assert start_status_server("off", provider) is None

    @pytest.mark.parametrize("listen", ["8000", "localhost", ":8000", "127.0.0.1:http",
                                        "127.0.0.1:70000", "::1:8000", "127.0.0.1:"])
    def test_malformed_listen_refused(self, listen: str) -> None:
        """A listen address that is not host:port is a ValueError naming the setting."""
        with pytest.raises(ValueError, match=r"\[http\] listen"):
            parse_listen(listen)

    def test_listen_forms(self) -> None:
        """IPv4, IPv6 in brackets and hostnames parse to (host, port)."""
        assert parse_listen("127.0.0.1:8000") == ("127.0.0.1", 8000)
        assert parse_listen("[::1]:9100") == ("::1", 9100)
        assert parse_listen("localhost:0") == ("localhost", 0)

    def test_port_in_use_names_the_address(self, served: Served) -> None:
        """Binding a taken port fails with an OSError naming the listen setting."""
        provider = FileStatusProvider(served.reports, None, None, served.state)
        with pytest.raises(OSError, match=r"\[http\] listen"):
            StatusServer(f"127.0.0.1:{served.port}", provider).start()


class TestRealReport:
    def test_report_from_dataset_analyzer(
        self, served: Served, image_folder: Callable[..., Path]
    ) -> None:
        """A report produced by a real DatasetAnalyzer run is summarised, served and scraped."""
        dataset = pytest.importorskip("analyzer.dataset")
        baseline_dir = image_folder("baseline", n=30, seed=0)
        current_dir = image_folder("20261126", n=30, seed=1, brightness=1.6)
        baseline = dataset.DatasetAnalyzer(baseline_dir, workers=1).analyze()
        typed = dataset.DatasetAnalyzer(
            current_dir, workers=1, now=T0, report_id="20261126"
        ).drift_report(baseline)
        report = typed.to_dict()
        files = ReportFiles(served.reports)
        files.write_json("20261126", typed)
        render = pytest.importorskip("analyzer.render")
        files.write_html("20261126", render.render_html(typed))

        latest = request(served.base + f"{API}/latest").json()
        assert latest["report_id"] == "20261126"
        assert latest["severity_level"] == report["overall_severity"]
        assert latest["drift_detected"] == report["overall_drift_detected"]
        assert latest["images_analyzed"] == 30
        assert latest["metrics"]["pixel_mean_shift"] == pytest.approx(
            report["pixel_distribution_drift"]["overall_mean_shift"])
        stored = request(served.base + f"{API}/report/20261126").json()
        assert stored["report_id"] == "20261126"
        html = request(served.base + f"{API}/report/20261126/html")
        assert html.status == 200 and b"<html" in html.body.lower()
        assert b"<script" not in html.body.lower()  # the CSP forbids scripts

        answer = request(served.base + "/metrics")
        families = {f.name: f for f in text_string_to_metric_families(answer.body.decode())}
        rank = families["driftd_severity_rank"].samples[0].value
        assert rank == ["none", "low", "medium", "high"].index(report["overall_severity"])
        features = {s.labels["feature"] for s in families["driftd_test_p_value"].samples}
        assert {t["feature"] for t in report["pixel_distribution_drift"]["tests"]} <= features
