"""A fresh machine runs README's test command to a pass: missing system parts skip, with the
command that installs them, and README lists every one of them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.fixtures import system

ROOT = Path(__file__).resolve().parent.parent

NEEDING = [
    "tests/test_bench_detection.py",
    "tests/analyzer/test_html_browser.py",
    "tests/daemon/test_systemd.py",
    "tests/analyzer/test_pixels.py::test_kernel_is_built_where_a_compiler_is",
    "tests/sinks/test_store.py",
    "tests/test_lint.py::test_ruff_reports_nothing",
]
"""A test file (or test) per optional part, plus the ruff gate."""


def _pytest(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    # PATH without the venv's bin folder: what `.venv/bin/python -m pytest` sees when the
    # venv is not activated. Inherited DRIFTD_TEST_* settings would change what is checked.
    base = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTD_TEST_")}
    base["PATH"] = os.pathsep.join(
        p for p in base.get("PATH", "/usr/bin:/bin").split(os.pathsep)
        if Path(p) != Path(sys.executable).parent
    )
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *args],
        cwd=ROOT, env={**base, **env}, capture_output=True, text=True, timeout=600,
    )


def test_without_any_optional_part_the_tests_skip_with_install_hints() -> None:
    """With every optional part missing, nothing errors or fails; each skip names its
    `apt-get install` command, and ruff still runs from the venv."""
    result = _pytest(*NEEDING, **{system.HIDE_ENV: "all"})
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    summary = out.strip().splitlines()[-1]
    assert "error" not in summary and "failed" not in summary, summary
    assert re.search(r"\d+ skipped", summary), summary
    for part in system.PARTS.values():
        assert f"`{part.hint}`" in out, f"no skip names {part.hint!r}:\n{out}"
    assert "test_ruff_reports_nothing" not in out, out  # it ran and passed, no skip line


def test_ci_mode_turns_a_missing_part_into_a_failure() -> None:
    """Under DRIFTD_TEST_REQUIRE_ALL (set by .ci/run) a missing part fails the test."""
    result = _pytest("tests/daemon/test_systemd.py", **{
        system.HIDE_ENV: "systemd-analyze", system.REQUIRE_ALL_ENV: "1"})
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert f"{system.REQUIRE_ALL_ENV} is set but systemd-analyze is not installed" in out


def test_readme_lists_every_optional_package() -> None:
    """README's "Optional system packages" table names each part's packages."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Optional system packages", 1)[1].split("\n## ", 1)[0]
    for part in system.PARTS.values():
        assert f"`{part.packages}`" in section, part.packages


def test_ci_installs_every_optional_package() -> None:
    """.ci/run installs each part's packages, so CI runs every test."""
    script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    for part in system.PARTS.values():
        for package in part.packages.split():
            assert re.search(rf"need_apt\+=\([^)]*\b{re.escape(package)}\b", script), package
    assert f"export {system.REQUIRE_ALL_ENV}=1" in script
