#!/usr/bin/env python3
"""The GPU support matrix from what the installed wheels contain, or a check of docs/gpus.md against it.

For each GPU build installed in this interpreter (onnxruntime-gpu's CUDA provider library,
mxnet-cu*'s libmxnet.so) it reads the SASS and PTX architectures from the library's ``.nv_fatbin``
section (vggbench.platform.cuda_code: headers only, no cuobjdump, no GPU) and says what runs on one
GPU of each generation: machine code (``sm_86``), PTX compiled by the driver on first use, or
nothing. It also checks vggbench's own constant for mxnet-cu117 against libmxnet.so.

    python tools/gpu_support_matrix.py                      # print the rows for the builds installed here
    python tools/gpu_support_matrix.py --check docs/gpus.md # exit 1 if the page lacks one of those rows
    python tools/gpu_support_matrix.py --library PATH --build NAME   # any CUDA library

Exit status: 0 ok, 1 the page or a constant disagrees with the wheels, 2 nothing to check here
(no GPU build installed and no --library) when --check asks for one (--require-build).
"""

from __future__ import annotations

import argparse
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vggbench.platform.cuda_code import NotACudaLibrary, kernel_for, read_cuda_code  # noqa: E402

# One GPU per column: (header, compute capability). The header names the generation and the
# capability checked; a generation's other capabilities follow the same rules (cuda_code.kernel_for).
GPU_COLUMNS = (("Maxwell 5.2", (5, 2)), ("Pascal 6.1", (6, 1)), ("Volta 7.0", (7, 0)), ("Turing 7.5", (7, 5)),
               ("Ampere 8.6", (8, 6)), ("Ada 8.9", (8, 9)), ("Hopper 9.0", (9, 0)),
               ("Blackwell 10.0", (10, 0)), ("Blackwell 12.0", (12, 0)))
# Where each GPU build keeps its kernels, relative to site-packages.
GPU_BUILDS = (("onnxruntime-gpu", "onnxruntime/capi/libonnxruntime_providers_cuda.so", "CUDA provider"),
              ("mxnet-cu117", "mxnet/libmxnet.so", "libmxnet.so"))


def header() -> list[str]:
    columns = ["build", "SASS (machine code)", "PTX"] + [name for name, _ in GPU_COLUMNS]
    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]


def row(build: str, library: Path) -> tuple[str, object]:
    """The Markdown row for ``library`` and its CudaCode."""
    code = read_cuda_code(library)
    cells = [build, " ".join(code.sass) or "none", " ".join(code.ptx) or "none"]
    for _, capability in GPU_COLUMNS:
        found = kernel_for(code, capability)
        cells.append("no" if found is None else ("PTX JIT" if "PTX" in found else found))
    return "| " + " | ".join(cells) + " |", code


def installed_builds() -> list[tuple[str, Path]]:
    """``(build name, library path)`` of every GPU build installed for this interpreter."""
    found = []
    for distribution, relative, part in GPU_BUILDS:
        try:
            dist = metadata.distribution(distribution)
        except metadata.PackageNotFoundError:
            continue
        library = Path(dist.locate_file(relative))
        if library.is_file():
            found.append((f"{distribution} {dist.version} {part}", library))
    return found


def check_mxnet_constant(code) -> list[str]:
    """vggbench's MXNET_CU117_ARCHITECTURES against libmxnet.so's SASS (and no PTX)."""
    from vggbench.platform.gpu import MXNET_CU117_ARCHITECTURES

    declared = [f"sm_{major}{minor}" for major, minor in MXNET_CU117_ARCHITECTURES]
    problems = []
    if list(code.sass) != declared:
        problems.append(f"MXNET_CU117_ARCHITECTURES says {declared}, libmxnet.so holds {list(code.sass)}")
    if code.ptx:
        problems.append(f"libmxnet.so holds PTX {list(code.ptx)}: vggbench.platform.gpu assumes none")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", type=Path, help="a Markdown page that must hold every generated row")
    parser.add_argument("--library", type=Path, help="a CUDA library to read instead of the installed builds")
    parser.add_argument("--build", default=None, help="the build name for --library's row")
    parser.add_argument("--require-build", action="store_true",
                        help="exit 2 when no GPU build is installed here (a CI job that should have one)")
    args = parser.parse_args(argv)

    builds = [(args.build or args.library.name, args.library)] if args.library else installed_builds()
    if not builds:
        print("gpu_support_matrix: no GPU build installed here (onnxruntime-gpu, mxnet-cu117): nothing to read")
        return 2 if args.require_build else 0
    page = args.check.read_text() if args.check else None
    problems, lines = [], header()
    for build, library in builds:
        try:
            line, code = row(build, library)
        except NotACudaLibrary as err:
            problems.append(f"{library}: {err}")
            continue
        lines.append(line)
        if build.startswith("mxnet-cu117"):
            problems.extend(check_mxnet_constant(code))
        if page is not None and line not in page.splitlines():
            problems.append(f"{args.check} lacks this row (the wheel's content changed, or the page did):\n{line}")
    print("\n".join(lines))
    for problem in problems:
        print(f"gpu_support_matrix: {problem}", file=sys.stderr)
    if page is not None and not problems:
        print(f"gpu_support_matrix: {args.check} holds the rows of the {len(builds)} build(s) installed here")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
