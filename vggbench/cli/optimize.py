"""``vggbench optimize``: write ORT-optimized, INT8 and FP16 variants of a run dir's model.onnx, with accuracy gates."""

from __future__ import annotations

from vggbench.cli.flags import add_command, data_dir_flag, non_negative_float, positive_int, seed_type, threads_flag
from vggbench.errors import EXIT_OK

NAME = "optimize"


def add(sub) -> None:
    from vggbench.data import TEST_IMAGES
    from vggbench.export.variants import (
        CALIBRATION_METHODS,
        DEFAULT_CALIB_IMAGES,
        DEFAULT_CALIB_METHOD,
        DEFAULT_MAX_ACCURACY_DROP_POINTS,
    )

    p = add_command(sub, NAME, run)
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run dir made by train-export")
    p.add_argument("--int8", action="store_true",
                   help="build the INT8 variant (with --fp16/--int8 given, only those are built besides opt; "
                        "with neither, all three are)")
    p.add_argument("--fp16", action="store_true", help="build the FP16 variant (see --int8)")
    p.add_argument("--calib-images", type=positive_int, default=DEFAULT_CALIB_IMAGES, metavar="N",
                   help=f"training images to calibrate INT8 on (default {DEFAULT_CALIB_IMAGES}; never test images)")
    p.add_argument("--calib-method", choices=CALIBRATION_METHODS, default=DEFAULT_CALIB_METHOD,
                   help=f"INT8 activation-range calibration (default {DEFAULT_CALIB_METHOD})")
    p.add_argument("--max-accuracy-drop", type=non_negative_float, default=DEFAULT_MAX_ACCURACY_DROP_POINTS,
                   metavar="POINTS", help="flag a variant whose test accuracy is this many percentage points below "
                                          f"fp32 (default {DEFAULT_MAX_ACCURACY_DROP_POINTS:g})")
    p.add_argument("--accuracy-limit", type=positive_int, metavar="N",
                   help=f"measure accuracy on a fixed random N test images (default: all {TEST_IMAGES:,})")
    p.add_argument("--seed", type=seed_type, default=0, help="seed of the calibration and test subsets (default 0)")
    data_dir_flag(p)
    threads_flag(p)
    p.add_argument("--no-progress", action="store_true", help="no tqdm bars")


def run(args) -> int:
    """Write ORT-optimized, INT8 and FP16 variants of a run dir's model.onnx, with accuracy gates.

    Write model.opt.onnx (ONNX Runtime's offline-optimized graph, for ort-cpu) and, by default,
    model.int8.onnx (static QDQ quantization calibrated on training images) and model.fp16.onnx
    (float16 inside, float32 in/out, for ort-cuda) next to RUN_DIR/model.onnx. Each is measured on
    the test set against model.onnx and recorded in manifest.json; a variant whose accuracy drops by
    more than --max-accuracy-drop points is flagged.
    """
    from vggbench.export.variants import optimize_run_dir, variants_table

    both = not (args.int8 or args.fp16)
    variants = optimize_run_dir(
        args.run_dir, int8=args.int8 or both, fp16=args.fp16 or both, calib_images=args.calib_images,
        calib_method=args.calib_method, data_dir=args.data_dir, max_accuracy_drop_points=args.max_accuracy_drop,
        seed=args.seed, accuracy_limit=args.accuracy_limit, progress=not args.no_progress, threads=args.threads)
    print(variants_table(variants))
    return EXIT_OK
