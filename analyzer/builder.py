"""Folding per-image records into a shard's ``Profile``, and merging shards.

A *shard* is a run of consecutive files of the night's listing (``FileTable`` positions
``start ..``). ``ShardBuilder`` folds its records in file order; ``merge_shards`` merges
shards in listing order. Every part of a profile merges exactly (see ``analyzer.profile``:
exact sums, bottom-k by content hash, ties broken by path, examples kept in file order), and
duplicates are counted across shards by the digest log (``analyzer.digests``), so one shard
of the whole night and a thousand shards merged in any tree give the same profile.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from analyzer.accuracy import Calibration
from analyzer.contract import MODEL_FEATURES, Category
from analyzer.digests import DigestLog
from analyzer.images import CATEGORIES, ImageRecord
from analyzer.profile import Categories, Issue, ModelInfo, Profile
from analyzer.projection import EmbeddingSample
from analyzer.worker import Batch

_FLUSH_EVERY = 1024


@dataclass(frozen=True)
class ProfileTemplate:
    """What an empty profile of the night looks like (the same in every shard)."""

    features: list[str]
    reservoir_size: int
    data_dir: str
    model: ModelInfo | None
    examples_per_issue: int
    atypical_per_feature: int
    embedding: tuple[int, str, int] | None = None
    """The embedding's (values per image, tensor name, sample capacity); None: none read."""
    embedding_reason: str | None = None
    truth: Mapping[str, int] | None = None
    """Labelled images' true class index by name relative to the root (``--labels``)."""

    def empty(self) -> Profile:
        profile = Profile(features=list(self.features), reservoir_size=self.reservoir_size,
                          data_dir=self.data_dir, model=self.model,
                          embedding_reason=self.embedding_reason)
        if self.embedding is not None:
            profile.embeddings = EmbeddingSample(*self.embedding)
        for kind in profile.issues:
            profile.issues[kind] = Issue(limit=self.examples_per_issue)
        return profile


@dataclass
class Shard:
    """A shard's profile, the digests of its files, and its first bad file's description."""

    profile: Profile
    digests: DigestLog
    first_error: str = ""
    files: int = field(default=0)


class ShardBuilder:
    """Folds records (in file order) into a shard; ``root`` prefixes the paths in records."""

    def __init__(self, template: ProfileTemplate, root: str, start: int, size: int) -> None:
        self.template = template
        self.profile = template.empty()
        self.prefix = root.rstrip("/") + "/"
        self.digests = DigestLog.for_range(start, size)
        self.position = start
        self.first_error = ""
        self.files = 0
        self.keys: list[int] = []
        self.rows: list[npt.NDArray[np.float64]] = []
        self.paths: list[str] = []
        self.embedding_keys: list[int] = []
        self.embedding_rows: list[npt.NDArray[np.float32]] = []
        self.labelled_confidence: list[float] = []
        self.labelled_correct: list[bool] = []
        labels = template.model.labels if template.model is not None else []
        self.class_index = {label: i for i, label in enumerate(labels)}
        self.confidence_column = (template.features.index(MODEL_FEATURES[0])
                                  if MODEL_FEATURES[0] in template.features else -1)

    def name(self, path: str) -> str:
        """``path`` relative to the night's root, as shown in the report."""
        return path[len(self.prefix):] if path.startswith(self.prefix) else path

    def add_rejected(self, path: str, reason: str) -> None:
        """An entry the listing turned away (no position: it was never read)."""
        self._issue(ImageRecord(path, "unreadable", reason))

    def add(self, rec: ImageRecord) -> None:
        """The record of the file at the next position."""
        position = self.position
        self.position += 1
        self.files += 1
        if rec.digest is not None:
            self.digests.record(position, rec.digest)
        if rec.issue is not None or rec.values is None:
            self._issue(rec)
            return
        assert rec.digest is not None
        name = self.name(rec.path)
        # The sample key is a hash of the content hash: the same image always gets the same
        # key, so the bottom-k sample is reproducible and shards merge exactly.
        key = hashlib.blake2b(rec.digest, digest_size=8, person=b"driftd-k").digest()
        self.keys.append(int.from_bytes(key, "little"))
        self.rows.append(rec.values)
        self.paths.append(rec.path)
        if rec.embedding is not None:
            self.embedding_keys.append(self.keys[-1])
            self.embedding_rows.append(rec.embedding)
        truth = (self.template.truth or {}).get(name)
        if truth is not None and self.confidence_column >= 0 and rec.categories:
            self.labelled_confidence.append(float(rec.values[self.confidence_column]))
            self.labelled_correct.append(self.class_index.get(rec.categories[-1]) == truth)
        names = (*CATEGORIES, Category.PREDICTED_CLASS)
        for cat, value in zip(names, rec.categories, strict=False):
            self.profile.categories.setdefault(cat, Categories()).add(value, name)
        if len(self.keys) >= _FLUSH_EVERY:
            self.flush()

    def _issue(self, rec: ImageRecord) -> None:
        if rec.issue is None:
            return
        name = self.name(rec.path)
        self.profile.issues[rec.issue].add(name, self.template.examples_per_issue)
        self.first_error = self.first_error or f"{name} ({rec.detail})"

    def add_batch(self, batch: Batch) -> None:
        for rec in batch.records:
            self.add(rec)
        self.profile.histograms += batch.histogram

    def flush(self) -> None:
        if self.keys:
            self.profile.add_batch(np.asarray(self.keys, dtype=np.uint64), np.stack(self.rows),
                                   self.paths, self.template.atypical_per_feature)
        self.keys, self.rows, self.paths = [], [], []
        if self.embedding_keys and self.profile.embeddings is not None:
            self.profile.embeddings.add_projected(
                np.asarray(self.embedding_keys, dtype=np.uint64), np.stack(self.embedding_rows))
        self.embedding_keys, self.embedding_rows = [], []

    def finish(self) -> Shard:
        """The shard (call once, after the last record)."""
        self.flush()
        if self.template.truth:
            # Counts only: a shard may hold few labelled images; the night checks the total.
            self.profile.calibration = Calibration.counted(
                np.asarray(self.labelled_confidence, dtype=np.float64),
                np.asarray(self.labelled_correct, dtype=bool))
        return Shard(self.profile, self.digests, self.first_error, self.files)


def merge_shards(shards: Sequence[Shard]) -> Shard:
    """Shards that follow each other in the listing, merged in that order."""
    first = shards[0]
    merged = Shard(first.profile, first.digests, first.first_error, first.files)
    for shard in shards[1:]:
        merged.profile.merge(shard.profile)
        merged.digests = merged.digests.merge(shard.digests)
        merged.first_error = merged.first_error or shard.first_error
        merged.files += shard.files
    return merged


def failed_shard(template: ProfileTemplate, root: str, start: int,
                 chunk: Sequence[tuple[str, int]], reason: str) -> Shard:
    """The shard of files that could not be profiled at all (its workers kept dying): each
    file is counted unreadable with ``reason``."""
    builder = ShardBuilder(template, root, start, len(chunk))
    for name, _ in chunk:
        builder.add(ImageRecord(builder.prefix + name, "unreadable", reason))
    return builder.finish()
