"""What a profiling worker does: set its process up, read a chunk of files, run the model.

The same code runs in the fork-server pool's workers, in Dask workers and, with one worker,
in the calling process. ``process_files(chunk, config, classifier)`` reads a chunk of files
(local paths, or objects fetched concurrently from storage) into ``ImageRecord``s and a
summed pixel histogram; with a classifier it appends the model's features to each good one.
"""

from __future__ import annotations

import ctypes
import io
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from threadpoolctl import threadpool_limits

from analyzer.contract import MODEL_FEATURES
from analyzer.errors import ModelError
from analyzer.images import ImageRecord, read_image, read_image_stream
from analyzer.projection import project
from analyzer.storage import STREAM_BYTES, RemoteSource, describe_error

if TYPE_CHECKING:
    from analyzer.embeddings import EmbeddingModel
    from analyzer.model import Classifier

    Model = Classifier | EmbeddingModel

__all__ = ["MODEL_FEATURES", "Batch", "WorkerConfig", "model_features", "prepare_worker_process",
           "process_files"]


@dataclass(frozen=True)
class WorkerConfig:
    """Everything a worker needs to turn file names into records (picklable, small).

    ``root`` is the night's local folder (absolute) when ``remote`` is None.
    """

    max_side: int
    max_image_pixels: int
    max_file_bytes: int
    model_path: str | None
    model_options: Mapping[str, Any]
    bbsd: bool
    root: str = ""
    remote: RemoteSource | None = None
    embedding_tensor: int | None = None  # the resolved tensor index; None: no embeddings


@dataclass
class Batch:
    """One chunk's records, and the summed 3×256 pixel histogram of its good images (taken
    off the records, so a chunk crosses the process boundary with one histogram, not one
    6 KB array per image)."""

    records: list[ImageRecord]
    histogram: npt.NDArray[np.int64]


_process_prepared = False
_classifiers: dict[tuple[str, str, int | None], Model] = {}


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


def load_classifier(model_path: str, model_options: Mapping[str, Any]) -> Classifier:
    """Load the model (raises ``ModelError``, also when no TFLite runtime is installed)."""
    try:
        from analyzer.model import Classifier, ModelOptions
    except ImportError as err:
        raise ModelError(f"model support is unavailable ({err}); install ai-edge-litert") from err
    return Classifier.load(model_path, ModelOptions(**model_options))


def load_model(model_path: str, model_options: Mapping[str, Any],
               embedding_tensor: int | None) -> Model:
    """The classifier, with tensor ``embedding_tensor`` as a second output when given."""
    if embedding_tensor is None:
        return load_classifier(model_path, model_options)
    from analyzer.embeddings import EmbeddingModel
    from analyzer.model import ModelOptions

    # The parent loaded the model as a plain classifier already (its checks and messages).
    return EmbeddingModel.load(model_path, embedding_tensor, ModelOptions(**model_options),
                               checked=True)


def worker_classifier(config: WorkerConfig) -> Model | None:
    """This process's model for ``config`` (loaded once per process and model)."""
    if config.model_path is None:
        return None
    key = (config.model_path, repr(sorted(config.model_options.items())),
           config.embedding_tensor)
    classifier = _classifiers.get(key)
    if classifier is None:
        classifier = _classifiers[key] = load_model(config.model_path, config.model_options,
                                                    config.embedding_tensor)
    return classifier


def process_files(chunk: list[tuple[str, int]], config: WorkerConfig,
                  classifier: Model | None) -> Batch:
    """Read each ``(name, size)`` of ``chunk`` (names relative to the night's root) into a
    ``Batch``; with a classifier, append the model features to each good record.

    Never raises for a bad file or a failed request: that file's record carries the issue.
    Each image goes to the model's input as soon as it is decoded, and the model runs as
    soon as a batch of its inputs is ready, so a worker holds at most one batch of inputs
    (not a chunk of decoded images).
    """
    records: list[ImageRecord] = []
    histogram = np.zeros((3, 256), dtype=np.int64)
    waiting: list[ImageRecord] = []
    inputs: list[npt.NDArray[Any]] = []
    for rec in _records(chunk, config, keep_image=classifier is not None):
        records.append(rec)
        if rec.histogram is not None:
            histogram += rec.histogram.reshape(3, 256)
            rec.histogram = None
        if classifier is None or rec.issue is not None or rec.image is None:
            continue
        inputs.append(classifier.preprocess(rec.image))
        rec.image = None
        waiting.append(rec)
        if len(inputs) >= classifier.batch_capacity:
            _predict(classifier, config.bbsd, inputs, waiting)
            inputs, waiting = [], []
    if classifier is not None and inputs:
        _predict(classifier, config.bbsd, inputs, waiting)
    return Batch(records, histogram)


def _predict(classifier: Model, bbsd: bool, inputs: list[npt.NDArray[Any]],
             records: list[ImageRecord]) -> None:
    """Append the model's features and predicted class to each of ``records`` (and, with an
    ``EmbeddingModel``, the projected embedding)."""
    from analyzer.embeddings import EmbeddingModel

    projected: npt.NDArray[np.float32] | None = None
    if isinstance(classifier, EmbeddingModel):
        probs, embeddings = classifier.embed(np.stack(inputs))
        labels = classifier.classifier.labels
        # Projected here, so a chunk crosses the process boundary with 64 values per image.
        projected = project(embeddings)
    else:
        probs, labels = classifier.predict(np.stack(inputs)), classifier.labels
    extra = model_features(probs, bbsd)
    for i, rec in enumerate(records):
        assert rec.values is not None
        rec.values = np.concatenate([rec.values, extra[i]])
        rec.categories = (*rec.categories, labels[int(np.argmax(probs[i]))])
        rec.embedding = None if projected is None else projected[i]


def _records(chunk: list[tuple[str, int]], config: WorkerConfig,
             keep_image: bool) -> Iterator[ImageRecord]:
    """The record of each file of ``chunk``, in order, decoded one at a time."""
    options: dict[str, Any] = {"max_side": config.max_side,
                               "max_image_pixels": config.max_image_pixels,
                               "max_file_bytes": config.max_file_bytes,
                               "keep_image": keep_image}
    if config.remote is None:
        prefix = config.root.rstrip("/") + "/"
        for name, _ in chunk:
            yield read_image(prefix + name, **options)
    else:
        yield from _read_remote(chunk, config.remote, options)


def _read_remote(chunk: list[tuple[str, int]], source: RemoteSource,
                 options: dict[str, Any]) -> Iterator[ImageRecord]:
    """Records of a chunk of objects: the small ones fetched concurrently, then decoded."""
    small = [(n, s) for n, s in chunk if s <= min(STREAM_BYTES, options["max_file_bytes"])]
    fetched = source.fetch(small) if small else {}
    for name, size in chunk:
        shown = source.shown(name)
        data = fetched.pop(name, None)
        if isinstance(data, Exception):
            yield ImageRecord(shown, "unreadable", f"cannot read: {describe_error(data)}")
            continue
        try:
            stream = io.BytesIO(data) if data is not None else (
                source.open(name) if size <= options["max_file_bytes"] else io.BytesIO())
        except Exception as err:  # a failed open of a large object: that file, not the night
            yield ImageRecord(shown, "unreadable", f"cannot read: {describe_error(err)}")
            continue
        actual = len(data) if data is not None else size
        yield read_image_stream(shown, stream, actual, **options)


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
