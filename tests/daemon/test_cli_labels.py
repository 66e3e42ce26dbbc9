"""``driftd baseline DIR --labels labels.csv`` through the real CLI and the demo model."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

from tests.daemon.conftest import ROOT, driftd

MODEL = ROOT / "models" / "demo_classifier.tflite"
IMAGES = sorted((ROOT / "daemon" / "demo" / "images").glob("*.png"))[:120]


def _setup(tmp_path: Path, config_file: Callable[..., Path]) -> tuple[Path, Path]:
    folder = tmp_path / "validation"
    folder.mkdir()
    rows = ["file,label"]
    for path in IMAGES:
        shutil.copy(path, folder / path.name)
        # the demo images are named after their class: 00001_sandal.png → Sandal
        slug = path.stem.split("_", 1)[1]
        label = {"t-shirt-top": "T-shirt/top", "ankle-boot": "Ankle boot"}.get(
            slug, slug.capitalize())
        rows.append(f"{path.name},{label}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    config = config_file(f'\n[model]\npath = "{MODEL}"\n')
    return config, folder


def test_labelled_baseline_is_written_with_its_calibration(
        tmp_path: Path, config_file: Callable[..., Path]) -> None:
    """Exit 0; the baseline holds the labelled images' calibration; the summary says so."""
    config, folder = _setup(tmp_path, config_file)
    result = driftd("--config", str(config), "baseline", str(folder), "--labels",
                    str(tmp_path / "labels.csv"))
    assert result.returncode == 0, result.stderr
    assert "120 labelled, accuracy 0." in result.stdout
    baseline = json.loads((tmp_path / "var" / "baseline.json").read_text())
    assert sum(baseline["accuracy_calibration"]["count"]) == 120


def test_a_bad_row_exits_2_naming_the_line(tmp_path: Path,
                                           config_file: Callable[..., Path]) -> None:
    """A label that is no class of the model: exit 2, the line named, no baseline written."""
    config, folder = _setup(tmp_path, config_file)
    labels = tmp_path / "labels.csv"
    lines = labels.read_text().splitlines()
    lines[5] = lines[5].split(",")[0] + ",Hat"
    labels.write_text("\n".join(lines) + "\n")
    result = driftd("--config", str(config), "baseline", str(folder), "--labels", str(labels))
    assert result.returncode == 2
    assert "line 6: 'Hat'" in result.stderr and "--labels" in result.stderr
    assert not (tmp_path / "var" / "baseline.json").exists()
