"""The TFLite runtime's own prints ("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.")
reach the ``analyzer`` logger as debug records, never stderr raw.

The runtime prints that line once per process, from C++ straight to file descriptor 2, so
each test runs a fresh interpreter and reads what it wrote to its real stderr.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "demo_classifier.tflite"
DEMO_IMAGES = ROOT / "daemon" / "demo" / "images"

PROFILE_WITH_MODEL = """\
import json, logging, sys
from analyzer.dataset import profile_folder
from analyzer.options import AnalyzerOptions

records = []

class Keep(logging.Handler):
    def emit(self, record):
        records.append([record.levelname, record.getMessage(), getattr(record, "text", None)])

logging.getLogger("analyzer").addHandler(Keep())
logging.getLogger("analyzer").setLevel(logging.DEBUG)
profile = profile_folder(sys.argv[1], AnalyzerOptions(workers=int(sys.argv[3]), chunk_size=8,
                                                       progress="off"), model_path=sys.argv[2])
print(json.dumps({"images": profile.image_count, "records": records}))
"""


def _profile(tmp_path: Path, workers: int) -> subprocess.CompletedProcess[str]:
    night = tmp_path / "night"
    night.mkdir()
    for image in sorted(DEMO_IMAGES.glob("*.png"))[:40]:
        shutil.copy(image, night)
    return subprocess.run(
        [sys.executable, "-c", PROFILE_WITH_MODEL, str(night), str(MODEL), str(workers)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
        timeout=300,
    )


def test_profiling_with_a_model_writes_nothing_to_stderr(tmp_path: Path) -> None:
    """In the caller and in its two workers, the runtime's banner stays off stderr."""
    done = _profile(tmp_path, workers=2)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert json.loads(done.stdout)["images"] == 40


def test_runtime_output_is_a_debug_record_of_the_analyzer_logger(tmp_path: Path) -> None:
    """What the runtime printed is kept, as a structured record a log handler can show."""
    done = _profile(tmp_path, workers=1)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    records = json.loads(done.stdout)["records"]
    assert ["DEBUG", "model.runtime_printed",
            "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."] in records
