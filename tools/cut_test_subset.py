#!/usr/bin/env python3
"""Cut the committed test subset (tests/data/) out of the original Fashion-MNIST files.

Usage: python tools/cut_test_subset.py SOURCE_DIR [--out tests/data] [--train-per-class 200]
                                       [--test-per-class 100]

SOURCE_DIR holds Zalando's four original ``*-idx?-ubyte.gz`` files; each is checked against the md5
Zalando publishes before anything is read, so the subset can only come from the real data set.

The cut is class-balanced and keeps the original order: an image is taken when fewer than
``per_class`` earlier images of its split carry its label, so the subset holds the first
``per_class`` images of every class (and starts with the same images as the original files).
Written in the original IDX gzip format; the gzip header carries the original file name and mtime 0,
at level 9, so the same source and the same zlib give byte-identical files. ``subset.json`` records
the rule, the counts, and the sha256 of every source file, of every written ``.gz`` and of its
decompressed IDX bytes (the part that holds whatever zlib build wrote it); ``SHA256SUMS`` lists the
written files in ``sha256sum -c`` format.

Standard library only: it runs before the package is installed.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import struct
import sys
from pathlib import Path

# Zalando's published md5 of the original files (github.com/zalandoresearch/fashion-mnist README).
ORIGINAL_MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
SPLITS = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
          "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
NUM_CLASSES = 10
IMAGE_BYTES = 28 * 28
LICENSE_NOTE = "Fashion-MNIST, MIT License, Copyright (c) 2017 Zalando SE (see LICENSE)"


def _digest(data: bytes, algorithm: str) -> str:
    return hashlib.new(algorithm, data).hexdigest()


def _read_source(path: Path) -> bytes:
    """The source file's bytes, refused unless its md5 is Zalando's published one."""
    raw = path.read_bytes()
    md5 = _digest(raw, "md5")
    if md5 != ORIGINAL_MD5[path.name]:
        raise SystemExit(f"{path}: md5 {md5} is not the published {ORIGINAL_MD5[path.name]}; "
                         f"point SOURCE_DIR at Zalando's original files")
    return raw


def _idx(raw_gz: bytes, magic: int) -> tuple:
    """(count, payload) of a gzip IDX file, with its header checked."""
    raw = gzip.decompress(raw_gz)
    header = 16 if magic == 2051 else 8
    found, count = struct.unpack(">II", raw[:8])
    if found != magic or len(raw) != header + count * (IMAGE_BYTES if magic == 2051 else 1):
        raise SystemExit(f"not an IDX file with magic {magic} and a matching length")
    return count, raw[header:]


def _gzip_bytes(payload: bytes, name: str) -> bytes:
    """Deterministic gzip: the original name without .gz in the header, mtime 0, level 9."""
    buffer = io.BytesIO()
    with gzip.GzipFile(filename=name[:-3], mode="wb", fileobj=buffer, compresslevel=9, mtime=0) as handle:
        handle.write(payload)
    return buffer.getvalue()


def cut(source_dir: Path, out_dir: Path, per_class: dict) -> dict:
    """Write the subset into ``out_dir`` and return the record written to ``subset.json``."""
    record = {"what": "a class-balanced subset of Fashion-MNIST in the original IDX gzip format",
              "rule": "per split, every image while fewer than per_class earlier images share its label; "
                      "original order kept",
              "license": LICENSE_NOTE, "zlib": __import__("zlib").ZLIB_VERSION, "splits": {}, "sources": {},
              "outputs": {}}
    written = {}
    for split, (image_name, label_name) in SPLITS.items():
        image_raw, label_raw = _read_source(source_dir / image_name), _read_source(source_dir / label_name)
        for name, raw in ((image_name, image_raw), (label_name, label_raw)):
            record["sources"][name] = {"bytes": len(raw), "md5": _digest(raw, "md5"), "sha256": _digest(raw, "sha256")}
        count, pixels = _idx(image_raw, 2051)
        label_count, labels = _idx(label_raw, 2049)
        if count != label_count:
            raise SystemExit(f"{image_name} has {count} images but {label_name} has {label_count} labels")
        seen = [0] * NUM_CLASSES
        keep = []
        for index, label in enumerate(labels):
            if seen[label] < per_class[split]:
                seen[label] += 1
                keep.append(index)
        if seen != [per_class[split]] * NUM_CLASSES:
            raise SystemExit(f"{split}: only {seen} images per class in the source")
        kept_labels = bytes(labels[i] for i in keep)
        kept_pixels = b"".join(pixels[i * IMAGE_BYTES:(i + 1) * IMAGE_BYTES] for i in keep)
        n = len(keep)
        written[image_name] = struct.pack(">IIII", 2051, n, 28, 28) + kept_pixels
        written[label_name] = struct.pack(">II", 2049, n) + kept_labels
        record["splits"][split] = {
            "images": n, "per_class": per_class[split], "of_original": count,
            "last_original_index": keep[-1],
            "first_labels": list(kept_labels[:10]),
            "mean_pixel": round(sum(kept_pixels) / len(kept_pixels), 4),
        }
    out_dir.mkdir(parents=True, exist_ok=True)
    sums = []
    for name, payload in written.items():
        data = _gzip_bytes(payload, name)
        temp = out_dir / f".{name}.part"
        temp.write_bytes(data)
        os.replace(temp, out_dir / name)
        record["outputs"][name] = {"bytes": len(data), "sha256": _digest(data, "sha256"),
                                   "idx_bytes": len(payload), "idx_sha256": _digest(payload, "sha256")}
        sums.append(f"{record['outputs'][name]['sha256']}  {name}\n")
    (out_dir / "SHA256SUMS").write_text("".join(sums))
    (out_dir / "subset.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source_dir", type=Path, help="folder with the four original Fashion-MNIST .gz files")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "tests" / "data")
    parser.add_argument("--train-per-class", type=int, default=200)
    parser.add_argument("--test-per-class", type=int, default=100)
    args = parser.parse_args(argv)
    record = cut(args.source_dir, args.out, {"train": args.train_per_class, "test": args.test_per_class})
    for name, info in record["outputs"].items():
        print(f"{name}: {info['bytes']} bytes, sha256 {info['sha256']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
