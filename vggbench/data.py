"""Fashion-MNIST: find the files, read and validate the IDX format, preprocess like the lesson.

We read the four original gzip IDX files ourselves. Missing files are downloaded by
:mod:`vggbench.download`: Zalando's originals first, Gluon's mirror second, every file checked
against its source's published checksums.

Data dir resolution: ``--data-dir`` flag > ``VGGBENCH_DATA`` env var > the default cache dir.
Only the default cache dir is ever created (for the download): a mistyped ``--data-dir`` is an
error, not a new empty folder.

Reads are bounded: the gzip stream is decompressed incrementally and never past what the IDX
header implies plus one byte (and never past :data:`MAX_IDX_DATA_BYTES`), so a gzip bomb or a
lying header fails fast with bounded memory.
"""

from __future__ import annotations

import gzip
import math
import os
import queue
import struct
import threading
import zlib
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Sequence, Tuple, TypeVar

import numpy as np

from vggbench.errors import VggbenchError
from vggbench.platform.mxnet import import_mxnet

DATA_ENV_VAR = "VGGBENCH_DATA"
FILES = {
    True: ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    False: ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
ALL_FILES = FILES[True] + FILES[False]
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049
NUM_CLASSES = 10
IMAGE_SHAPE = (28, 28)
# Fashion-MNIST's split sizes (a full test set is what published accuracies are measured on).
TRAIN_IMAGES, TEST_IMAGES = 60000, 10000
# The largest IDX payload read (Fashion-MNIST's training images are 47,040,000 bytes).
MAX_IDX_DATA_BYTES = 256 << 20
READ_CHUNK_BYTES = 1 << 20
# How data_loader prepares training batches (its docstring says what each mode does);
# benchmarks/measure_overlap.py times them against each other (results: docs/usage.md). MXNet runs
# the resize on the same CPU engine worker as the step, so a prefetch thread has little to overlap:
# "engine" is the default (no host round trip, no thread, the next batch's host work hidden behind
# the backward pass); "thread" is opt-in, for a machine where the script measures it faster.
PREFETCH_MODES = ("sync", "engine", "thread")
DEFAULT_PREFETCH = "engine"
PREFETCH_DEPTH_BATCHES = 2
PREFETCH_POLL_S = 0.1
T = TypeVar("T")


def default_data_dir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "vggbench" / "fashion-mnist"


def resolve_data_dir(data_dir: Optional[str] = None) -> Path:
    """Flag beats env var beats the default cache dir."""
    chosen = data_dir or os.environ.get(DATA_ENV_VAR) or default_data_dir()
    return Path(chosen).expanduser()


def missing_files(data_dir: Path) -> list:
    return [name for name in ALL_FILES if not (Path(data_dir) / name).is_file()]


def ensure_data(data_dir: Optional[str] = None, download: bool = True, sources=None,
                progress: bool = True) -> Path:
    """Return a data dir holding the four files, downloading the missing ones.

    Parameters:
        data_dir: ``--data-dir``; None means ``$VGGBENCH_DATA``, else :func:`default_data_dir`.
            A folder named by the flag or the variable must exist: it is never created (a typo
            would otherwise become an empty folder and a download attempt). Only the default
            cache dir is created, to download into.
        download: fetch missing files (:func:`vggbench.download.download_files`); False: report them.
        sources: the :class:`vggbench.download.Source` list to try in order (None: Zalando, then
            Gluon's mirror).
        progress: a progress bar per downloaded file on stderr.

    Raises a one-line VggbenchError naming each missing file once (``download=False``), or naming
    every source tried when none delivered a file.
    """
    path = resolve_data_dir(data_dir)
    source = "--data-dir" if data_dir else DATA_ENV_VAR if os.environ.get(DATA_ENV_VAR) else None
    if source and not path.is_dir():
        what = "is a file, not a folder" if path.exists() else "does not exist"
        raise VggbenchError(f"{source} {path} {what}; point it at the folder holding {', '.join(ALL_FILES)} "
                            f"(or unset it to download Fashion-MNIST into {default_data_dir()})")
    missing = missing_files(path)
    if missing and download:
        from vggbench.download import download_files
        from vggbench.messages import say

        download_files(path, missing, sources, progress=progress, log=say)
        missing = missing_files(path)
    if missing:
        raise VggbenchError(missing_files_message(path, missing))
    return path


def missing_files_message(path: Path, missing: Sequence[str]) -> str:
    """One line naming each missing file once (all four, or which of them)."""
    if len(missing) == len(ALL_FILES):
        found = f"none of the Fashion-MNIST files are in {path} (need {', '.join(missing)})"
    else:
        found = (f"Fashion-MNIST files missing in {path}: {', '.join(missing)} "
                 f"({len(ALL_FILES) - len(missing)} of the {len(ALL_FILES)} are there)")
    return (f"{found}; put them there, or point --data-dir or {DATA_ENV_VAR} at a folder that has them "
            f"(`vggbench data download` fetches them)")


def _gzip_error(path: Path, err: BaseException) -> VggbenchError:
    return VggbenchError(f"{path}: not a readable gzip file ({err}); "
                         f"replace it with the original Fashion-MNIST file")


def _header_length(expected_magic: int) -> int:
    return 16 if expected_magic == IMAGES_MAGIC else 8


def parse_idx_header(head: bytes, expected_magic: int, source: str = "<bytes>",
                     item_shape: Optional[Tuple[int, ...]] = None,
                     max_data_bytes: int = MAX_IDX_DATA_BYTES) -> Tuple[Tuple[int, ...], int]:
    """Check an IDX header and return ``(dims, data_bytes)`` before any data is read.

    Parameters:
        head: the file's first bytes (8 for labels, 16 for images; more is ignored).
        expected_magic: :data:`IMAGES_MAGIC` or :data:`LABELS_MAGIC`.
        source: the file named in errors.
        item_shape: required shape of one item (``(28, 28)`` for images), checked here so a wrong
            file fails before its data is read.
        max_data_bytes: the largest payload accepted.
    """
    header = _header_length(expected_magic)
    if len(head) < 8:
        raise VggbenchError(f"{source}: only {len(head)} bytes, too short for an IDX header")
    magic, count = struct.unpack(">II", head[:8])
    if magic != expected_magic:
        raise VggbenchError(f"{source}: IDX magic number is {magic}, expected {expected_magic} "
                            f"({'images' if expected_magic == IMAGES_MAGIC else 'labels'}); "
                            f"is it the right file?")
    if len(head) < header:
        raise VggbenchError(f"{source}: truncated IDX image header ({len(head)} bytes)")
    dims = (count,) + struct.unpack(">II", head[8:16]) if header == 16 else (count,)
    if item_shape is not None and tuple(dims[1:]) != tuple(item_shape):
        raise VggbenchError(f"{source}: items are {dims[1:]}, Fashion-MNIST's are "
                            f"{'x'.join(map(str, item_shape))}; is it the right file?")
    data_bytes = math.prod(dims)  # Python ints: three uint32 dims cannot overflow
    if data_bytes > max_data_bytes:
        raise VggbenchError(f"{source}: the IDX header {dims} promises {data_bytes} bytes of data, more than "
                            f"the {max_data_bytes} vggbench reads; the file is corrupt or not Fashion-MNIST")
    return dims, data_bytes


def parse_idx(raw: bytes, expected_magic: int, source: str = "<bytes>") -> np.ndarray:
    """Parse IDX bytes (big-endian uint32 header, then uint8 data), checking every length.

    Raises only :class:`VggbenchError` (naming ``source``) for input that is not exactly one
    well-formed IDX array of the expected kind.
    """
    dims, data_bytes = parse_idx_header(raw[:16], expected_magic, source)
    header = _header_length(expected_magic)
    if len(raw) != header + data_bytes:
        raise VggbenchError(f"{source}: {len(raw)} bytes but the header {dims} needs {header + data_bytes}; "
                            f"the file is truncated or corrupt")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def read_idx_file(path: Path, expected_magic: int, item_shape: Optional[Tuple[int, ...]] = None,
                  max_data_bytes: int = MAX_IDX_DATA_BYTES) -> np.ndarray:
    """Read one gzip IDX file with bounded memory.

    The gzip stream is decompressed chunk by chunk: first the header, which is checked
    (:func:`parse_idx_header`), then at most the data size it implies plus one byte, into one
    preallocated buffer. A file that ends early or goes on longer is an error, found without
    decompressing the rest; a gzip bomb costs at most ``max_data_bytes`` plus one chunk.

    Parameters:
        path: the ``.gz`` file.
        expected_magic: :data:`IMAGES_MAGIC` or :data:`LABELS_MAGIC`.
        item_shape: see :func:`parse_idx_header`.
        max_data_bytes: the largest payload accepted.
    """
    path = Path(path)
    try:
        with gzip.open(path, "rb") as handle:
            head = handle.read(_header_length(expected_magic))
            dims, data_bytes = parse_idx_header(head, expected_magic, str(path), item_shape, max_data_bytes)
            buffer = bytearray(data_bytes + 1)
            view, filled = memoryview(buffer), 0
            while filled < len(buffer):
                got = handle.readinto(view[filled:filled + READ_CHUNK_BYTES])
                if not got:
                    break
                filled += got
            view.release()
    except (OSError, EOFError, zlib.error) as err:
        raise _gzip_error(path, err) from None
    if filled > data_bytes:
        raise VggbenchError(f"{path}: goes on past the {len(head) + data_bytes} bytes its header {dims} implies "
                            f"(read no further); the file is corrupt or not Fashion-MNIST")
    if filled < data_bytes:
        raise VggbenchError(f"{path}: {len(head) + filled} bytes but the header {dims} needs "
                            f"{len(head) + data_bytes}; the file is truncated or corrupt")
    return np.frombuffer(buffer, dtype=np.uint8, count=data_bytes).reshape(dims)


def encode_idx(array: np.ndarray) -> bytes:
    """Inverse of :func:`parse_idx` for uint8 images [N,H,W] or labels [N]."""
    array = np.asarray(array, dtype=np.uint8)
    magic = IMAGES_MAGIC if array.ndim == 3 else LABELS_MAGIC
    return struct.pack(">I", magic) + struct.pack(">" + "I" * array.ndim, *array.shape) + array.tobytes()


def load_fashion_mnist(data_dir: Optional[str] = None, train: bool = True) -> Tuple[np.ndarray, np.ndarray]:
    """Return ``(images uint8 [N,28,28], labels int32 [N])`` for the train or test split."""
    path = ensure_data(data_dir)
    image_file, label_file = (path / name for name in FILES[train])
    images = read_idx_file(image_file, IMAGES_MAGIC, item_shape=IMAGE_SHAPE)
    labels = read_idx_file(label_file, LABELS_MAGIC)
    if images.shape[0] != labels.shape[0]:
        raise VggbenchError(f"{image_file} has {images.shape[0]} images but {label_file} has "
                            f"{labels.shape[0]} labels; the two files do not belong together")
    if images.shape[0] == 0:
        raise VggbenchError(f"{image_file} holds 0 images: nothing to train or test on; replace it with "
                            f"the original Fashion-MNIST file")
    if labels.max() >= NUM_CLASSES:
        raise VggbenchError(f"{label_file}: label {labels.max()} out of range 0..9")
    return images, labels.astype(np.int32)


def subset(images: np.ndarray, labels: np.ndarray, limit: Optional[int], seed: int = 0):
    """A fixed-seed random subset of ``limit`` examples (all of them when ``limit`` is None)."""
    if limit is None or limit >= len(labels):
        return images, labels
    if limit < 1:
        raise VggbenchError(f"subset size must be >= 1, got {limit}")
    index = np.sort(np.random.RandomState(seed).permutation(len(labels))[:limit])
    return images[index], labels[index]


def preprocess(images: np.ndarray, size: int = 96) -> np.ndarray:
    """The lesson's preprocessing: bilinear resize to ``size``, scale to [0,1], NCHW float32.

    Runs on a whole batch at once (one MXNet op) rather than per image: same result as
    ``transforms.Resize`` + ``ToTensor`` up to interpolation rounding, far less Python overhead.
    """
    return preprocess_nd(images, size).asnumpy()


def preprocess_nd(images: np.ndarray, size: int = 96):
    """:func:`preprocess` as an MXNet NDArray on the CPU, not waited for.

    ``images``: uint8 ``[B, 28, 28]``; ``size``: the output height and width in pixels. The
    resize is queued on MXNet's engine and this returns at once, so a training step can be queued
    behind it without a host round trip; the values are exactly :func:`preprocess`'s.
    """
    mx = import_mxnet()

    batch = mx.nd.array(images[:, None, :, :], dtype="float32") / 255.0
    if size != images.shape[-1]:
        batch = mx.nd.contrib.BilinearResize2D(batch, height=size, width=size, align_corners=False)
    return batch.clip(0.0, 1.0)


def iter_batches(images: np.ndarray, labels: np.ndarray, size: int, batch_size: int
                 ) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
    """Preprocessed ``(x float32 [B,1,size,size], y int32 [B])`` batches in order (for evaluation)."""
    for start in range(0, len(labels), batch_size):
        yield preprocess(images[start:start + batch_size], size), labels[start:start + batch_size]


def data_loader(images: np.ndarray, labels: np.ndarray, size: int, batch_size: int,
                shuffle: bool, seed: int = 0, last_batch: str = "keep",
                prefetch: str = DEFAULT_PREFETCH) -> "BatchLoader":
    """Training batches ``(x, y)`` as NDArrays: ``x`` the uint8 ``images`` preprocessed to ``size``
    pixels (:func:`preprocess_nd`), ``y`` their ``labels`` as int32.

    Parameters:
        batch_size: images per batch; ``last_batch`` says what happens to a short last one
            (Gluon's ``"keep"``, ``"discard"``, ``"rollover"``).
        shuffle: a new order every pass, from Gluon's ``RandomSampler`` after ``np.random.seed(seed)``
            (``mx.random.seed(seed)`` too, which seeds dropout), else the given order. The order is
            drawn when a pass starts, in the thread that starts it.
        prefetch: how a batch is prepared (:data:`PREFETCH_MODES`): ``"sync"``, when drawn, waiting
            for its resize; ``"engine"``, when drawn, its resize queued on MXNet's engine, not waited
            for; ``"thread"``, by a background thread :data:`PREFETCH_DEPTH_BATCHES` batches ahead.
            Every mode gives the same batches in the same order; :data:`DEFAULT_PREFETCH` says
            which one pays and why.
    """
    mx = import_mxnet()
    gluon = import_mxnet().gluon

    if prefetch not in PREFETCH_MODES:
        raise VggbenchError(f"unknown prefetch mode {prefetch!r}; use one of {', '.join(PREFETCH_MODES)}")
    if shuffle:
        mx.random.seed(seed)
        np.random.seed(seed)
    sampler = gluon.data.RandomSampler(len(labels)) if shuffle else gluon.data.SequentialSampler(len(labels))
    return BatchLoader(images, labels, size, gluon.data.BatchSampler(sampler, batch_size, last_batch), prefetch)


class BatchLoader:
    """What :func:`data_loader` returns: ``len()`` batches per pass; every ``iter()`` is a pass.

    Parameters: ``images``/``labels`` (uint8 and integer arrays), ``size`` in pixels, a Gluon
    ``batch_sampler`` of index lists and a ``prefetch`` mode (:func:`data_loader` says what they mean).
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, size: int, batch_sampler, prefetch: str):
        self.images, self.labels, self.size = images, labels, size
        self.batch_sampler, self.prefetch = batch_sampler, prefetch

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def __iter__(self) -> Iterator[tuple]:
        order = list(self.batch_sampler)  # this pass's shuffle is drawn here, in the caller's thread
        batches = map(self._batch, order)
        return prefetched(batches, PREFETCH_DEPTH_BATCHES) if self.prefetch == "thread" else batches

    def _batch(self, indices: Sequence[int]) -> tuple:
        mx = import_mxnet()

        index = np.asarray(indices, dtype=np.int64)
        x = preprocess_nd(self.images[index], self.size)
        if self.prefetch == "sync":
            x.wait_to_read()
        return x, mx.nd.array(self.labels[index].astype(np.int32))


def prefetched(items: Iterable[T], depth_items: int = 1) -> Iterator[T]:
    """Yield ``items`` in order while a background thread draws up to ``depth_items`` ahead.

    An exception raised while drawing is raised here, at the item it replaced. Closing the
    generator (a ``break``, an error in the consumer, garbage collection) stops the thread and
    waits for it, so no thread outlives the pass.
    """
    ready: "queue.Queue[Tuple[bool, Any]]" = queue.Queue(maxsize=max(1, depth_items))
    stop = threading.Event()

    def put(entry: Tuple[bool, Any]) -> bool:
        while not stop.is_set():
            try:
                ready.put(entry, timeout=PREFETCH_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((True, item)):
                    return
        except BaseException as err:  # noqa: B902 - handed to the consumer, raised there
            put((False, err))
            return
        put((False, None))

    thread = threading.Thread(target=produce, name="vggbench-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            has_item, value = ready.get()
            if not has_item:
                if value is not None:
                    raise value
                return
            yield value
    finally:
        stop.set()
        thread.join()


def load_split(data_dir: Optional[str], train: bool, limit: Optional[int] = None,
               seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """The images and labels a stage works on: the train (``train=True``) or test split of the
    Fashion-MNIST files in ``data_dir`` (resolved as :func:`resolve_data_dir`), all of it, or a
    fixed ``seed`` random subset of ``limit`` examples (:func:`subset`)."""
    images, labels = load_fashion_mnist(data_dir, train=train)
    return subset(images, labels, limit, seed=seed)
