"""Shared pytest configuration: real-resource fixtures live in tests/fixtures/."""

from __future__ import annotations

pytest_plugins = [
    "tests.fixtures.system",
    "tests.fixtures.images",
    "tests.fixtures.postgres",
    "tests.fixtures.servers",
    "tests.fixtures.report_roundtrip",
    "tests.fixtures.s3",
]
