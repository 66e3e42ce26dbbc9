"""Profiling a folder in parallel, and ``DatasetAnalyzer``, the seed's convenience façade.

``profile_folder(data_dir, options, model_path, model_options, labels)`` lists the image
files, decodes them in worker processes (each worker loads one ``Classifier`` when a model is
given, or an ``EmbeddingModel`` when its embedding is read too), and folds the per-image
records into a ``Profile`` in the parent, in bounded memory. With ``labels`` (rows of a
``labels.csv``) the profile also gets the accuracy calibration (``analyzer.accuracy``).
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import math
import os
import stat
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from threadpoolctl import threadpool_limits

from analyzer.accuracy import (
    Calibration,
    LabelRow,
    LabelsError,
    read_label_rows,
    resolve_labels,
)
from analyzer.contract import (
    MODEL_FEATURES,
    SOFTMAX_PREFIX,
    Category,
    DriftReport,
    QualityIssue,
)
from analyzer.errors import AnalyzerError, DatasetError, EmptyDatasetError, ModelError
from analyzer.images import (
    CATEGORIES,
    FEATURES,
    IMAGE_SUFFIXES,
    ImageRecord,
    file_kind,
    read_image,
)
from analyzer.options import AnalyzerOptions, split_options
from analyzer.pixels import warn_if_slow
from analyzer.processes import die_with_parent, stop_workers, worker_context
from analyzer.profile import Categories, ModelInfo, Profile
from analyzer.progress import Progress
from analyzer.projection import EmbeddingSample, project

if TYPE_CHECKING:
    from analyzer.embeddings import EmbeddingModel
    from analyzer.model import Classifier

    Model = Classifier | EmbeddingModel

logger = logging.getLogger("analyzer")

_FLUSH_EVERY = 1024
_POLL_S = 0.5
"""While waiting for a worker, the progress callback is called this often (seconds)."""
_OUTSIDE = ("symlink points outside the data folder; to analyse such links pass "
            "follow_symlinks_outside=True (driftd: [analysis] follow_symlinks_outside = true)")


def list_image_files(data_dir: Path, follow_symlinks_outside: bool = False
                     ) -> tuple[list[str], list[tuple[str, str]]]:
    """Image files under ``data_dir`` (recursive, sorted; hidden entries skipped).

    Returns ``(files, rejected)``: ``files`` are absolute path strings (``data_dir`` made
    absolute, not resolved), each folder's files before its subfolders', by name;
    ``rejected`` are ``(path, reason)`` of the entries that cannot be analysed: symlinks
    that point outside the folder (unless ``follow_symlinks_outside``) or nowhere, entries
    named like images that are not regular files (a FIFO would block the reader for ever),
    and subfolders that cannot be listed (named with a trailing ``/``). Each reason is logged
    once, with a count (``dataset.entries_rejected``). Directory symlinks are never
    followed. Raises ``DatasetError`` when ``data_dir`` is missing, not a folder, or cannot
    be listed.
    """
    if not data_dir.exists():
        raise DatasetError(f"data folder {str(data_dir)!r} does not exist; pass the folder "
                           "that holds the images")
    if not data_dir.is_dir():
        raise DatasetError(f"data folder {str(data_dir)!r} is not a folder; pass the folder "
                           "that holds the images, not a file")
    root = data_dir.resolve()
    top = str(data_dir.absolute())
    files: list[str] = []
    rejected: list[tuple[str, str]] = []
    # os.scandir gives each entry's type without a stat per file (a night is ~10^4 files).
    pending = [top]
    while pending:
        folder = pending.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda entry: entry.name)
        except OSError as err:
            reason = f"subfolder cannot be read: {err.strerror or err}"
            if folder == top:
                raise DatasetError(f"data folder {top!r} cannot be read ({err.strerror or err}); "
                                   "give the service read access to it") from err
            rejected.append((os.path.join(folder, ""), reason))
            continue
        subfolders = []
        for entry in entries:
            name = entry.name
            if name.startswith("."):
                continue
            if entry.is_dir():  # follows symlinks, so a linked folder is not a file either
                if not entry.is_symlink():
                    subfolders.append(entry.path)
                continue
            if os.path.splitext(name)[1].lower() not in IMAGE_SUFFIXES:
                continue
            reason = _rejection(entry, root, follow_symlinks_outside)
            if reason:
                rejected.append((entry.path, reason))
            else:
                files.append(entry.path)
        pending.extend(reversed(subfolders))  # depth first, in name order
    _log_rejected(data_dir, rejected)
    return files, rejected


def _rejection(entry: os.DirEntry[str], root: Path, follow_symlinks_outside: bool) -> str:
    """Why an entry named like an image cannot be analysed; "" when it can."""
    if entry.is_symlink():
        target = Path(entry.path).resolve()
        if not target.exists():
            return "broken symlink"
        if not follow_symlinks_outside and not target.is_relative_to(root):
            return _OUTSIDE
    if entry.is_file():  # from the entry's type, without a stat (a link: its target's)
        return ""
    try:
        mode = entry.stat().st_mode
    except OSError as err:
        return f"cannot read: {err.strerror or err}"
    return "" if stat.S_ISREG(mode) else f"not a regular file ({file_kind(mode)})"


def _log_rejected(data_dir: Path, rejected: list[tuple[str, str]]) -> None:
    """One warning per reason: these are entries an operator acts on (a link, a FIFO, a
    folder's permissions), unlike undecodable files, which only the report lists."""
    by_reason: dict[str, list[str]] = {}
    for path, reason in rejected:
        by_reason.setdefault(reason, []).append(path)
    for reason, paths in by_reason.items():
        logger.warning("dataset.entries_rejected", extra={
            "folder": str(data_dir), "reason": reason, "count": len(paths),
            "examples": paths[:5],
        })


@dataclass(frozen=True)
class _WorkerConfig:
    max_side: int
    max_image_pixels: int
    max_file_bytes: int
    model_path: str | None
    model_options: Mapping[str, Any]
    bbsd: bool
    embedding_tensor: int | None = None  # the resolved tensor index; None: no embeddings


_worker_classifier: Model | None = None
_worker_config: _WorkerConfig | None = None
_process_prepared = False


def _tune_malloc() -> None:
    """Keep freed per-image buffers in the heap instead of returning them to the OS.

    With glibc's defaults every ~1 MB numpy temporary is an mmap/munmap pair, so each image
    page-faults its buffers back in (PITFALLS.md "Image decoding speed"). Works for forked
    workers too, where environment variables would come too late; a no-op without glibc.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the interpreter's own C library
        m_trim_threshold, m_mmap_threshold = -1, -3
        mallopt(m_mmap_threshold, 64 * 1024 * 1024)
        mallopt(m_trim_threshold, 256 * 1024 * 1024)
    except (OSError, AttributeError):
        return


def prepare_worker_process() -> None:
    """Set up this process for profiling work, once: malloc tuning and one BLAS thread.

    One BLAS thread, because the pool already uses every core, and OpenBLAS threading a
    77k-element dot product costs ~1.8 ms instead of ~10 µs on a busy machine. The fork
    server does this before it forks the workers (``analyzer.forkserver``), so they inherit
    it; a worker forked by a server started without that preload does it itself.
    """
    global _process_prepared
    if not _process_prepared:
        _tune_malloc()
        threadpool_limits(1, "blas")
        _process_prepared = True


def _load_classifier(model_path: str, model_options: Mapping[str, Any],
                     embedding_tensor: int | None = None) -> Model:
    """The model, with its embedding as a second output when ``embedding_tensor`` is given."""
    try:
        from analyzer.embeddings import EmbeddingModel
        from analyzer.model import Classifier, ModelOptions
    except ImportError as err:
        raise ModelError(f"model support is unavailable ({err}); install ai-edge-litert") from err
    if embedding_tensor is not None:
        return EmbeddingModel.load(model_path, embedding_tensor, ModelOptions(**model_options))
    return Classifier.load(model_path, ModelOptions(**model_options))


def _embedding_tensor(model_path: str, options: AnalyzerOptions) -> tuple[int | None, str]:
    """The embedding tensor's index, or None and why the embedding cannot be read.

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
    content = Path(model_path).read_bytes()
    if options.tensor_ref is not None:
        return locate_embedding(content, options.tensor_ref, model_path).index, ""
    try:
        return locate_embedding(content, None, model_path).index, ""
    except ModelError as err:
        return None, (f"no penultimate-layer tensor found automatically ({err}); set "
                      "embedding_tensor to its name or index, or export the model with its "
                      "embedding as a second output (README: Embeddings)")


def _init_worker(config: _WorkerConfig) -> None:
    global _worker_classifier, _worker_config
    die_with_parent()
    prepare_worker_process()
    _worker_config = config
    if config.model_path is not None:
        _worker_classifier = _load_classifier(config.model_path, config.model_options,
                                              config.embedding_tensor)


@dataclass
class _Batch:
    """One chunk's records, and the summed 3×256 pixel histogram of its good images (taken
    off the records, so a chunk crosses the process boundary with one histogram, not one
    6 KB array per image)."""

    records: list[ImageRecord]
    histogram: npt.NDArray[np.int64]


def _process_chunk(paths: list[str]) -> _Batch:
    assert _worker_config is not None
    return process_files(paths, _worker_config, _worker_classifier)


def process_files(paths: Iterable[str], config: _WorkerConfig,
                  classifier: Model | None) -> _Batch:
    """Read each file into a ``_Batch``; with a classifier, append the model features to each
    good record (and, with an ``EmbeddingModel``, its projected embedding)."""
    records = [read_image(p, max_side=config.max_side, max_image_pixels=config.max_image_pixels,
                          max_file_bytes=config.max_file_bytes,
                          keep_image=classifier is not None) for p in paths]
    histogram = np.zeros((3, 256), dtype=np.int64)
    for rec in records:
        if rec.histogram is not None:
            histogram += rec.histogram.reshape(3, 256)
            rec.histogram = None
    batch = _Batch(records, histogram)
    good = [r for r in records if r.issue is None]
    if classifier is None or not good:
        return batch
    inputs = np.stack([classifier.preprocess(r.image) for r in good if r.image is not None])
    probs, embeddings = _predict(classifier, inputs)
    labels = _plain(classifier).labels
    # Projected here, so a chunk crosses the process boundary with 64 values per image.
    projected = None if embeddings is None else project(embeddings)
    extra = model_features(probs, config.bbsd)
    for i, rec in enumerate(good):
        assert rec.values is not None
        rec.values = np.concatenate([rec.values, extra[i]])
        rec.categories = (*rec.categories, labels[int(np.argmax(probs[i]))])
        rec.embedding = None if projected is None else projected[i]
        rec.image = None
    return batch


def _plain(model: Model) -> Classifier:
    """The classifier itself (an ``EmbeddingModel`` wraps one)."""
    from analyzer.embeddings import EmbeddingModel

    return model.classifier if isinstance(model, EmbeddingModel) else model


def _predict(model: Model, inputs: npt.NDArray[Any]
             ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64] | None]:
    """Class probabilities and, for an ``EmbeddingModel``, the raw embeddings."""
    from analyzer.embeddings import EmbeddingModel

    if isinstance(model, EmbeddingModel):
        return model.embed(inputs)
    return model.predict(inputs), None


def model_features(probs: npt.NDArray[np.float64], bbsd: bool) -> npt.NDArray[np.float64]:
    """(n, 3 [+ k]) per-image model features: ``MODEL_FEATURES`` then, with ``bbsd``, the
    probability of each class."""
    k = probs.shape[1]
    top = np.sort(probs, axis=1)[:, ::-1]
    second = top[:, 1] if k > 1 else np.zeros(len(probs))
    p = np.clip(probs, 1e-12, 1.0)
    entropy = -(probs * np.log(p)).sum(axis=1) / (math.log(k) if k > 1 else 1.0)
    columns = [top[:, 0], entropy, top[:, 0] - second]
    out = np.stack(columns, axis=1)
    return np.concatenate([out, probs], axis=1) if bbsd else out


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


class _Builder:
    """Folds records into a ``Profile`` in batches; tracks duplicates by content digest."""

    def __init__(self, profile: Profile, data_dir: Path, options: AnalyzerOptions,
                 truth: Mapping[str, int] | None = None) -> None:
        self.profile = profile
        self.truth = truth or {}
        labels = profile.model.labels if profile.model is not None else []
        self.class_index = {label: i for i, label in enumerate(labels)}
        self.confidence_column = (profile.features.index(MODEL_FEATURES[0])
                                  if MODEL_FEATURES[0] in profile.features else -1)
        self.labelled_confidence: list[float] = []
        self.labelled_correct: list[bool] = []
        self.embedding_keys: list[int] = []
        self.embedding_rows: list[npt.NDArray[np.float32]] = []
        self.data_dir = data_dir
        self.prefix = os.path.join(str(data_dir.absolute()), "")
        self.options = options
        self.seen: set[bytes] = set()
        self.keys: list[int] = []
        self.rows: list[npt.NDArray[np.float64]] = []
        self.paths: list[str] = []
        self.first_error = ""

    def name(self, path: str) -> str:
        """``path`` (absolute) relative to the data folder, as shown in the report."""
        if path.startswith(self.prefix):
            return path[len(self.prefix):]
        try:
            return str(Path(path).relative_to(self.data_dir.absolute()))
        except ValueError:
            return path

    def add(self, rec: ImageRecord) -> None:
        profile, limit = self.profile, self.options.examples_per_issue
        name = self.name(rec.path)
        if rec.issue is not None:
            profile.issues[rec.issue].add(name, limit)
            self.first_error = self.first_error or f"{name} ({rec.detail})"
        if rec.digest is not None:
            if rec.digest in self.seen:
                profile.issues[QualityIssue.DUPLICATES].add(name, limit)
            self.seen.add(rec.digest)
        if rec.issue is not None or rec.values is None:
            return
        assert rec.digest is not None
        # The sample key is a hash of the content hash: the same image always gets the same
        # key, so the bottom-k sample is reproducible and shards merge exactly.
        key = hashlib.blake2b(rec.digest, digest_size=8, person=b"driftd-k").digest()
        self.keys.append(int.from_bytes(key, "little"))
        self.rows.append(rec.values)
        self.paths.append(rec.path)
        if rec.embedding is not None:
            self.embedding_keys.append(self.keys[-1])
            self.embedding_rows.append(rec.embedding)
        truth = self.truth.get(name.replace(os.sep, "/"))
        if truth is not None and self.confidence_column >= 0 and rec.categories:
            self.labelled_confidence.append(float(rec.values[self.confidence_column]))
            self.labelled_correct.append(self.class_index.get(rec.categories[-1]) == truth)
        names = (*CATEGORIES, Category.PREDICTED_CLASS)
        for cat, value in zip(names, rec.categories, strict=False):
            profile.categories.setdefault(cat, Categories()).add(value, name)
        if len(self.keys) >= _FLUSH_EVERY:
            self.flush()

    def add_batch(self, batch: _Batch) -> None:
        for rec in batch.records:
            self.add(rec)
        self.profile.histograms += batch.histogram

    def flush(self) -> None:
        if self.keys:
            self.profile.add_batch(np.asarray(self.keys, dtype=np.uint64), np.stack(self.rows),
                                   self.paths, self.options.atypical_per_feature)
        self.keys, self.rows, self.paths = [], [], []
        if self.embedding_keys and self.profile.embeddings is not None:
            self.profile.embeddings.add_projected(
                np.asarray(self.embedding_keys, dtype=np.uint64), np.stack(self.embedding_rows))
        self.embedding_keys, self.embedding_rows = [], []

    def calibration(self) -> Calibration | None:
        """The labelled images' calibration (None without labels); raises ``LabelsError``
        when too few labelled images were readable."""
        if not self.truth:
            return None
        return Calibration.fit(np.asarray(self.labelled_confidence),
                               np.asarray(self.labelled_correct, dtype=bool))


def _parallel(paths: list[str], chunk: int, workers: int, config: _WorkerConfig,
              waiting: Callable[[], None]) -> Generator[_Batch, None, None]:
    """Chunks of records in file order, computed by ``workers`` processes.

    At most two chunks per worker are in flight, so memory stays bounded however many files
    there are. While it waits for a chunk, ``waiting()`` is called every ``_POLL_S`` seconds;
    whatever it raises (the daemon's stop request) ends the pool at once, killing workers
    that are still busy, as does closing this generator early. A worker that dies (e.g.
    killed by the OOM killer) raises ``AnalyzerError`` instead of hanging the run.
    """
    # forkserver: workers do not inherit the caller's threads (the daemon's scheduler), and
    # (worker_context) do not run the caller's __main__ again.
    ctx = worker_context()
    # Import and set up the analyzer once in the fork server: workers share those pages
    # (start-up time and memory), instead of each importing numpy/Pillow again.
    ctx.set_forkserver_preload(["analyzer.forkserver"])
    pending: deque[Future[_Batch]] = deque()
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                               initargs=(config,))
    finished = False
    try:
        for part in _chunks(paths, chunk):
            pending.append(pool.submit(_process_chunk, part))
            if len(pending) >= 2 * workers:
                yield _result(pending.popleft(), waiting)
        while pending:
            yield _result(pending.popleft(), waiting)
        finished = True
    except BrokenProcessPool as err:
        raise AnalyzerError(
            f"a worker process died while profiling ({err}); check memory limits, or run "
            "with workers=1 to see the failing file"
        ) from err
    finally:
        if finished:
            pool.shutdown(wait=True)
        else:
            stop_workers(pool)


def _result(future: Future[_Batch], waiting: Callable[[], None]) -> _Batch:
    """``future.result()``, calling ``waiting()`` every ``_POLL_S`` seconds until it is done."""
    while True:
        try:
            return future.result(timeout=_POLL_S)
        except FutureTimeout:
            waiting()


def profile_folder(data_dir: str | Path, options: AnalyzerOptions | None = None,
                   model_path: str | Path | None = None,
                   model_options: Mapping[str, Any] | None = None,
                   labels: Sequence[LabelRow] | None = None) -> Profile:
    """Profile every image under ``data_dir``.

    ``labels``: the true class of (some of) the images, as ``read_label_rows`` gives them; the
    profile then holds the accuracy calibration of a labelled baseline (needs a model).

    Raises ``DatasetError`` (missing or unreadable folder), ``EmptyDatasetError`` (no image
    files, or none readable), ``ModelError`` (the model cannot be loaded, or a named
    ``embedding_tensor`` is not in it) and ``LabelsError`` (labels without a model, rows that
    name no image of the folder or no class of the model, fewer than
    ``analyzer.accuracy.MIN_LABELLED`` labelled readable images). Bad files, and
    subfolders that cannot be read, are counted in the profile's data-quality issues, never
    raised. With worker processes, ``options.progress_callback`` is also called while they
    work (``_parallel``), so a callback that raises stops even a run stuck in one file.
    """
    options = options or AnalyzerOptions()
    folder = Path(data_dir)
    paths, rejected = list_image_files(folder, options.follow_symlinks_outside)
    warn_if_slow(logger)
    if not paths and not rejected:
        raise EmptyDatasetError(
            f"data folder {str(folder)!r} holds no image files (looked for "
            f"{', '.join(sorted(IMAGE_SUFFIXES))}); check the path and the export job"
        )
    features = list(FEATURES)
    model_info: ModelInfo | None = None
    classifier: Model | None = None
    model_kwargs = dict(model_options or {})
    bbsd = False
    tensor: int | None = None
    embedding_reason: str | None = "no model_path given: no embeddings"
    truth: dict[str, int] | None = None
    if labels is not None and model_path is None:
        raise LabelsError("labels were given without a model; the accuracy estimate needs "
                          "the model whose accuracy it estimates (pass model_path)")
    if model_path is not None:
        tensor, embedding_reason = _embedding_tensor(str(model_path), options)
        classifier = _load_classifier(str(model_path), model_kwargs, tensor)
        plain = _plain(classifier)
        bbsd = plain.num_classes <= options.bbsd_max_classes
        model_info = ModelInfo(Path(model_path).name, list(plain.labels))
        if labels is not None:
            names = [_relative(p, folder) for p in paths]
            names += [_relative(p, folder) for p, _ in rejected]
            truth = resolve_labels(labels, names, plain.labels)
        features += list(MODEL_FEATURES)
        if bbsd:
            features += [f"{SOFTMAX_PREFIX}{label}" for label in plain.labels]
    profile = Profile(features=features, reservoir_size=options.reservoir_size,
                      data_dir=str(folder.absolute()), total_files=len(paths) + len(rejected),
                      model=model_info, embedding_reason=embedding_reason or None)
    if classifier is not None and tensor is not None:
        from analyzer.embeddings import EmbeddingModel

        assert isinstance(classifier, EmbeddingModel)
        profile.embeddings = EmbeddingSample(classifier.dim, classifier.tensor.name,
                                             options.embedding_sample)
    builder = _Builder(profile, folder, options, truth)
    for path, reason in rejected:
        builder.add(ImageRecord(path, "unreadable", reason))
    config = _WorkerConfig(options.max_side, options.max_image_pixels, options.max_file_bytes,
                           None if model_path is None else str(model_path), model_kwargs, bbsd,
                           tensor)
    chunk = options.chunk_size
    workers = min(options.worker_count, math.ceil(len(paths) / chunk))
    # One BLAS thread here too (see _init_worker): with workers, the parent's few BLAS calls
    # must not leave OpenBLAS threads spinning on the cores the workers need.
    with Progress(len(paths), options.progress, options.progress_callback, folder.name) as bar, \
            threadpool_limits(1, "blas"):
        if workers <= 1:
            for part in _chunks(paths, chunk):
                builder.add_batch(process_files(part, config, classifier))
                bar.advance(len(part))
        else:
            def waiting() -> None:
                # Between chunks too, the callback is the caller's chance to stop the run.
                if options.progress_callback is not None:
                    options.progress_callback(bar.done, bar.total)

            with closing(_parallel(paths, chunk, workers, config, waiting)) as batches:
                for batch in batches:
                    builder.add_batch(batch)
                    bar.advance(len(batch.records))
        builder.flush()
    if profile.image_count == 0:
        counts = ", ".join(f"{i.count} {k}" for k, i in profile.issues.items() if i.count)
        raise EmptyDatasetError(
            f"none of the {profile.total_files} image files in {str(folder)!r} could be read "
            f"({counts}); first: {builder.first_error}"
        )
    profile.calibration = builder.calibration()
    return profile


def _relative(path: str, folder: Path) -> str:
    """``path`` relative to ``folder``, with ``/`` separators (as labels.csv names files)."""
    try:
        return Path(path).relative_to(folder.absolute()).as_posix()
    except ValueError:
        return Path(path).as_posix()


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
        self.data_dir = Path(data_dir)
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
                       self.report_id or self.data_dir.name)
