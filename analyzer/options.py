"""Every threshold and knob of the analyzer, with its documented default.

``AnalyzerOptions`` is what ``profile()`` / ``compare()`` take. ``split_options`` turns the
``**options`` of ``DatasetAnalyzer`` into an ``AnalyzerOptions`` and the keyword arguments of
``analyzer.model.ModelOptions`` (whose field names are distinct), and rejects unknown names.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from analyzer.contract import SettingValue
from analyzer.errors import AnalyzerError

ProgressCallback = Callable[[int, int], None]
"""Called as ``callback(done, total)`` after each chunk of files is folded in, and about every
half second while worker processes are busy; what it raises ends the run (and its workers)."""

#: ``ModelOptions`` field names (analyzer/model.py); kept here so the split needs no model import.
MODEL_OPTION_NAMES = frozenset(
    {
        "labels_path",
        "input_resize",
        "input_scale",
        "input_mean",
        "input_std",
        "input_color",
        "batch_size",
        "num_threads",
    }
)

#: Options that are per-call context, not thresholds (``DatasetAnalyzer`` takes them).
CALL_OPTION_NAMES = frozenset({"now", "report_id", "labels"})


@dataclass(frozen=True)
class AnalyzerOptions:
    """Thresholds and knobs; every field has a default justified in its comment.

    Statistics
    ----------
    alpha: family-wise error rate of the whole report: all tests (image features and model
        outputs) form one family corrected with ``correction``. 0.05 = on a night without
        drift, at most 5% chance that any test fires.
    correction: multiple-testing correction, ``"holm"`` (uniformly more powerful than
        Bonferroni, same guarantee) or ``"bonferroni"``.
    min_samples: a test runs only when both sides have at least this many values; below it
        the test is reported with ``p_value`` 1.0 and severity ``none`` (too few to tell).
    wasserstein_low/medium/high: severity cut-offs for continuous features on the
        normalised Wasserstein distance W1(base, cur) / baseline std (shift in baseline
        standard deviations). 0.1 / 0.25 / 0.5 std, once the test is significant.
    tvd_low/medium/high: severity cut-offs for categorical features (format, mode, predicted
        class) on the total-variation distance between the two category mixes, corrected for
        its sampling bias (``analyzer.stats.category_test``): at least this share of the
        images changed category, the same meaning for a 2-class and a 1,000-class model.
        0.05 / 0.1 / 0.2: one image in twenty, in ten, in five.
    permutations: null tables drawn by each categorical test (its p-value is exact, with a
        resolution of 1 / (permutations + 1)). Raised, when needed, to 4·m / alpha for a
        family of m tests, so a categorical test can always pass Holm's first step.
    reservoir_size: values per feature kept in the profile's mergeable bottom-k sample
        (the KS tests run on it); bounds the baseline file size whatever the image count.
    bbsd_max_classes: with a model of at most this many classes, each class's softmax
        output is a feature with its own KS test (black-box shift detection, Lipton et al.
        2018); above it only the confidence summaries are kept, to bound the profile size.
    histogram_bins: bins per channel of the pixel histograms shown in the report (the
        profile keeps 256; they are summed down to this many).

    Embeddings and accuracy
    -----------------------
    embeddings: with a model, also read its penultimate-layer embedding (the input of the
        classification head, found in the graph: ``analyzer.embeddings``), keep a bounded
        sample of it in the profile and test it (``embedding_drift``). False turns it off.
        A model without a usable penultimate tensor still works: the report says why the
        embedding test is unavailable.
    embedding_tensor: which tensor is the embedding: ``"auto"`` (walk back from the class
        output to the head), a tensor name, or a tensor index (an int; the model's own
        numbering, as ``tflite`` viewers show it).
    embedding_sample: images whose projected embedding (64 values) the profile keeps, chosen
        by content hash so shards merge; also the most rows per side the test uses, which
        bounds its cost (~2 s per night at 1,024 + 1,024 rows). 1,024 keeps a baseline's
        embedding under ~400 kB of JSON.
    auc_low/medium/high: severity cut-offs of the embedding test, on its effect size: the
        held-out AUC with which a linear probe tells tonight's embeddings from the baseline's,
        less chance (0..0.5, the same meaning for any model). 0.02 / 0.05 / 0.1: a probe
        right 52%, 55%, 60% of the time, once the MMD test is significant.
    accuracy_level: coverage of the accuracy estimate's interval (with a labelled baseline).

    Data quality
    ------------
    quality_low/medium/high: severity of the data-quality section from the share of
        candidate files that are bad (unreadable + truncated + zero-byte): 1% / 5% / 20%.
    examples_per_issue: file names listed per data-quality issue.
    atypical_per_feature: most extreme current images kept per feature for the report.

    Decoding and work
    -----------------
    workers: worker processes for decoding and features; ``None`` = ``os.cpu_count()``.
        1 runs everything in the calling process.
    chunk_size: files per task sent to a worker (amortises inter-process overhead).
    max_side: features are computed on the image reduced by the smallest power of two
        (1, 2, 4, 8) that brings its longest side to at most this (JPEG: DCT-domain reduction
        while decoding). Width, height and file size are always the file's true values.
    max_image_pixels: larger images are not decoded and counted as unreadable
        (decompression-bomb guard; Pillow's own default).
    max_file_bytes: larger files are not read and counted as unreadable. 512 MiB: twice an
        uncompressed 8-bit RGB image of ``max_image_pixels`` and far above any compressed
        photo, yet it turns a stray multi-GB file away before it costs a minute of reading;
        raise it for uncompressed 16-bit scans. Files are never held in memory whole.
    follow_symlinks_outside: analyse symlinked files whose target is outside the folder.
        Off by default: a night folder is what the upstream job wrote, and a link out of it
        (a mistake, or a way to make the service read elsewhere) is reported as unreadable.
        Turn it on for datasets made of links (driftd: ``[analysis]
        follow_symlinks_outside = true``).
    executor: who runs the per-image work (``analyzer.executors``): ``"local"`` (``workers``
        processes on this machine, the default) or ``"dask"`` (a ``dask.distributed``
        cluster: ``pip install 'driftd[dask]'``).
    dask_scheduler: the Dask scheduler's address (``tcp://host:8786``); None starts a
        ``LocalCluster`` of ``workers`` processes for the run.
    dask_shard_files: files per Dask task, at most (smaller nights get at least 8 tasks per
        worker thread, so no worker idles at the end). 2048: a task of a few seconds, long
        enough that the scheduler's ~1 ms per task is noise, short enough that a lost worker
        costs little and that 2 tasks per worker in flight keep every worker busy.
    dask_split_every: shard profiles merged per reduction task (the tree's fan-in). 8:
        each merge task is ~10 ms; a night of a million files is a tree of depth 3.
    storage_options: keyword arguments for the fsspec filesystem of a URL ``data_dir``
        (e.g. ``{"endpoint_url": "https://minio:9000"}`` for an S3-compatible store);
        credentials belong in the environment, not here.
    read_attempts: requests per object before a failed read of a URL ``data_dir``
        (throttling, 5xx, a dropped connection) counts the file as unreadable; 5.
    progress: ``"auto"`` (tqdm bar on a TTY, ``analysis.progress`` log events otherwise),
        ``"bar"``, ``"log"`` or ``"off"``.
    progress_callback: optional ``callback(done, total)`` (e.g. the daemon's watchdog).
    """

    alpha: float = 0.05
    correction: str = "holm"
    min_samples: int = 20
    wasserstein_low: float = 0.1
    wasserstein_medium: float = 0.25
    wasserstein_high: float = 0.5
    tvd_low: float = 0.05
    tvd_medium: float = 0.1
    tvd_high: float = 0.2
    permutations: int = 1999
    reservoir_size: int = 4096
    histogram_bins: int = 32
    bbsd_max_classes: int = 32
    embeddings: bool = True
    embedding_tensor: str | int = "auto"
    embedding_sample: int = 1024
    auc_low: float = 0.02
    auc_medium: float = 0.05
    auc_high: float = 0.1
    accuracy_level: float = 0.9
    quality_low: float = 0.01
    quality_medium: float = 0.05
    quality_high: float = 0.2
    examples_per_issue: int = 5
    atypical_per_feature: int = 5
    workers: int | None = None
    chunk_size: int = 32
    max_side: int = 512
    max_image_pixels: int = 89_478_485
    max_file_bytes: int = 512 * 1024 * 1024
    follow_symlinks_outside: bool = False
    executor: str = "local"
    dask_scheduler: str | None = None
    dask_shard_files: int = 2048
    dask_split_every: int = 8
    storage_options: Mapping[str, Any] | None = None
    read_attempts: int = 5
    progress: str = "auto"
    progress_callback: ProgressCallback | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise AnalyzerError(f"option alpha={self.alpha!r} must be in (0, 1), e.g. 0.05")
        if self.correction not in ("holm", "bonferroni"):
            raise AnalyzerError(
                f"option correction={self.correction!r} is unknown; use 'holm' or 'bonferroni'"
            )
        if not 0.0 < self.accuracy_level < 1.0:
            raise AnalyzerError(f"option accuracy_level={self.accuracy_level!r} must be in "
                                "(0, 1), e.g. 0.9")
        tensor = self.embedding_tensor
        if isinstance(tensor, bool) or not isinstance(tensor, str | int) or tensor == "" \
                or (isinstance(tensor, int) and tensor < 0):
            raise AnalyzerError(
                f"option embedding_tensor={tensor!r} must be 'auto', a tensor name or a "
                "tensor index >= 0")
        for kind in ("wasserstein", "tvd", "auc", "quality"):
            low, med, high = (getattr(self, f"{kind}_{lvl}") for lvl in ("low", "medium", "high"))
            if not 0 <= low <= med <= high:
                raise AnalyzerError(
                    f"options {kind}_low/medium/high = {low}/{med}/{high} must be ascending "
                    "and non-negative"
                )
        for name in ("min_samples", "reservoir_size", "histogram_bins", "chunk_size", "max_side",
                     "permutations", "max_file_bytes", "dask_shard_files", "read_attempts",
                     "embedding_sample"):
            if getattr(self, name) < 1:
                raise AnalyzerError(f"option {name}={getattr(self, name)!r} must be >= 1")
        if 256 % self.histogram_bins:
            raise AnalyzerError(
                f"option histogram_bins={self.histogram_bins} must divide 256 (e.g. 16, 32, 64)"
            )
        if self.executor not in ("local", "dask"):
            raise AnalyzerError(
                f"option executor={self.executor!r} is unknown; use 'local' or 'dask'"
            )
        if self.dask_split_every < 2:
            raise AnalyzerError(f"option dask_split_every={self.dask_split_every!r} must be >= 2")
        if self.workers is not None and self.workers < 1:
            raise AnalyzerError(f"option workers={self.workers!r} must be >= 1 or None")
        if self.progress not in ("auto", "bar", "log", "off"):
            raise AnalyzerError(
                f"option progress={self.progress!r} is unknown; use auto, bar, log or off"
            )

    @property
    def tensor_ref(self) -> str | int | None:
        """``embedding_tensor`` as ``analyzer.embeddings`` takes it (None: find it)."""
        return None if self.embedding_tensor == "auto" else self.embedding_tensor

    @property
    def worker_count(self) -> int:
        """``workers`` resolved: ``os.cpu_count()`` when unset."""
        return self.workers or os.cpu_count() or 1

    def settings(self) -> dict[str, SettingValue]:
        """The thresholds as a JSON-serialisable dict (the report's ``settings``)."""
        skip = {"progress_callback", "progress", "workers", "chunk_size", "executor",
                "dask_scheduler", "dask_shard_files", "dask_split_every", "storage_options",
                "read_attempts"}
        return {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in skip
        }


ANALYZER_OPTION_NAMES = frozenset(f.name for f in dataclasses.fields(AnalyzerOptions))


def split_options(options: Mapping[str, Any]) -> tuple[AnalyzerOptions, dict[str, Any]]:
    """Split ``DatasetAnalyzer``'s ``**options`` into analyzer options and model options.

    Returns ``(AnalyzerOptions(...), {ModelOptions field: value})``.
    Raises ``AnalyzerError`` naming every unknown option and listing the allowed names.
    """
    unknown = sorted(set(options) - ANALYZER_OPTION_NAMES - MODEL_OPTION_NAMES)
    if unknown:
        allowed = ", ".join(sorted(ANALYZER_OPTION_NAMES | MODEL_OPTION_NAMES | CALL_OPTION_NAMES))
        raise AnalyzerError(f"unknown option(s) {', '.join(unknown)}; allowed: {allowed}")
    analyzer_kwargs = {k: v for k, v in options.items() if k in ANALYZER_OPTION_NAMES}
    model_kwargs = {k: v for k, v in options.items() if k in MODEL_OPTION_NAMES}
    return AnalyzerOptions(**analyzer_kwargs), model_kwargs
