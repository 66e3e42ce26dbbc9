"""The command line as a person and a script use it: pipes, option order, help, output."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from analyzer.dataset import DatasetAnalyzer
from daemon.cli import build_parser
from tests.daemon.conftest import ROOT, cli_env, driftd
from tests.daemon.report_samples import make_report, write_report
from tests.fixtures.images import write_images

MODEL = ROOT / "models" / "demo_classifier.tflite"


def _closed_stdout(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run the CLI with a stdout whose reader is already gone (``| head -1`` after it quit)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [sys.executable, "-m", "daemon.cli", *args], cwd=cwd, env=cli_env(),
            stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120,
        )
    finally:
        os.close(write_end)


@pytest.fixture
def nightly(config_file: Callable[..., Path], tmp_path: Path) -> Path:
    """A config whose reports folder holds one nightly report (high drift on 2026-11-26)."""
    config = config_file()
    reports = tmp_path / "var" / "reports"
    reports.mkdir(parents=True)
    write_report(reports, make_report("20261126"))
    return config


class TestPipes:
    @pytest.mark.parametrize("args", [
        ("status",), ("status", "--json"), ("config", "check"), ("--help",), ("status", "-h"),
    ], ids=" ".join)
    def test_a_closed_pipe_ends_quietly(self, nightly: Path, args: tuple[str, ...]) -> None:
        """`driftd status | head -1`: no BrokenPipeError traceback, exit 0 or 141 (SIGPIPE)."""
        result = _closed_stdout("--config", str(nightly), *args)
        assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr, \
            result.stderr
        assert result.returncode in (0, 141), result.stderr


class TestOptions:
    def test_config_is_accepted_after_the_command(self, nightly: Path) -> None:
        """`driftd status --config FILE` works like `driftd --config FILE status`."""
        after = driftd("status", "--json", "--config", str(nightly))
        before = driftd("--config", str(nightly), "status", "--json")
        assert after.returncode == 0, after.stderr
        assert json.loads(after.stdout) == json.loads(before.stdout)
        nested = driftd("config", "check", "--quiet", "--config", str(nightly))
        assert "unrecognized arguments" not in nested.stderr

    def test_every_argument_of_every_command_is_described(self) -> None:
        """`driftd COMMAND --help` describes each argument, not just names it."""
        def walk(parser: argparse.ArgumentParser, path: str) -> list[str]:
            missing = []
            for action in parser._actions:
                if isinstance(action, argparse._SubParsersAction):
                    for name, child in action.choices.items():
                        missing += walk(child, f"{path} {name}")
                elif not action.help:
                    missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
            return missing

        assert walk(build_parser(), "driftd") == []


class TestStatus:
    def test_status_prints_a_summary_for_people(self, nightly: Path) -> None:
        """Without --json: the night, the verdict and the headline numbers, in words."""
        result = driftd("--config", str(nightly), "status")
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("latest night: 2026-11-26  DRIFT (severity high)")
        assert "pixel mean shift 0.083" in result.stdout
        assert "metric store:" in result.stdout
        with pytest.raises(json.JSONDecodeError):
            json.loads(result.stdout)

    def test_status_json_parses_with_debug_logs_on(self, config_file: Callable[..., Path],
                                                   tmp_path: Path) -> None:
        """--json output is JSON alone: logs (debug level) go to stderr."""
        config = config_file('level = "debug"\n')
        (tmp_path / "var" / "reports").mkdir(parents=True)
        write_report(tmp_path / "var" / "reports", make_report("20261126"))
        result = driftd("--config", str(config), "status", "--json")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["latest"]["severity_level"] == "high"


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A baseline profile (with the demo model), a normal folder and a darkened one."""
    root = tmp_path_factory.mktemp("check")
    write_images(root / "validation", 60, seed=0)
    write_images(root / "normal", 60, seed=1)
    write_images(root / "dark", 60, seed=2, brightness=0.5)
    profile = DatasetAnalyzer(root / "validation", model_path=MODEL, workers=1,
                              progress="off").analyze()
    (root / "baseline.json").write_text(json.dumps(profile), encoding="utf-8")
    return root


class TestCheck:
    def _check(self, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "daemon.cli", "check", *args], cwd=cwd, env=cli_env(),
            capture_output=True, text=True, timeout=300,
        )

    def test_check_against_a_saved_baseline_needs_no_config(self, folders: Path,
                                                           tmp_path: Path) -> None:
        """`driftd check DIR --baseline FILE --model M` in a folder without config.toml:
        exit 0 on a normal folder, 1 on a darkened one; reports in the current folder; the
        summary on stdout, logs on stderr."""
        assert not (tmp_path / "config.toml").exists()
        normal = self._check(tmp_path, str(folders / "normal"), "--baseline",
                             str(folders / "baseline.json"), "--model", str(MODEL),
                             "--report-id", "normal")
        assert normal.returncode == 0, normal.stderr
        assert "no drift" in normal.stdout
        assert (tmp_path / "monitor_report_normal.json").is_file()
        assert (tmp_path / "monitor_report_normal.html").is_file()
        assert '"event"' not in normal.stdout

        dark = self._check(tmp_path, str(folders / "dark"), "--baseline",
                           str(folders / "baseline.json"), "--model", str(MODEL),
                           "--out", "out", "--report-id", "dark")
        assert dark.returncode == 1, dark.stderr
        assert "DRIFT" in dark.stdout and "brightness" in dark.stdout
        report = json.loads((tmp_path / "out" / "monitor_report_dark.json").read_text())
        assert report["confidence_drift"]["available"] is True

    @pytest.mark.parametrize(("content", "reason"), [
        (None, "not found"), ("{}", "not a driftd profile")])
    def test_a_missing_or_empty_baseline_is_a_usage_error(
        self, folders: Path, tmp_path: Path, content: str | None, reason: str
    ) -> None:
        """A --baseline that is missing or `{}` exits 2 naming the option and the file."""
        baseline = tmp_path / "baseline.json"
        if content is not None:
            baseline.write_text(content)
        result = self._check(tmp_path, str(folders / "normal"), "--baseline", str(baseline))
        assert result.returncode == 2, result.stderr
        assert f"--baseline: {baseline}" in result.stderr and reason in result.stderr
        assert "Traceback" not in result.stderr
