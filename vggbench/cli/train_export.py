"""``vggbench train-export``: train a model on Fashion-MNIST, export MXNet + ONNX, check parity, write a run dir."""

from __future__ import annotations

from vggbench.cli.flags import (
    add_command,
    batch_size,
    data_dir_flag,
    input_size,
    learning_rate,
    number,
    positive_float,
    positive_int,
    seed_type,
    threads_flag,
)
from vggbench.errors import EXIT_OK, VggbenchError
from vggbench.train.distributed.kvstore import KVSTORES
from vggbench.train.recipes import RECIPES

NAME = "train-export"


def add(sub) -> None:
    p = add_command(sub, NAME, run)
    p.add_argument("model", help="model name, e.g. vgg11, vgg11_bn, vgg16 (see `vggbench models`)")
    p.add_argument("--recipe", choices=tuple(RECIPES),
                   help="training recipe (default: the model's lesson recipe: lenet, alexnet, or vgg for every VGG); "
                        + "; ".join(f"{r.name}: {r.summary}" for r in RECIPES.values()))
    p.add_argument("--size", type=input_size, help="input size in pixels (default 96, or the recipe's; the paper uses 224)")
    p.add_argument("--epochs", type=positive_int, help="total epochs (default: the recipe's, 5)")
    p.add_argument("--batch-size", type=batch_size, help="training batch size (default: the recipe's)")
    p.add_argument("--lr", type=learning_rate, help="learning rate (default: the recipe's: LeNet 0.9, AlexNet 0.01, "
                                                     "VGG 0.05)")
    p.add_argument("--width-ratio", type=positive_float,
                   help="divide conv channels by this (default 1 = full width, or the recipe's; 8 for a quick CPU run)")
    p.add_argument("--until-plateau", action="store_true",
                   help="train until held-out accuracy stops improving (see --patience, --min-delta), at most "
                        "--max-epochs")
    p.add_argument("--patience", type=positive_int, default=3, metavar="K",
                   help="--until-plateau: stop after K epochs without an improvement (default 3)")
    p.add_argument("--min-delta", type=number(float, 0.0), default=0.002, metavar="D",
                   help="--until-plateau: an improvement must exceed D in held-out accuracy, a fraction (default 0.002)")
    p.add_argument("--max-epochs", type=positive_int, metavar="M",
                   help="--until-plateau: the most epochs to train (default: --epochs)")
    p.add_argument("--holdout", type=number(float, 0.0, below=1.0), metavar="F",
                   help="hold out this fraction of the training images to measure held-out accuracy every epoch "
                        "(default 0, or 0.1 with --until-plateau)")
    p.add_argument("--ctx", default="auto", metavar="auto|cpu|gpu|gpu:0,gpu:1",
                   help="devices to train on (default auto: a GPU if MXNet can use one, else CPU)")
    p.add_argument("--train-limit", type=positive_int, metavar="N", help="train on a fixed random N images")
    p.add_argument("--test-limit", type=positive_int, metavar="N", help="evaluate on a fixed random N test images")
    p.add_argument("--parity-images", type=positive_int, default=256, metavar="N",
                   help="test images for the MXNet vs ONNX Runtime parity gate (default 256)")
    data_dir_flag(p)
    threads_flag(p)
    p.add_argument("--out", default="runs", help="parent folder of run dirs (default runs)")
    p.add_argument("--name", help="run dir name (default MODEL-SIZE, or MODEL-wR-SIZE when the width ratio is not 1)")
    p.add_argument("--seed", type=seed_type, default=0, help="seed for init, shuffling, dropout and subsets (default 0)")
    p.add_argument("--resume", action="store_true", help="continue the run dir's last checkpoint")
    p.add_argument("--force", action="store_true", help="start over even if the run dir holds a run")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bars (per-epoch lines only)")
    p.add_argument("--optimize", action="store_true",
                   help="afterwards, also build the ORT-optimized, INT8 and FP16 variants (vggbench optimize)")
    p.add_argument("--kvstore", default="device", choices=KVSTORES,
                   help="MXNet KVStore: device/local on one machine; dist_sync, dist_device_sync or dist_async for "
                        "several machines, started by `vggbench launch` (default device)")
    p.add_argument("--dist-timeout", type=positive_float, metavar="S",
                   help="dist_*: end this worker with one line when a KVStore wait takes S seconds (a peer died); "
                        "default $VGGBENCH_DIST_TIMEOUT_S, else 300")


def run(args) -> int:
    """Train a model on Fashion-MNIST, export MXNet + ONNX, check parity, write a run dir.

    Train MODEL with its lesson's recipe (--recipe names another), export it to
    MXNet symbol/params and ONNX, check ONNX Runtime against MXNet, and write OUT/NAME/ with
    manifest.json. Checkpoints after every epoch; --resume continues.
    """
    from vggbench.workflows import train_export_and_optimize

    if args.max_epochs and not args.until_plateau:
        raise VggbenchError("--max-epochs bounds --until-plateau; without it use --epochs")
    run_dir = train_export_and_optimize(
        args.model, optimize=args.optimize, input_size=args.size, epochs=args.max_epochs or args.epochs,
        batch_size=args.batch_size, lr=args.lr, recipe=args.recipe, until_plateau=args.until_plateau,
        patience=args.patience, min_delta=args.min_delta, holdout=args.holdout,
        width_ratio=args.width_ratio, ctx=args.ctx, train_limit=args.train_limit,
        test_limit=args.test_limit, data_dir=args.data_dir, out=args.out, name=args.name, seed=args.seed,
        resume=args.resume, force=args.force, parity_images=args.parity_images, progress=not args.no_progress,
        threads=args.threads, kvstore=args.kvstore, dist_timeout_s=args.dist_timeout)
    if run_dir is not None:  # in a distributed job only rank 0 writes the run dir
        print(run_dir)
    return EXIT_OK
