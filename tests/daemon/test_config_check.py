"""`driftd config check` checks the deployment, as the user that runs it: production folder
listable, state folder writable, baseline a real profile, model loadable and matching.

The service runs as its own unprivileged user, and root reads and writes past any permission
bits (CAP_DAC_OVERRIDE), so when the tests run as root the CLI runs without the two
capabilities that let it (dropped from the bounding set before exec): like any other user,
it then gets only what the permission bits give it. Otherwise it runs as the current user.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from analyzer.dataset import DatasetAnalyzer
from tests.daemon.conftest import ROOT, cli_env
from tests.fixtures.images import write_images

MODEL = ROOT / "models" / "demo_classifier.tflite"
OTHER_MODEL = ROOT / "tests" / "analyzer" / "data" / "logits_rgb.tflite"
"""A valid classifier whose classes differ from the demo model's."""
PR_CAPBSET_DROP = 24
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 1, 2


def _without_permission_override() -> None:
    """(In the child, before exec.) Drop root's right to ignore permission bits."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


@pytest.fixture(scope="module")
def shared() -> Iterator[Path]:
    """A world-readable folder with a night of images and a baseline built with the model."""
    base = Path(tempfile.mkdtemp(prefix="driftd-check-"))
    base.chmod(0o755)
    write_images(base / "production" / "20261126", 30, seed=1)
    write_images(base / "validation", 40, seed=0)
    baseline = DatasetAnalyzer(base / "validation", model_path=MODEL, workers=1,
                               progress="off").analyze()
    (base / "baseline.json").write_text(json.dumps(baseline), encoding="utf-8")
    plain = DatasetAnalyzer(base / "validation", workers=1, progress="off").analyze()
    (base / "baseline-no-model.json").write_text(json.dumps(plain), encoding="utf-8")
    for path in base.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def preexec() -> Callable[[], None] | None:
    """What runs in the CLI's process before exec: drop root's permission override (and skip
    where this machine does not let root drop it); nothing for another user."""
    if os.geteuid() != 0:
        return None
    try:
        subprocess.run(["true"], preexec_fn=_without_permission_override, check=True)
    except (OSError, subprocess.SubprocessError) as err:
        pytest.skip(f"running as root and cannot drop CAP_DAC_OVERRIDE here ({err}); "
                    "run the tests as an ordinary user")
    return _without_permission_override


@pytest.fixture
def deployment(shared: Path, preexec: Callable[[], None] | None
               ) -> Iterator[Callable[..., subprocess.CompletedProcess[str]]]:
    """``check(**data/model overrides)`` writes a config in a fresh folder whose state
    folder the CLI's user owns, runs ``config check --quiet`` as that user, returns it."""
    home = Path(tempfile.mkdtemp(prefix="driftd-deploy-"))
    home.chmod(0o755)
    (home / "state").mkdir()

    def check(**overrides: str) -> subprocess.CompletedProcess[str]:
        values = {
            "production_root": str(shared / "production"),
            "baseline": str(shared / "baseline.json"),
            "state_dir": str(home / "state"),
            "model": str(MODEL),
        } | overrides
        config = home / "config.toml"
        model_line = f'path = "{values["model"]}"' if values["model"] else ""
        config.write_text(
            f'[data]\nproduction_root = "{values["production_root"]}"\n'
            f'baseline = "{values["baseline"]}"\nstate_dir = "{values["state_dir"]}"\n'
            f'[model]\n{model_line}\n[logging]\nformat = "json"\n',
            encoding="utf-8",
        )
        config.chmod(0o644)
        return subprocess.run(
            [sys.executable, "-m", "daemon.cli", "--config", str(config), "config", "check",
             "--quiet"],
            cwd=ROOT, env=cli_env(HOME=str(home)), capture_output=True, text=True,
            timeout=120, preexec_fn=preexec,
        )

    yield check
    shutil.rmtree(home, ignore_errors=True)


def _fails_on(result: subprocess.CompletedProcess[str], key: str, *words: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line.strip() for line in result.stderr.splitlines()]
    hits = [line for line in lines if line.startswith(f"{key}: ")]
    assert hits, result.stderr
    for word in words:
        assert word in hits[0], hits[0]
    assert "fatal problem" in result.stderr


class TestConfigCheck:
    def test_a_working_deployment_passes(self, deployment: Callable[..., Any]) -> None:
        """Listable images, a writable state folder, a real baseline and model: exit 0."""
        result = deployment()
        assert result.returncode == 0, result.stderr
        assert "configuration OK" in result.stderr
        assert "warning" not in result.stderr

    def test_unreadable_production_root_is_fatal(self, deployment: Callable[..., Any]) -> None:
        """A production folder the user cannot list names the key, the folder and the user."""
        private = Path(tempfile.mkdtemp(prefix="driftd-private-"))
        try:
            (private / "20261126").mkdir()
            private.chmod(0o000)
            result = deployment(production_root=str(private))
        finally:
            private.chmod(0o700)
            shutil.rmtree(private, ignore_errors=True)
        _fails_on(result, "data.production_root", str(private), "permission denied")

    def test_missing_production_root_is_fatal(self, deployment: Callable[..., Any],
                                              shared: Path) -> None:
        """A production folder that does not exist is named."""
        _fails_on(deployment(production_root=str(shared / "nope")), "data.production_root",
                  "does not exist")

    def test_state_dir_that_cannot_be_written_is_fatal(self, deployment: Callable[..., Any],
                                                       shared: Path) -> None:
        """A state folder the user cannot write, or cannot create, is fatal."""
        locked = Path(tempfile.mkdtemp(prefix="driftd-locked-"))
        try:
            locked.chmod(0o555)
            _fails_on(deployment(state_dir=str(locked)), "data.state_dir", "not writable")
            _fails_on(deployment(state_dir=str(locked / "var")), "data.state_dir",
                      "cannot be created")
        finally:
            shutil.rmtree(locked, ignore_errors=True)

    def test_missing_baseline_is_fatal(self, deployment: Callable[..., Any],
                                       shared: Path) -> None:
        """No baseline file: the message says how to build one."""
        _fails_on(deployment(baseline=str(shared / "missing.json")), "data.baseline",
                  "not found", "driftd baseline DIR")

    @pytest.mark.parametrize(("content", "reason"), [
        ("{}", "not a driftd profile"),
        ("not json at all", "not JSON"),
        ('{"kind": "driftd.profile", "version": 999}', "not supported"),
    ])
    def test_empty_or_invalid_baseline_is_fatal(self, deployment: Callable[..., Any],
                                                content: str, reason: str) -> None:
        """An empty `{}`, a non-JSON file or a foreign version is not a baseline."""
        bad = Path(tempfile.mkdtemp(prefix="driftd-bad-")) / "baseline.json"
        bad.parent.chmod(0o755)
        bad.write_text(content, encoding="utf-8")
        bad.chmod(0o644)
        try:
            _fails_on(deployment(baseline=str(bad)), "data.baseline", reason)
        finally:
            shutil.rmtree(bad.parent, ignore_errors=True)

    def test_missing_model_is_fatal(self, deployment: Callable[..., Any],
                                    shared: Path) -> None:
        """A model path that does not exist is named."""
        _fails_on(deployment(model=str(shared / "model.tflite")), "model.path",
                  "does not exist")

    def test_corrupt_model_is_fatal(self, deployment: Callable[..., Any]) -> None:
        """A truncated .tflite file does not load in the interpreter."""
        folder = Path(tempfile.mkdtemp(prefix="driftd-model-"))
        folder.chmod(0o755)
        broken = folder / "model.tflite"
        broken.write_bytes(MODEL.read_bytes()[:2000])
        broken.chmod(0o644)
        try:
            _fails_on(deployment(model=str(broken)), "model.path", str(broken))
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def test_model_whose_labels_differ_from_the_baseline_is_fatal(
        self, deployment: Callable[..., Any]
    ) -> None:
        """A model with other classes than the baseline's model would skip the model tests."""
        _fails_on(deployment(model=str(OTHER_MODEL)), "model.path", "classes",
                  "rebuild the baseline")

    def test_baseline_without_model_outputs_is_a_warning(self, deployment: Callable[..., Any],
                                                         shared: Path) -> None:
        """A baseline built without the configured model works, with a warning that says
        what is lost."""
        result = deployment(baseline=str(shared / "baseline-no-model.json"))
        assert result.returncode == 0, result.stderr
        assert "warning: data.baseline: was built without a model" in result.stderr

