"""Only the contract reads a drift report by its keys: everyone else uses the typed report.

An ast walk over analyzer/, sinks/ and daemon/ looks for a report key (every key a report
file holds, from the pinned reports in tests/data/reports) read as a string: ``x["key"]``,
``x.get("key")``, ``x.pop("key")``, ``"key" in x``. Outside ``analyzer/contract.py`` (where
``to_dict``/``from_dict`` live) the only such reads allowed are of other JSON that happens
to use the same word, each listed below with what it is.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("analyzer", "sinks", "daemon")
CONTRACT = "analyzer/contract.py"
OTHER_JSON: dict[str, set[str]] = {
    # the profile's own JSON (Profile.to_dict/from_dict): a baseline, not a report
    "analyzer/profile.py": {"count", "examples", "data_quality", "reservoir_size",
                            "data_dir", "total_files", "reason"},
    # TFLite tensor details
    "analyzer/model.py": {"index"},
    "analyzer/embeddings.py": {"index"},
    # the accuracy calibration's JSON inside a baseline profile
    "analyzer/accuracy.py": {"count"},
    # the worker's own read_image keyword arguments (a local dict, not a report)
    "analyzer/worker.py": {"max_file_bytes"},
    # the alert outbox's payload (AlertMessage.to_payload/from_payload) and its table rows
    "sinks/messages.py": {"severity"},
    "daemon/state/outbox.py": {"severity"},
}


def _keys(value: object) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _keys(item)
    elif isinstance(value, list):
        for item in value:
            yield from _keys(item)


REPORT_KEYS = frozenset(
    key for path in (ROOT / "tests" / "data" / "reports").glob("demo_*.json")
    for key in _keys(json.loads(path.read_text(encoding="utf-8")))
)


def string_key_reads(source: str) -> Iterator[tuple[int, str]]:
    """(line, key) of every report key ``source`` reads as a string constant."""
    for node in ast.walk(ast.parse(source)):
        key: object = None
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
            key = node.slice.value if isinstance(node.slice, ast.Constant) else None
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr in ("get", "pop") and node.args
              and isinstance(node.args[0], ast.Constant)):
            key = node.args[0].value
        elif (isinstance(node, ast.Compare) and isinstance(node.left, ast.Constant)
              and any(isinstance(op, ast.In | ast.NotIn) for op in node.ops)):
            key = node.left.value
        if isinstance(key, str) and key in REPORT_KEYS:
            yield node.lineno, key


def test_no_module_outside_the_contract_reads_report_keys_by_string() -> None:
    """Sections, tests and headline numbers are read as typed fields everywhere else."""
    offenders = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = path.relative_to(ROOT).as_posix()
            if name == CONTRACT:
                continue
            allowed = OTHER_JSON.get(name, set())
            offenders += [f"{name}:{line}: reads {key!r}"
                          for line, key in string_key_reads(path.read_text(encoding="utf-8"))
                          if key not in allowed]
    assert not offenders, "\n".join(offenders)


def test_the_walk_sees_every_way_of_reading_a_key() -> None:
    """The check can fail: each form of string read of a report key is found."""
    source = (
        'a = report["pixel_distribution_drift"]["tests"]\n'
        'b = report.get("overall_severity", "none")\n'
        'c = "drift_summary" in report\n'
        'report["severity"] = "high"\n'  # a write, not a read
    )
    assert sorted(string_key_reads(source)) == [
        (1, "pixel_distribution_drift"), (1, "tests"), (2, "overall_severity"),
        (3, "drift_summary"),
    ]
    assert {"pixel_distribution_drift", "overall_severity", "tests", "severity",
            "drift_summary", "data_quality", "issues"} <= REPORT_KEYS
