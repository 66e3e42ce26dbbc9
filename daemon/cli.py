"""The ``driftd`` command line.

Exit codes (every command): 0 success (``check``: no drift), 1 drift detected (``check``
only), 2 usage or configuration error (nothing was started), 3 runtime error — for ``run
--once``, ``backfill`` and ``retry`` also: a run-level fault, or any folder failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_DRIFT = 1
EXIT_CONFIG = 2
EXIT_RUNTIME = 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="driftd",
        description="Nightly drift monitor for image classifiers in production.",
        epilog="Exit codes: 0 ok / no drift, 1 drift detected (check), "
        "2 usage or configuration error, 3 runtime error (run --once, backfill, retry: "
        "also when any folder failed).",
    )
    parser.add_argument(
        "--config", metavar="FILE",
        help="config file (default: $DRIFTD_CONFIG, else ./config.toml)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the daemon (catch-up now, then on the cron schedule)")
    run.add_argument("--once", action="store_true", help="process what is pending, then exit")

    baseline = sub.add_parser("baseline", help="build the baseline from DIR into [data].baseline")
    baseline.add_argument("dir", type=Path)

    check = sub.add_parser("check", help="analyse any folder now; exit 1 when it drifted")
    check.add_argument("dir", type=Path)
    check.add_argument("--report-id", help="report id (default: check-<UTC time>)")

    backfill = sub.add_parser("backfill", help="reprocess dates, ignoring the run ledger")
    backfill.add_argument("--from", dest="start", required=True, type=_day, metavar="YYYY-MM-DD")
    backfill.add_argument("--to", dest="end", required=True, type=_day, metavar="YYYY-MM-DD")

    retry = sub.add_parser(
        "retry", help="give failed (or given-up) dates fresh attempts and process them now"
    )
    retry.add_argument("dates", nargs="+", type=_day, metavar="YYYY-MM-DD")

    sub.add_parser("status", help="latest verdicts, store outage, pending writes, failed folders")

    config = sub.add_parser("config", help="configuration tools")
    config_sub = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    config_sub.add_parser("check", help="validate and print the effective config (secrets masked)")

    alerts = sub.add_parser("alerts", help="alert tools")
    alerts_sub = alerts.add_subparsers(dest="alerts_command", required=True, metavar="ACTION")
    test = alerts_sub.add_parser("test", help="send a test alert to every channel (or one)")
    test.add_argument("--channel", help="slack, email, pagerduty or console")

    demo = sub.add_parser("demo", help="end-to-end demo on bundled images and model")
    demo.add_argument("--workdir", type=Path, default=Path("driftd-demo"))
    return parser


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date; use YYYY-MM-DD") from None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``driftd`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        from daemon.demo import run_demo

        return run_demo(args.workdir)

    from daemon.config import ConfigError, load_settings, secret_values
    from daemon.logs import configure_logging, get_logger

    try:
        settings = load_settings(args.config)
    except ConfigError as err:
        print(f"driftd: {err}", file=sys.stderr)
        return EXIT_CONFIG
    redactor = configure_logging(
        settings.logging.level, settings.logging.format, secrets=secret_values(settings)
    )
    for warning in settings.warnings:
        # stderr, not a log line on stdout: `status` and `config check` print JSON there.
        print(f"driftd: warning: {warning}", file=sys.stderr)
    commands = {
        "run": _run, "baseline": _baseline, "check": _check, "backfill": _backfill,
        "retry": _retry, "status": _status, "config": _config_check, "alerts": _alerts_test,
    }
    try:
        return int(commands[args.command](settings, args))
    except ConfigError as err:
        print(f"driftd: {err}", file=sys.stderr)
        return EXIT_CONFIG
    except Exception as err:
        get_logger().error("command.failed", command=args.command,
                           error=f"{type(err).__name__}: {err}")
        print(redactor.text(f"driftd {args.command}: {err}"), file=sys.stderr)
        return EXIT_RUNTIME


def _run(settings: Any, args: argparse.Namespace) -> int:
    from daemon.scheduler import Daemon

    daemon = Daemon(settings)
    if not args.once:
        return daemon.serve()
    daemon.install_signal_handlers()
    summary = daemon.run_pending()
    if not summary.ok:
        _print_problem("run --once", summary, settings)
        return EXIT_RUNTIME
    return EXIT_OK


def _print_problem(command: str, summary: Any, settings: Any) -> None:
    from daemon.config import secret_values
    from daemon.redact import Redactor

    print(Redactor(secret_values(settings)).text(f"driftd {command}: {summary.problem}"),
          file=sys.stderr)


def _analyzer(settings: Any, folder: Path, **extra: Any) -> Any:
    from analyzer.dataset import DatasetAnalyzer
    from daemon.config import analyzer_kwargs

    model = settings.model.path
    return DatasetAnalyzer(
        folder, model_path=str(model) if model else None, **analyzer_kwargs(settings), **extra
    )


def _baseline(settings: Any, args: argparse.Namespace) -> int:
    from sinks.files import atomic_write_bytes

    baseline = _analyzer(settings, args.dir).analyze()
    path = atomic_write_bytes(settings.data.baseline, json.dumps(baseline).encode("utf-8"))
    count = baseline.get("dataset_info", {}).get("image_count")
    print(f"baseline of {count} images written to {path}")
    return EXIT_OK


def _check(settings: Any, args: argparse.Namespace) -> int:
    from analyzer.html import generate_html_report
    from daemon.pipeline import Pipeline
    from sinks.files import REPORT_ID_RE, REPORT_ID_RULE, ReportFiles

    now = datetime.now(timezone.utc)
    report_id = args.report_id or f"check-{now:%Y%m%dT%H%M%SZ}"
    if not REPORT_ID_RE.fullmatch(report_id):
        print(f"driftd check: --report-id {report_id!r} is not a valid id: use "
              f"{REPORT_ID_RULE}", file=sys.stderr)
        return EXIT_CONFIG
    baseline = Pipeline(settings).load_baseline()
    report = _analyzer(settings, args.dir, now=now, report_id=report_id).detect_drift(baseline)
    files = ReportFiles(settings.data.reports_path)
    json_path = files.write_json(report_id, report)
    html_path = files.write_html(report_id, lambda p: generate_html_report(report, p))
    print(f"{args.dir}: {report.get('drift_summary', '')}")
    print(f"severity: {report.get('overall_severity')}  "
          f"drift: {report.get('overall_drift_detected')}  "
          f"images: {report.get('current_image_count')}")
    print(f"report: {json_path}\n        {html_path}")
    return EXIT_DRIFT if report.get("overall_drift_detected") else EXIT_OK


def _backfill(settings: Any, args: argparse.Namespace) -> int:
    from daemon.scheduler import Daemon

    if args.end < args.start:
        print("driftd backfill: --to is before --from", file=sys.stderr)
        return EXIT_CONFIG
    days = [args.start + timedelta(days=i) for i in range((args.end - args.start).days + 1)]
    daemon = Daemon(settings)
    daemon.install_signal_handlers()
    summary = daemon.backfill(days)
    if summary.error:
        _print_problem("backfill", summary, settings)
        return EXIT_RUNTIME
    for r in summary.results:
        print(f"{r.partition}  {r.status:9}  {r.severity or '-':6}  {r.error or ''}")
    return EXIT_RUNTIME if summary.count("failed") else EXIT_OK


def _retry(settings: Any, args: argparse.Namespace) -> int:
    """Fresh attempts for failed or given-up dates (done ones are left alone), run now."""
    from daemon.scheduler import Daemon

    daemon = Daemon(settings)
    daemon.install_signal_handlers()
    summary = daemon.backfill(sorted(set(args.dates)), retry=True)
    if summary.error:
        _print_problem("retry", summary, settings)
        return EXIT_RUNTIME
    for r in summary.results:
        print(f"{r.partition}  {r.status:9}  {r.severity or '-':6}  {r.error or ''}")
    return EXIT_RUNTIME if summary.count("failed") else EXIT_OK


def _status(settings: Any, args: argparse.Namespace) -> int:
    from daemon.scheduler import status_report

    print(json.dumps(status_report(settings), indent=2, default=str))
    return EXIT_OK


def _config_check(settings: Any, args: argparse.Namespace) -> int:
    from daemon.config import effective_config

    print(json.dumps(effective_config(settings), indent=2, default=str))
    print("configuration OK", file=sys.stderr)
    return EXIT_OK


def _alerts_test(settings: Any, args: argparse.Namespace) -> int:
    from daemon.alerts import send_test_alert

    results = send_test_alert(settings.alerts, channel=args.channel)
    for channel, outcome in results.items():
        print(f"{channel}: {outcome}")
    return EXIT_OK if results and all(v == "sent" for v in results.values()) else EXIT_RUNTIME


if __name__ == "__main__":
    sys.exit(main())
