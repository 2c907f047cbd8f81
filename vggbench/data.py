"""Fashion-MNIST: find the files, read and validate the IDX format, preprocess like the lesson.

We read the four original gzip IDX files ourselves. Gluon's ``FashionMNIST`` class verifies the
sha1 of MXNet's own mirror copies (which differ byte-wise from Zalando's originals), so given the
originals it would try to download again; we use it only to download when files are missing and
the machine is online.

Data dir resolution: ``--data-dir`` flag > ``VGGBENCH_DATA`` env var > the default cache dir.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path
from typing import Iterator, Optional, Tuple

import numpy as np

from vggbench.errors import VggbenchError

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


def default_data_dir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "vggbench" / "fashion-mnist"


def resolve_data_dir(data_dir: Optional[str] = None) -> Path:
    """Flag beats env var beats the default cache dir."""
    chosen = data_dir or os.environ.get(DATA_ENV_VAR) or default_data_dir()
    return Path(chosen).expanduser()


def missing_files(data_dir: Path) -> list:
    return [name for name in ALL_FILES if not (Path(data_dir) / name).is_file()]


def ensure_data(data_dir: Optional[str] = None, download: bool = True) -> Path:
    """Return a data dir holding the four files, downloading them with Gluon when possible."""
    path = resolve_data_dir(data_dir)
    missing = missing_files(path)
    if missing and download:
        _download_with_gluon(path)
        missing = missing_files(path)
    if missing:
        raise VggbenchError(
            f"Fashion-MNIST files missing in {path}: {', '.join(missing)} "
            f"(need {', '.join(ALL_FILES)}); put them there, or point --data-dir or "
            f"{DATA_ENV_VAR} at a folder that has them")
    return path


def _download_with_gluon(path: Path) -> None:
    """Online path: Gluon's own dataset class fetches the files into ``path``.

    Any failure (typically: no network) is swallowed here; the caller then reports the missing
    files in one line.
    """
    try:
        from mxnet.gluon.data.vision import FashionMNIST

        path.mkdir(parents=True, exist_ok=True)
        for train in (True, False):
            FashionMNIST(root=str(path), train=train)
    except Exception:  # noqa: BLE001 - offline or mirror down: report missing files instead
        pass


def _read_gzip(path: Path) -> bytes:
    try:
        with gzip.open(path, "rb") as handle:
            return handle.read()
    except (OSError, EOFError, zlib.error) as err:
        raise VggbenchError(f"{path}: not a readable gzip file ({err}); "
                            f"replace it with the original Fashion-MNIST file") from None


def parse_idx(raw: bytes, expected_magic: int, source: str = "<bytes>") -> np.ndarray:
    """Parse IDX bytes (big-endian uint32 header, then uint8 data), checking every length."""
    if len(raw) < 8:
        raise VggbenchError(f"{source}: only {len(raw)} bytes, too short for an IDX header")
    magic, count = struct.unpack(">II", raw[:8])
    if magic != expected_magic:
        raise VggbenchError(f"{source}: IDX magic number is {magic}, expected {expected_magic} "
                            f"({'images' if expected_magic == IMAGES_MAGIC else 'labels'}); "
                            f"is it the right file?")
    dims = [count]
    header = 8
    if magic == IMAGES_MAGIC:
        if len(raw) < 16:
            raise VggbenchError(f"{source}: truncated IDX image header ({len(raw)} bytes)")
        dims += list(struct.unpack(">II", raw[8:16]))
        header = 16
    expected = header + int(np.prod(dims))
    if len(raw) != expected:
        raise VggbenchError(f"{source}: {len(raw)} bytes but the header {tuple(dims)} needs {expected}; "
                            f"the file is truncated or corrupt")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def encode_idx(array: np.ndarray) -> bytes:
    """Inverse of :func:`parse_idx` for uint8 images [N,H,W] or labels [N]."""
    array = np.asarray(array, dtype=np.uint8)
    magic = IMAGES_MAGIC if array.ndim == 3 else LABELS_MAGIC
    return struct.pack(">I", magic) + struct.pack(">" + "I" * array.ndim, *array.shape) + array.tobytes()


def load_fashion_mnist(data_dir: Optional[str] = None, train: bool = True) -> Tuple[np.ndarray, np.ndarray]:
    """Return ``(images uint8 [N,28,28], labels int32 [N])`` for the train or test split."""
    path = ensure_data(data_dir)
    image_file, label_file = (path / name for name in FILES[train])
    images = parse_idx(_read_gzip(image_file), IMAGES_MAGIC, str(image_file))
    labels = parse_idx(_read_gzip(label_file), LABELS_MAGIC, str(label_file))
    if images.shape[0] != labels.shape[0]:
        raise VggbenchError(f"{image_file} has {images.shape[0]} images but {label_file} has "
                            f"{labels.shape[0]} labels; the two files do not belong together")
    if images.shape[1:] != (28, 28):
        raise VggbenchError(f"{image_file}: images are {images.shape[1:]}, Fashion-MNIST's are 28x28")
    if labels.size and labels.max() >= NUM_CLASSES:
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
    import mxnet as mx

    batch = mx.nd.array(images[:, None, :, :], dtype="float32") / 255.0
    if size != images.shape[-1]:
        batch = mx.nd.contrib.BilinearResize2D(batch, height=size, width=size, align_corners=False)
    return batch.clip(0.0, 1.0).asnumpy()


def iter_batches(images: np.ndarray, labels: np.ndarray, size: int, batch_size: int
                 ) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
    """Preprocessed ``(x float32 [B,1,size,size], y int32 [B])`` batches in order (for evaluation)."""
    for start in range(0, len(labels), batch_size):
        yield preprocess(images[start:start + batch_size], size), labels[start:start + batch_size]


def data_loader(images: np.ndarray, labels: np.ndarray, size: int, batch_size: int,
                shuffle: bool, seed: int = 0, last_batch: str = "keep"):
    """A Gluon ``DataLoader`` over uint8 images that resizes each batch as it is drawn."""
    import mxnet as mx
    from mxnet import gluon

    dataset = gluon.data.ArrayDataset(images, labels)

    def batchify(samples):
        batch_images = np.stack([s[0] for s in samples])
        batch_labels = np.array([s[1] for s in samples], dtype=np.int32)
        return mx.nd.array(preprocess(batch_images, size)), mx.nd.array(batch_labels)

    if shuffle:
        mx.random.seed(seed)
        np.random.seed(seed)
    return gluon.data.DataLoader(dataset, batch_size=batch_size, shuffle=shuffle,
                                 batchify_fn=batchify, last_batch=last_batch, num_workers=0)
