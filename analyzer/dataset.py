"""Profiling a folder in parallel, and ``DatasetAnalyzer``, the seed's convenience façade.

``profile_folder(data_dir, options, model_path, model_options, labels)`` lists the image
files (a local folder, or an object-store prefix given as an fsspec URL: ``analyzer.storage``),
has an executor (``analyzer.executors``: this process, the fork-server pool, or Dask)
decode them and fold the per-image records into a ``Profile``, in bounded memory. With a
model whose embedding can be read, each worker runs an ``EmbeddingModel`` (class scores and
embedding in one call); with ``labels`` (rows of a ``labels.csv``) the profile also gets the
accuracy calibration (``analyzer.accuracy``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from threadpoolctl import threadpool_limits

from analyzer.accuracy import LabelRow, LabelsError, read_label_rows, resolve_labels
from analyzer.builder import ProfileTemplate
from analyzer.contract import MODEL_FEATURES, SOFTMAX_PREFIX, DriftReport, QualityIssue
from analyzer.errors import EmptyDatasetError, ModelError
from analyzer.executors import Job, make_executor
from analyzer.images import FEATURES, IMAGE_SUFFIXES
from analyzer.listing import FileTable, list_local, list_remote
from analyzer.options import AnalyzerOptions, split_options
from analyzer.pixels import warn_if_slow
from analyzer.profile import ModelInfo, Profile
from analyzer.progress import Progress
from analyzer.storage import RemoteSource, filesystem, is_remote, local_path
from analyzer.worker import WorkerConfig, load_classifier, prepare_worker_process

__all__ = ["MODEL_FEATURES", "DatasetAnalyzer", "list_image_files", "prepare_worker_process",
           "profile_folder"]

logger = logging.getLogger("analyzer")


def list_image_files(data_dir: Path, follow_symlinks_outside: bool = False
                     ) -> tuple[list[str], list[tuple[str, str]]]:
    """Image files under ``data_dir`` as absolute path strings, and the rejected entries
    (``analyzer.listing.list_local``, as lists: for callers that want them in memory)."""
    with list_local(data_dir, follow_symlinks_outside) as table:
        prefix = table.root.rstrip("/") + "/"
        files = [prefix + name for chunk in table.chunks(4096) for name, _ in chunk]
        return files, list(table.rejected)


def _list(location: str | Path, options: AnalyzerOptions) -> tuple[FileTable, str,
                                                                    RemoteSource | None]:
    """``(table, root, remote)`` of the night at ``location``."""
    if is_remote(location):
        url = str(location).rstrip("/")
        source = RemoteSource(url, dict(options.storage_options or {}), options.read_attempts)
        fs, root = filesystem(url, source.storage_options)
        return list_remote(url, fs, root), url, source
    table = list_local(local_path(location), options.follow_symlinks_outside)
    return table, table.root, None


def _embedding_tensor(model_path: str, options: AnalyzerOptions
                      ) -> tuple[tuple[int, int, str] | None, str]:
    """The embedding tensor's (index, values per image, name), or None and why the
    embedding cannot be read.

    A tensor the graph walk cannot find is a reason, not an error (the report says the test
    is unavailable); a tensor named in ``embedding_tensor`` that is wrong raises
    ``ModelError``, as any other wrong option does.
    """
    if not options.embeddings:
        return None, "embeddings are switched off (option embeddings = false)"
    try:
        from analyzer.embeddings import locate_embedding
    except ImportError as err:
        return None, f"the TFLite schema module is unavailable ({err}); install ai-edge-litert"
    try:
        content = Path(model_path).read_bytes()
    except OSError as err:
        raise ModelError(f"model file {model_path} cannot be read: {err}") from err
    if options.tensor_ref is not None:
        found = locate_embedding(content, options.tensor_ref, model_path)
        return (found.index, found.dim, found.name), ""
    try:
        found = locate_embedding(content, None, model_path)
    except ModelError as err:
        return None, (f"no penultimate-layer tensor found automatically ({err}); set "
                      "embedding_tensor to its name or index, or export the model with its "
                      "embedding as a second output (README: Embeddings)")
    return (found.index, found.dim, found.name), ""


def profile_folder(data_dir: str | Path, options: AnalyzerOptions | None = None,
                   model_path: str | Path | None = None,
                   model_options: Mapping[str, Any] | None = None,
                   labels: Sequence[LabelRow] | None = None) -> Profile:
    """Profile every image under ``data_dir`` (a folder, or an fsspec URL such as
    ``s3://bucket/production/20261126``).

    ``labels``: the true class of (some of) the images, as ``read_label_rows`` gives them; the
    profile then holds the accuracy calibration of a labelled baseline (needs a model).
    Raises ``LabelsError`` for labels without a model, rows that name no image of the folder
    or no class of the model, and fewer than ``analyzer.accuracy.MIN_LABELLED`` labelled
    readable images; ``ModelError`` also for a named ``embedding_tensor`` the model lacks.

    Raises ``DatasetError`` (missing or unreadable folder or prefix, storage support not
    installed), ``EmptyDatasetError`` (no image files, or none readable), ``ModelError``
    (the model cannot be loaded) and ``AnalyzerError`` (the executor failed). Bad files,
    failed reads and subfolders that cannot be read are counted in the profile's
    data-quality issues, never raised. ``options.progress_callback`` is also called while
    workers are busy, so a callback that raises stops even a run stuck in one file.
    """
    options = options or AnalyzerOptions()
    table, root, remote = _list(data_dir, options)
    with table:
        return _profile(table, root, remote, data_dir, options, model_path, model_options,
                        labels)


def _profile(table: FileTable, root: str, remote: RemoteSource | None, data_dir: str | Path,
             options: AnalyzerOptions, model_path: str | Path | None,
             model_options: Mapping[str, Any] | None,
             labels: Sequence[LabelRow] | None = None) -> Profile:
    warn_if_slow(logger)
    shown = str(data_dir)
    if not table.count and not table.rejected:
        raise EmptyDatasetError(
            f"data folder {shown!r} holds no image files (looked for "
            f"{', '.join(sorted(IMAGE_SUFFIXES))}); check the path and the export job"
        )
    features = list(FEATURES)
    model_info: ModelInfo | None = None
    model_kwargs = dict(model_options or {})
    bbsd = False
    tensor: tuple[int, int, str] | None = None
    embedding_reason = "no model_path given: no embeddings"
    truth: dict[str, int] | None = None
    if labels is not None and model_path is None:
        raise LabelsError("labels were given without a model; the accuracy estimate needs "
                          "the model whose accuracy it estimates (pass model_path)")
    if model_path is not None:
        tensor, embedding_reason = _embedding_tensor(str(model_path), options)
        if tensor is not None:
            from analyzer.embeddings import rewritten_model

            # Rewritten once here (and its failure reported here): the workers map the
            # cached file instead of each parsing and rebuilding the model.
            rewritten_model(Path(model_path), tensor[0])
        # Loaded here to fail early with the model's own error, and for its labels; the
        # workers run it. A batch of one keeps this copy's arena small (about 20 MB instead
        # of 100 MB for a 224-px model at the workers' batch).
        classifier = load_classifier(str(model_path), {**model_kwargs, "batch_size": 1})
        bbsd = classifier.num_classes <= options.bbsd_max_classes
        model_info = ModelInfo(Path(model_path).name, list(classifier.labels))
        del classifier
        features += list(MODEL_FEATURES)
        if bbsd:
            features += [f"{SOFTMAX_PREFIX}{label}" for label in model_info.labels]
        if labels is not None:
            prefix = root.rstrip("/") + "/"
            listed = [name for chunk in table.chunks(4096) for name, _ in chunk]
            listed += [p[len(prefix):] if p.startswith(prefix) else p
                       for p, _ in table.rejected]
            truth = resolve_labels(labels, listed, model_info.labels)
    config = WorkerConfig(options.max_side, options.max_image_pixels, options.max_file_bytes,
                          None if model_path is None else str(model_path), model_kwargs, bbsd,
                          root if remote is None else "", remote,
                          None if tensor is None else tensor[0])
    template = ProfileTemplate(features, options.reservoir_size, root, model_info,
                               options.examples_per_issue, options.atypical_per_feature,
                               None if tensor is None else (tensor[1], tensor[2],
                                                            options.embedding_sample),
                               embedding_reason or None, truth)
    job = Job(config, template, options.chunk_size, tuple(table.rejected))
    workers = min(options.worker_count, max(1, math.ceil(table.count / options.chunk_size)))
    executor = make_executor(options.executor, workers, options.dask_scheduler,
                             options.dask_shard_files, options.dask_split_every)
    label = root.rstrip("/").rsplit("/", 1)[-1]
    # One BLAS thread here too: with workers, the parent's few BLAS calls must not leave
    # OpenBLAS threads spinning on the cores the workers need.
    with Progress(table.count, options.progress, options.progress_callback, label) as bar, \
            threadpool_limits(1, "blas"):
        def waiting() -> None:
            # Between chunks too, the callback is the caller's chance to stop the run.
            if options.progress_callback is not None:
                options.progress_callback(bar.done, bar.total)

        shard = executor.run(job, table, bar.advance, waiting)
    profile = shard.profile
    profile.total_files = table.count + len(table.rejected)
    count, positions = shard.digests.duplicates(options.examples_per_issue)
    duplicates = profile.issues[QualityIssue.DUPLICATES]
    duplicates.count += count
    names = table.names_at(positions)
    duplicates.examples = (duplicates.examples + [names[p] for p in positions])[
        : options.examples_per_issue]
    if profile.image_count == 0:
        counts = ", ".join(f"{i.count} {k}" for k, i in profile.issues.items() if i.count)
        raise EmptyDatasetError(
            f"none of the {profile.total_files} image files in {shown!r} could be read "
            f"({counts}); first: {shard.first_error}"
        )
    if truth is not None:
        if profile.calibration is None:
            raise LabelsError("none of the labelled images could be read; check labels.csv")
        profile.calibration.check_enough()
    return profile


class DatasetAnalyzer:
    """The seed's façade: ``analyze()`` → baseline dict, ``detect_drift(baseline)`` → report.

    ``options`` are ``AnalyzerOptions`` fields and ``analyzer.model.ModelOptions`` fields
    (unknown names raise ``AnalyzerError`` listing the allowed ones). ``now`` is the report's
    timestamp; when omitted, and only here, it falls back to ``datetime.now(timezone.utc)`` at
    ``detect_drift`` time (``analyzer.compare`` itself never reads the clock). ``report_id``
    defaults to the folder's name. ``labels``: a ``labels.csv`` path (or its rows) giving the
    true class of the folder's images: the baseline then calibrates the accuracy estimate
    (``analyzer.accuracy.read_label_rows`` documents the format).
    """

    def __init__(self, data_dir: str | Path, model_path: str | Path | None = None, *,
                 now: datetime | None = None, report_id: str | None = None,
                 labels: str | Path | Sequence[LabelRow] | None = None,
                 **options: Any) -> None:
        self.data_dir: str | Path = data_dir if is_remote(data_dir) else Path(data_dir)
        self.model_path = model_path
        self.now = now
        self.report_id = report_id
        self.labels = (read_label_rows(labels) if isinstance(labels, str | Path)
                       else labels)
        self.options, self.model_options = split_options(options)
        self._profile: Profile | None = None

    def profile(self) -> Profile:
        """The folder's ``Profile`` (computed once, then reused)."""
        if self._profile is None:
            self._profile = profile_folder(self.data_dir, self.options, self.model_path,
                                           self.model_options, self.labels)
        return self._profile

    def analyze(self) -> dict[str, Any]:
        """The baseline: ``profile().to_dict()`` (JSON-serialisable)."""
        return self.profile().to_dict()

    def detect_drift(self, baseline: Mapping[str, Any] | Profile) -> dict[str, Any]:
        """Compare this folder with ``baseline`` (a dict from ``analyze()`` or a ``Profile``).

        Returns the drift report dict (docs/ARCHITECTURE.md "Drift report dict"):
        ``drift_report(baseline).to_dict()``. Raises as ``drift_report`` does.
        """
        return self.drift_report(baseline).to_dict()

    def drift_report(self, baseline: Mapping[str, Any] | Profile) -> DriftReport:
        """The typed ``DriftReport`` of this folder against ``baseline`` (see ``detect_drift``).

        Raises ``BaselineError`` for a malformed baseline and the errors of ``profile()``.
        """
        from analyzer.report import compare

        base = baseline if isinstance(baseline, Profile) else Profile.from_dict(baseline)
        now = self.now or datetime.now(timezone.utc)
        return compare(base, self.profile(), self.options, now,
                       self.report_id or self._name)

    @property
    def _name(self) -> str:
        return str(self.data_dir).rstrip("/").rsplit("/", 1)[-1]
