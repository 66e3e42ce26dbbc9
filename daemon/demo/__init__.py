"""``driftd demo``: the quick start, end to end on the bundled images and model.

Builds a work folder with a baseline of ~300 real Fashion-MNIST images, four dated
production folders (the four days before today, ~100 images each, each with ``_SUCCESS``;
the third one darkened, noisy and blurred, the fourth recovered), a demo ``config.toml``
(SQLite, console alerts, bundled model), then runs ``driftd baseline`` and ``driftd run --once``
and prints what happened.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from daemon.defaults import STATE_DB_NAME
from daemon.exit_codes import EXIT_OK, EXIT_RUNTIME
from daemon.state import Outbox
from sinks.files import ReportFiles

HERE = Path(__file__).resolve().parent
POOL = HERE / "images"
MODEL_DIR = HERE / "model"

BASELINE_IMAGES = 300
IMAGES_PER_DAY = 100
DAYS = 4
DRIFTED_DAY = 2
"""Index (0 = oldest) of the folder whose images are degraded like a failing camera."""

SEED = 20261126


def degrade(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Darkened, blurred and noisy: what a dirty lens in bad light does to a picture."""
    image = ImageEnhance.Brightness(image).enhance(0.55)
    image = image.filter(ImageFilter.GaussianBlur(1.0))
    pixels = np.asarray(image, dtype=np.float64)
    noisy = pixels + rng.normal(0.0, 18.0, pixels.shape)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def build_workdir(workdir: Path, today: date) -> Path:
    """Create the demo's folders and config under ``workdir``; returns the config path.

    Raises ``FileNotFoundError`` when the bundled image pool is missing (a broken install).
    """
    pool = sorted(POOL.glob("*.png"))
    if len(pool) < BASELINE_IMAGES + IMAGES_PER_DAY:
        raise FileNotFoundError(
            f"the demo image pool {POOL} has {len(pool)} images; need "
            f"{BASELINE_IMAGES + IMAGES_PER_DAY} (reinstall driftd)"
        )
    for name in ("baseline", "production", "var"):
        shutil.rmtree(workdir / name, ignore_errors=True)
    rng = np.random.default_rng(SEED)
    order = rng.permutation(len(pool))
    baseline_dir = workdir / "baseline"
    baseline_dir.mkdir(parents=True)
    for i in order[:BASELINE_IMAGES]:
        shutil.copyfile(pool[i], baseline_dir / pool[i].name)
    rest = order[BASELINE_IMAGES:]
    for index in range(DAYS):
        day = today - timedelta(days=DAYS - index)
        folder = workdir / "production" / day.strftime("%Y%m%d")
        folder.mkdir(parents=True)
        for i in rng.choice(rest, size=min(IMAGES_PER_DAY, len(rest)), replace=False):
            if index == DRIFTED_DAY:
                with Image.open(pool[i]) as image:
                    degrade(image.copy(), rng).save(folder / pool[i].name)
            else:
                shutil.copyfile(pool[i], folder / pool[i].name)
        (folder / "_SUCCESS").touch()
    model = next(iter(sorted(MODEL_DIR.glob("*.tflite"))), None)
    model_line = f'path = "{model}"' if model else "# no bundled model found: image statistics only"
    config = workdir / "config.toml"
    config.write_text(
        f"""# driftd demo configuration (written by `driftd demo`).
[data]
production_root = "production"
baseline = "var/baseline.json"
state_dir = "var"

[model]
{model_line}

[analysis]
workers = 1

[store]
url = "sqlite:///var/driftd.sqlite"

[alerts]
console = true

[logging]
format = "json"
level = "warning"
""",
        encoding="utf-8",
    )
    return config


def run_demo(workdir: Path, run_cli: Callable[[Sequence[str]], int],
             today: date | None = None) -> int:
    """Build the demo, run it end to end with ``run_cli`` (``daemon.cli.main``), print the
    outcome; returns the exit code."""
    workdir = workdir.resolve()
    today = today or date.today()
    try:
        config = build_workdir(workdir, today)
    except FileNotFoundError as err:
        print(f"driftd demo: {err}")
        return EXIT_RUNTIME
    print(f"driftd demo in {workdir}")
    for step in (["baseline", str(workdir / "baseline")], ["run", "--once"]):
        code = run_cli(["--config", str(config), *step])
        if code != EXIT_OK:
            print(f"driftd demo: `driftd {' '.join(step)}` failed with exit code {code}")
            return code
    print_outcome(workdir)
    return EXIT_OK


def print_outcome(workdir: Path) -> None:
    """The summary table, where the reports are, and what was alerted."""
    reports = workdir / "var" / "reports"
    print(f"\n{'date':10}  {'drift':5}  {'severity':8}  {'images':>6}  summary")
    files = ReportFiles(reports)
    for report_id in files.list_ids():
        report = files.read_report(report_id)
        print(
            f"{report.report_id:10}  "
            f"{'yes' if report.overall_drift_detected else 'no':5}  "
            f"{report.overall_severity.value:8}  {report.current_image_count:>6}  "
            f"{report.drift_summary[:70]}"
        )
    print(f"\nreports (JSON + HTML): {reports}")
    alerts = Outbox(workdir / "var" / STATE_DB_NAME).outbox_all()
    print("alerts:" if alerts else "alerts: none")
    for alert in alerts:
        print(f"  {alert.partition}  {alert.channel:9} {alert.kind:8} {alert.severity:6} "
              f"{alert.status}")
    print(f"\nnext: open {reports}/*.html, or run `driftd --config {workdir}/config.toml status`")
