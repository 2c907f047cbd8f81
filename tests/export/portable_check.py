"""Do a run dir's ONNX files give the same logits in another ONNX Runtime? (portable ONNX check)

Two steps, in two environments (the ``ort-oldest`` tox env runs both):

``python tests/export/portable_check.py make RUN_DIR``
    with the current stack (vggbench installed): trains a tiny real vgg11_bn (tests/helpers.py's
    TINY_RECIPE), writes its int8 and fp16 variants, and saves ``portable_reference.npz`` in the
    run dir: fixed preprocessed test images and each file's logits from this ONNX Runtime.
``python tests/export/portable_check.py check RUN_DIR``
    in any environment with numpy and onnxruntime (the ``ort-oldest`` env: 1.16.3, the oldest
    vggbench supports): runs every file on the same images and fails unless the logits match
    (fp32 within 1e-4 absolute; int8/fp16 within :data:`LOGIT_TOLERANCE`) and top-1 is identical.

``check`` imports neither vggbench nor mxnet, so it runs against an old ONNX Runtime unchanged.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REFERENCE_FILE = "portable_reference.npz"
FILES = {"fp32": "model.onnx", "int8": "model.int8.onnx", "fp16": "model.fp16.onnx"}
N_IMAGES = 256
# fp32: the same float kernels up to summation order. Measured here (AMD EPYC Zen 3, AVX2), ORT
# 1.16.3 against 1.32.0 on the tiny model: fp32 and int8 bit-identical, fp16 7.3e-5; int8/fp16 get
# 1e-3, room for another CPU's kernels rounding differently, far below what would flip a top-1.
LOGIT_TOLERANCE = {"fp32": 1e-4, "int8": 1e-3, "fp16": 1e-3}


def make(run_dir: Path) -> None:
    """Train, export and optimize a tiny model into ``run_dir`` and save the current ORT's logits."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for helpers.py
    import onnxruntime as ort
    from helpers import TINY_RECIPE, real_data_dir

    from vggbench import data, train
    from vggbench.export.variants import optimize_run_dir
    from vggbench.runtimes.ort_runtime import make_session

    data_dir = str(real_data_dir())
    run_dir = Path(run_dir)
    trained = train.train_export(data_dir=data_dir, out=str(run_dir.parent), name=run_dir.name, force=True,
                                 progress=False, **TINY_RECIPE)
    optimize_run_dir(trained, opt=False, int8=True, fp16=True, accuracy_limit=N_IMAGES, data_dir=data_dir,
                     progress=False, log=lambda message: None)
    images, _ = data.subset(*data.load_fashion_mnist(data_dir, train=False), N_IMAGES, seed=1)
    x = data.preprocess(images, TINY_RECIPE["input_size"])
    logits = {precision: _logits(make_session(trained / name), x) for precision, name in FILES.items()}
    np.savez_compressed(trained / REFERENCE_FILE, x=x, **logits)
    (trained / "portable_reference.json").write_text(json.dumps({"onnxruntime": ort.__version__,
                                                                 "files": FILES}, indent=1))
    print(f"portable_check make: {trained}, reference logits from onnxruntime {ort.__version__}")


def _logits(session, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: x[i:i + batch_size]})[0] for i in range(0, len(x), batch_size)])


def check(run_dir: Path) -> int:
    """Run ``run_dir``'s files in the installed ONNX Runtime against the saved reference; 0 when all agree."""
    import onnxruntime as ort

    run_dir = Path(run_dir)
    reference = np.load(run_dir / REFERENCE_FILE)
    made_with = json.loads((run_dir / "portable_reference.json").read_text())["onnxruntime"]
    x, failures = reference["x"], []
    print(f"portable_check: onnxruntime {ort.__version__} against {made_with}, {len(x)} test images")
    for precision, name in FILES.items():
        options = ort.SessionOptions()
        options.log_severity_level = 3
        session = ort.InferenceSession(str(run_dir / name), options, providers=["CPUExecutionProvider"])
        logits, expected = _logits(session, x), reference[precision]
        max_diff = float(np.max(np.abs(logits - expected)))
        top1 = float(np.mean(logits.argmax(1) == expected.argmax(1)))
        ok = max_diff <= LOGIT_TOLERANCE[precision] and top1 == 1.0
        print(f"  {precision:>4} {name:<16} max |logit diff| {max_diff:.2e} (limit {LOGIT_TOLERANCE[precision]:.0e}), "
              f"top-1 agreement {top1:.4f}: {'ok' if ok else 'FAIL'}")
        if not ok:
            failures.append(precision)
    failures += _control_unstamped_is_refused(run_dir / FILES["fp32"])
    if failures:
        print(f"portable_check: FAILED: {', '.join(failures)}")
    return 1 if failures else 0


def _control_unstamped_is_refused(path: Path) -> list:
    """The premise: an old ONNX Runtime refuses what mx.onnx declared before the stamp (IR 11)."""
    import onnxruntime as ort

    if tuple(int(p) for p in ort.__version__.split(".")[:2]) >= (1, 18):
        return []  # IR 10+ readers: nothing to show
    try:
        import onnx
    except ImportError:
        return []
    model = onnx.load(str(path))
    model.ir_version = 11
    try:
        ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    except Exception as err:  # noqa: BLE001 (ORT raises its own, version-specific, types)
        print(f"  control: the same graph declared IR 11 is refused: {str(err).splitlines()[0][-90:]}")
        return []
    print("  control: FAIL: this onnxruntime loads IR 11, so the check shows nothing about portability")
    return ["control"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=("make", "check"))
    parser.add_argument("run_dir", type=Path)
    args = parser.parse_args(argv)
    if args.step == "make":
        make(args.run_dir)
        return 0
    return check(args.run_dir)


if __name__ == "__main__":
    sys.exit(main())
