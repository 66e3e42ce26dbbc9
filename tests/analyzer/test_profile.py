"""Profiles are bounded, round-trip through JSON, and merge like the union of their shards."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from analyzer import BaselineError, Profile
from analyzer.dataset import profile_folder
from analyzer.options import AnalyzerOptions
from tests.fixtures.images import write_images

OPTIONS = AnalyzerOptions(workers=1, reservoir_size=32)


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """Two shard folders A, B and a folder holding both."""
    root = tmp_path_factory.mktemp("shards")
    write_images(root / "a", 30, seed=1, size=(24, 24))
    write_images(root / "b", 25, seed=2, size=(24, 24), brightness=1.2)
    both = root / "both"
    both.mkdir()
    for shard in ("a", "b"):
        for path in (root / shard).iterdir():
            (both / f"{shard}_{path.name}").write_bytes(path.read_bytes())
    return root / "a", root / "b", both


def test_merge_of_shards_equals_profile_of_union(shards: tuple[Path, Path, Path]) -> None:
    """merge(profile(A), profile(B)) has the moments, sample, counts and histograms of A∪B."""
    a, b, both = (profile_folder(p, OPTIONS) for p in shards)
    merged = a.merge(b)
    assert merged.image_count == both.image_count == 55
    for name in both.features:
        m, u = merged.moments[name], both.moments[name]
        assert m.mean == pytest.approx(u.mean, rel=1e-9, abs=1e-9)
        assert m.std == pytest.approx(u.std, rel=1e-6, abs=1e-9)
        assert (m.min, m.max) == (u.min, u.max)
    np.testing.assert_array_equal(merged.sample_keys, both.sample_keys)
    np.testing.assert_array_equal(merged.sample_values, both.sample_values)
    np.testing.assert_array_equal(merged.histograms, both.histograms)
    assert merged.categories["mode"].counts == both.categories["mode"].counts


def test_sample_is_bounded_by_reservoir_size(shards: tuple[Path, Path, Path]) -> None:
    """A profile keeps at most reservoir_size sample values per feature."""
    profile = profile_folder(shards[2], OPTIONS)
    assert profile.sample("brightness").size == 32


def test_baseline_json_round_trips(shards: tuple[Path, Path, Path]) -> None:
    """to_dict → JSON → from_dict → to_dict gives the same document."""
    profile = profile_folder(shards[0], OPTIONS)
    text = json.dumps(profile.to_dict())
    again = Profile.from_dict(json.loads(text))
    assert json.dumps(again.to_dict()) == text
    assert json.loads(text)["dataset_info"]["image_count"] == 30


def test_unknown_profile_version_is_rejected(shards: tuple[Path, Path, Path]) -> None:
    """A baseline from another analyzer version fails with a BaselineError saying so."""
    d = profile_folder(shards[0], OPTIONS).to_dict()
    d["version"] = 99
    with pytest.raises(BaselineError, match="version 99"):
        Profile.from_dict(d)


def test_non_profile_baseline_is_rejected() -> None:
    """A dict that is not a profile (e.g. the seed's old baseline) is a BaselineError."""
    with pytest.raises(BaselineError, match="not a driftd profile"):
        Profile.from_dict({"dataset_info": {"image_count": 3}})
