"""The ``driftd`` command line.

Exit codes (every command): 0 success (``check``: no drift), 1 drift detected (``check``
only), 2 usage or configuration error (nothing was started), 3 runtime error — for ``run
--once``, ``backfill`` and ``retry`` also: a run-level fault, or any folder failed — and 141
stdout was closed by its reader (``driftd status | head -1``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from daemon.exit_codes import EXIT_CONFIG, EXIT_DRIFT, EXIT_OK, EXIT_PIPE, EXIT_RUNTIME

if TYPE_CHECKING:
    from analyzer.contract import DriftReport
    from analyzer.dataset import DatasetAnalyzer
    from daemon.config import Settings
    from daemon.scheduler import RunSummary

    Subcommands = argparse._SubParsersAction[argparse.ArgumentParser]

CONFIG_HELP = "config file (default: $DRIFTD_CONFIG, else ./config.toml)"
LOGS_ON_STDOUT = frozenset({"run"})
"""Commands that log to stdout (the daemon, for journald); the others log to stderr and keep
stdout for their output (see daemon.logs)."""


def build_parser() -> argparse.ArgumentParser:
    """The ``driftd`` argument parser; ``--config`` is accepted before or after the command."""
    # Each command takes --config too; SUPPRESS keeps a value given before the command.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS, help=CONFIG_HELP)
    parser = argparse.ArgumentParser(
        prog="driftd",
        description="Nightly drift monitor for image classifiers in production.",
        epilog="Exit codes: 0 ok / no drift, 1 drift detected (check), "
        "2 usage or configuration error, 3 runtime error (run --once, backfill, retry: "
        "also when any folder failed), 141 stdout closed by its reader. "
        "--config may also follow the command.",
    )
    parser.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(parent: Subcommands, name: str, summary: str, details: str = ""
                ) -> argparse.ArgumentParser:
        return parent.add_parser(name, help=summary, parents=[common],
                                 description=f"{summary}. {details}".strip())

    run = command(sub, "run", "run the daemon (catch up now, then on the cron schedule)",
                  "Logs JSON lines on stdout (journald); stops cleanly on SIGTERM.")
    run.add_argument("--once", action="store_true",
                     help="process what is pending now, then exit (no scheduler)")

    baseline = command(sub, "baseline", "build the baseline from DIR into [data].baseline",
                       "Profiles every image under DIR (with [model].path when set) and saves "
                       "the profile that every night is compared with.")
    baseline.add_argument("dir", type=_location, metavar="DIR",
                          help="folder of images the model is known to do well on (or a "
                               "URL such as s3://bucket/validation)")
    baseline.add_argument("--labels", type=Path, metavar="CSV",
                          help="true class of DIR's images, one 'file,label' row each (file: "
                          "path inside DIR; label: class name or 0-based index): calibrates "
                          "the nightly accuracy estimate (needs [model].path)")

    check = command(sub, "check", "compare any folder with a baseline now; exit 1 on drift",
                    "Writes the JSON and HTML report and prints a summary. Works without a "
                    "config file when --baseline is given.")
    check.add_argument("dir", type=_location, metavar="DIR",
                       help="folder (or URL) of images to check")
    check.add_argument("--baseline", type=_location, metavar="FILE",
                       help="baseline profile to compare with (default: [data].baseline)")
    check.add_argument("--model", type=Path, metavar="FILE",
                       help=".tflite classifier (default: [model].path; none without a config)")
    check.add_argument("--out", type=Path, metavar="DIR",
                       help="where to write the report (default: [data].reports_dir with a "
                            "config, else the current folder)")
    check.add_argument("--report-id", metavar="ID",
                       help="report id in the file names (default: check-<UTC time>)")

    retry = command(sub, "retry",
                    "give failed (or given-up) dates fresh attempts and process them now",
                    "Use it after fixing what made those nights fail.")
    retry.add_argument("dates", nargs="+", type=_day, metavar="YYYY-MM-DD",
                       help="dates of the nights to retry")

    backfill = command(sub, "backfill", "reprocess dates, ignoring the run ledger",
                       "Reports and metric rows are replaced; alerts already sent are not sent "
                       "again.")
    backfill.add_argument("--from", dest="start", required=True, type=_day,
                          metavar="YYYY-MM-DD", help="first date to reprocess")
    backfill.add_argument("--to", dest="end", required=True, type=_day, metavar="YYYY-MM-DD",
                          help="last date to reprocess (inclusive)")

    status = command(sub, "status",
                     "latest verdict, store health, pending writes, failed nights",
                     "Prints a summary for people; --json prints the same as JSON.")
    status.add_argument("--json", action="store_true",
                        help="print JSON (for scripts) instead of the summary")

    config = command(sub, "config", "configuration tools")
    config_sub = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    config_check = command(
        config_sub, "check", "validate the config and check that the daemon can do its job",
        "Prints the effective config (secrets masked), then checks, as the current user, "
        "that the production folder can be listed, the state and report folders written, the "
        "baseline read and the model loaded. Exit 2 on a fatal problem.")
    config_check.add_argument("--quiet", action="store_true",
                              help="print only problems (no effective config)")

    alerts = command(sub, "alerts", "alert tools")
    alerts_sub = alerts.add_subparsers(dest="alerts_command", required=True, metavar="ACTION")
    test = command(alerts_sub, "test", "send a test alert to every configured channel (or one)")
    test.add_argument("--channel", metavar="NAME",
                      help="only this channel: " + ", ".join(_testable_channels()))

    demo = command(sub, "demo", "end-to-end demo on bundled images and model",
                   "Needs no config file: builds one in --workdir.")
    demo.add_argument("--workdir", type=Path, default=Path("driftd-demo"), metavar="DIR",
                      help="where to build the demo (default: ./driftd-demo)")
    return parser


def _testable_channels() -> list[str]:
    from daemon.channels import CHANNELS

    return [name for name, channel in CHANNELS.items() if channel.TESTABLE]


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date; use YYYY-MM-DD") from None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``driftd`` console script; returns the exit code.

    A reader that closes stdout early (``driftd status | head -1``) ends the command quietly
    with exit code 141 (128 + SIGPIPE, what a shell reports for other tools), not a traceback.
    """
    try:
        return _main(argv)
    except BrokenPipeError:
        return _stdout_closed()


def _stdout_closed() -> int:
    # Python would try to flush stdout again at exit and print the same error; point the
    # descriptor at /dev/null so that final flush succeeds silently.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_PIPE


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        from daemon.demo import run_demo

        return run_demo(args.workdir, main)

    from daemon.config import ConfigError, secret_values
    from daemon.logs import configure_logging, get_logger

    try:
        settings = _settings(args)
    except ConfigError as err:
        print(f"driftd: {err}", file=sys.stderr)
        return EXIT_CONFIG
    redactor = configure_logging(
        settings.logging.level, settings.logging.format, secrets=secret_values(settings),
        stream=sys.stdout if args.command in LOGS_ON_STDOUT else sys.stderr,
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
    except BrokenPipeError:
        raise
    except Exception as err:
        get_logger().error("command.failed", command=args.command,
                           error=f"{type(err).__name__}: {err}")
        print(redactor.text(f"driftd {args.command}: {err}"), file=sys.stderr)
        return EXIT_RUNTIME


def _location(value: str) -> Path | str:
    """A DIR/FILE argument: a local path, or an fsspec URL kept as text."""
    return value.rstrip("/") if "://" in value and not value.startswith("file://") else Path(
        value.removeprefix("file://"))


def _settings(args: argparse.Namespace) -> Settings:
    """The settings for ``args``; ``check --baseline`` runs on defaults when no config file
    exists (none given, none in $DRIFTD_CONFIG, no ./config.toml)."""
    from daemon.config import build_settings, config_path, load_settings

    if args.command == "check" and args.baseline is not None and not args.config \
            and not config_path(None).exists():
        settings = build_settings({}, base_dir=Path.cwd())
        return _check_overrides(settings, args, default_out=Path.cwd())
    settings = load_settings(args.config)
    if args.command == "check":
        return _check_overrides(settings, args, default_out=settings.data.reports_path)
    return settings


def _check_overrides(settings: Settings, args: argparse.Namespace, default_out: Path
                     ) -> Settings:
    """``settings`` with ``check``'s --baseline, --model and --out applied."""
    data: dict[str, Path | str] = {"reports_dir": (args.out or default_out).resolve()}
    if args.baseline is not None:
        data["baseline"] = (args.baseline.resolve() if isinstance(args.baseline, Path)
                            else args.baseline)
    model: dict[str, Path | None] = {}
    if args.model is not None:
        model = {"path": args.model.resolve(), "labels_path": None}
    return settings.model_copy(update={
        "data": settings.data.model_copy(update=data),
        "model": settings.model.model_copy(update=model),
    })


def _run(settings: Settings, args: argparse.Namespace) -> int:
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


def _print_problem(command: str, summary: RunSummary, settings: Settings) -> None:
    from daemon.config import secret_values
    from daemon.redact import Redactor

    print(Redactor(secret_values(settings)).text(f"driftd {command}: {summary.problem}"),
          file=sys.stderr)


def _analyzer(settings: Settings, folder: Path | str, *, now: datetime | None = None,
              report_id: str | None = None, labels: Path | None = None) -> DatasetAnalyzer:
    from analyzer.dataset import DatasetAnalyzer
    from daemon.config import analyzer_kwargs

    model = settings.model.path
    return DatasetAnalyzer(
        folder, model_path=str(model) if model else None, now=now, report_id=report_id,
        labels=labels, **analyzer_kwargs(settings),
    )


def _baseline(settings: Settings, args: argparse.Namespace) -> int:
    from analyzer.accuracy import LabelsError
    from daemon.locations import write_bytes

    try:
        profile = _analyzer(settings, args.dir, labels=args.labels).profile()
    except LabelsError as err:
        # Bad input the user fixes (a row, a path): like a bad config value, exit 2.
        print(f"driftd baseline: --labels: {err}", file=sys.stderr)
        return EXIT_CONFIG
    data = json.dumps(profile.to_dict()).encode("utf-8")
    path = write_bytes(settings.data.baseline, data, settings.data.storage_options)
    calibration = profile.calibration
    labelled = ("" if calibration is None else
                f"; {calibration.images} labelled, accuracy {calibration.baseline_accuracy:.3f}")
    print(f"baseline of {profile.image_count} images written to {path}{labelled}")
    return EXIT_OK


def _check(settings: Settings, args: argparse.Namespace) -> int:
    from analyzer.errors import BaselineError, DatasetError, ModelError
    from analyzer.render import render_html
    from daemon.preflight import load_baseline_profile
    from sinks.files import REPORT_ID_RE, REPORT_ID_RULE, ReportFiles

    now = datetime.now(timezone.utc)
    report_id = args.report_id or f"check-{now:%Y%m%dT%H%M%SZ}"
    if not REPORT_ID_RE.fullmatch(report_id):
        print(f"driftd check: --report-id {report_id!r} is not a valid id: use "
              f"{REPORT_ID_RULE}", file=sys.stderr)
        return EXIT_CONFIG
    key = "--baseline" if args.baseline is not None else "data.baseline"
    baseline, problems = load_baseline_profile(settings.data.baseline, key,
                                               settings.data.storage_options)
    if baseline is None:
        print(f"driftd check: {problems[0]}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        report = _analyzer(settings, args.dir, now=now, report_id=report_id).drift_report(
            baseline)
    except (BaselineError, DatasetError, ModelError) as err:
        print(f"driftd check: {err}", file=sys.stderr)
        return EXIT_CONFIG
    files = ReportFiles(settings.data.reports_path)
    json_path = files.write_json(report_id, report)
    html_path = files.write_html(report_id, render_html(report))
    print(check_summary(str(args.dir), report))
    print(f"report: {json_path}\n        {html_path}")
    return EXIT_DRIFT if report.overall_drift_detected else EXIT_OK


def check_summary(folder: str, report: DriftReport) -> str:
    """The lines ``driftd check`` prints about ``report``: verdict, counts, largest changes."""
    from analyzer.severity import Severity

    drifted = report.overall_drift_detected
    lines = [
        f"{folder}: {'DRIFT' if drifted else 'no drift'} (severity "
        f"{report.overall_severity.value}), {report.current_image_count} images "
        f"against a baseline of {report.baseline_image_count}",
        f"  {report.drift_summary}",
    ]
    tests = sorted((t for t in report.tests if t.severity != Severity.NONE),
                   key=lambda t: -t.effect_size)
    if tests:
        lines.append("  largest changes: " + ", ".join(
            f"{t.feature} {t.severity.value} (effect {t.effect_size:.2f})" for t in tests[:5]))
    return "\n".join(lines)


def _backfill(settings: Settings, args: argparse.Namespace) -> int:
    from daemon.scheduler import Daemon

    if args.end < args.start:
        print("driftd backfill: --to is before --from", file=sys.stderr)
        return EXIT_CONFIG
    days = [args.start + timedelta(days=i) for i in range((args.end - args.start).days + 1)]
    daemon = Daemon(settings)
    daemon.install_signal_handlers()
    return _results("backfill", daemon.backfill(days), settings)


def _retry(settings: Settings, args: argparse.Namespace) -> int:
    """Fresh attempts for failed or given-up dates (done ones are left alone), run now."""
    from daemon.scheduler import Daemon

    daemon = Daemon(settings)
    daemon.install_signal_handlers()
    return _results("retry", daemon.backfill(sorted(set(args.dates)), retry=True), settings)


def _results(command: str, summary: RunSummary, settings: Settings) -> int:
    """Print one line per date of a ``backfill``/``retry`` run; its exit code."""
    if summary.error:
        _print_problem(command, summary, settings)
        return EXIT_RUNTIME
    for r in summary.results:
        print(f"{r.partition}  {r.status:9}  {r.severity or '-':6}  {r.error or ''}")
    return EXIT_RUNTIME if summary.count("failed") else EXIT_OK


def _status(settings: Settings, args: argparse.Namespace) -> int:
    """A summary for people, or ``--json`` for scripts (whether or not stdout is a TTY: the
    output does not change under a pipe, so a script never parses the summary by accident)."""
    from daemon.scheduler import status_report
    from daemon.status import format_status

    status = status_report(settings)
    print(json.dumps(status.to_dict(), indent=2, default=str) if args.json
          else format_status(status))
    return EXIT_OK


def _config_check(settings: Settings, args: argparse.Namespace) -> int:
    from daemon.config import config_path, effective_config
    from daemon.preflight import check_deployment, current_user, format_findings

    source = config_path(args.config)
    if not args.quiet:
        print(json.dumps(effective_config(settings), indent=2, default=str))
    findings = check_deployment(settings)
    fatal, warnings = format_findings(findings, source)
    if warnings:
        print(warnings, file=sys.stderr)
    if os.geteuid() == 0 and not args.quiet:
        print("driftd: note: checked as root, who may read and write where the service user "
              "cannot; under systemd the unit runs this check again as its own user before "
              "every start (ExecStartPre=)", file=sys.stderr)
    if fatal:
        print(fatal, file=sys.stderr)
        return EXIT_CONFIG
    print(f"configuration OK ({source}, checked as {current_user()})", file=sys.stderr)
    return EXIT_OK


def _alerts_test(settings: Settings, args: argparse.Namespace) -> int:
    from daemon.alerts import send_test_alert

    results = send_test_alert(settings.alerts, channel=args.channel)
    for channel, outcome in results.items():
        print(f"{channel}: {outcome}")
    return EXIT_OK if results and all(v == "sent" for v in results.values()) else EXIT_RUNTIME


if __name__ == "__main__":
    sys.exit(main())
