"""The README's library example, saved as a script and run as a newcomer would run it.

The ```python block of "Using the analyzer as a library" is written to a file verbatim except
for its paths, which point at the bundled model and demo images, and run with this
interpreter: it must finish and print what it says it prints.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MODEL = ROOT / "models" / "demo_classifier.tflite"
DEMO_IMAGES = ROOT / "daemon" / "demo" / "images"


def library_example() -> str:
    """The first python block under the README heading "Using the analyzer as a library"."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## Using the analyzer as a library", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "README: no python block under 'Using the analyzer as a library'"
    return match.group(1)


def test_readme_library_example_runs_as_a_script(tmp_path: Path) -> None:
    """Saved as a file and run at top level (no ``__main__`` guard), the example works."""
    night = tmp_path / "production" / "20261126"
    night.mkdir(parents=True)
    for image in sorted(DEMO_IMAGES.glob("*.png"))[:300]:
        shutil.copy(image, night)
    script = library_example()
    for placeholder, real in (
        ('"validation/"', repr(str(DEMO_IMAGES))),
        ('"production/20261126"', repr(str(night))),
        ('"models/demo_classifier.tflite"', repr(str(MODEL))),
    ):
        assert placeholder in script, f"README example no longer uses {placeholder}"
        script = script.replace(placeholder, real)
    (tmp_path / "example.py").write_text(script, encoding="utf-8")

    done = subprocess.run(
        [sys.executable, "example.py"], cwd=tmp_path, capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=600,
    )

    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == f"{len(list(DEMO_IMAGES.glob('*.png')))}\n"
    assert (tmp_path / "baseline_metrics.json").stat().st_size > 0
    assert "</html>" in (tmp_path / "monitor_report_20261126.html").read_text(encoding="utf-8")
