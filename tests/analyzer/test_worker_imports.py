"""What a profiling worker imports is what each worker carries in memory: the fork server
preloads ``analyzer.forkserver`` and the workers import ``analyzer.worker``. scipy alone
would add ~60 MB to each of them (105 MB instead of 40 MB resident, measured), so nothing
they import may pull it in at import time."""

from __future__ import annotations

import subprocess
import sys


def test_workers_do_not_import_scipy() -> None:
    code = ("import sys, analyzer.forkserver, analyzer.worker, analyzer.dataset; "
            "print(sorted(m for m in sys.modules if m == 'scipy' or m.startswith('scipy.')))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout.strip()
    assert out == "[]", f"imported at worker start: {out[:200]}"
