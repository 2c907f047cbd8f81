"""Does overlapping data preparation with the training step pay? (issue 14 item 2)

Rerun from the repository root (about 10 minutes on 2 busy vCPUs; not collected by pytest)::

    .venv/bin/python benchmarks/measure_overlap.py
    .venv/bin/python benchmarks/measure_overlap.py --sizes 96 --pairs 3 --batches 4 --json overlap.json

What it times: :func:`vggbench.train.loop.train_epoch` (forward, loss, the per-batch NaN check,
backward, SGD step) on vgg11_bn at width 1/8, batch 64, real Fashion-MNIST, MXNet on ``--threads``
threads (set before mxnet is imported), with the training loader in each of
:data:`vggbench.data.PREFETCH_MODES`:

- ``sync``: each batch resized when drawn, waiting for the resize (as the loader did before
  issue 14, less its copy of every batch to the host and back);
- ``engine``: the resize queued on MXNet's engine and not waited for, so the next batch is
  prepared while the current backward pass runs;
- ``thread``: a background thread prepares up to two batches ahead.

One network and trainer per input size, one warm-up epoch per mode, then ``--pairs`` cycles in
which every mode trains one epoch of ``--batches`` batches, the order rotating each cycle (sync
engine thread, engine thread sync, ...), so the slow moments of a shared machine fall on every mode
alike. A mode's speedup is the median of its per-cycle ratios to ``sync`` with a 95% bootstrap
interval (:func:`vggbench.bench.stats.paired_ratio_ci`); "clear" means the interval excludes 1.00. Also
printed: the resize of one batch alone against one whole step, the load average before and after,
and the share of the CPUs that other processes used during the run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vggbench.platform.mxnet import import_mxnet  # noqa: E402  (after the path; mxnet before anything imports it)

MODEL, WIDTH_RATIO, BATCH_SIZE = "vgg11_bn", 8, 64
RESIZE_REPEATS = 7


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[96, 224], help="input sizes in pixels")
    parser.add_argument("--pairs", type=int, default=5, help="timed cycles (each mode once per cycle)")
    parser.add_argument("--batches", type=int, default=6, help="batches per timed epoch")
    parser.add_argument("--threads", type=int, default=2, help="MXNet's OpenMP threads")
    parser.add_argument("--data-dir", default=None, help="Fashion-MNIST files (default: $VGGBENCH_DATA)")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    return parser.parse_args(argv)


def resize_ms(images, size: int) -> float:
    """Median milliseconds of :func:`vggbench.data.preprocess` on ``images`` (waited for)."""
    from vggbench import data

    seconds = []
    for _ in range(RESIZE_REPEATS):
        start = time.perf_counter()
        data.preprocess(images, size)
        seconds.append(time.perf_counter() - start)
    return 1000 * statistics.median(seconds)


def measure_size(size: int, images, labels, args: argparse.Namespace) -> Dict[str, Any]:
    """Rounds of images/s per prefetch mode at ``size`` pixels, timed in rotating order."""
    from vggbench import data, train
    from vggbench.bench import stats

    mx = import_mxnet()
    recipe = train.Recipe(MODEL, input_size=size, width_ratio=WIDTH_RATIO, batch_size=BATCH_SIZE)
    contexts = [mx.cpu()]
    net = train.build_network(recipe, contexts)
    trainer = train.build_trainer(net, recipe)
    modes = list(data.PREFETCH_MODES)

    def epoch(mode: str, seed: int) -> float:
        loader = data.data_loader(images, labels, size, BATCH_SIZE, shuffle=True, seed=seed, prefetch=mode)
        result = train.train_epoch(net, trainer, recipe.make_loss(), loader, contexts, 1, 1, recipe.lr,
                                   progress=False)
        mx.nd.waitall()
        return result["images_per_s"]

    for mode in modes:  # warm-up: graph building, allocation
        epoch(mode, 0)
    rounds: Dict[str, List[float]] = {mode: [] for mode in modes}
    for cycle in range(args.pairs):
        for mode in modes[cycle % len(modes):] + modes[:cycle % len(modes)]:
            rounds[mode].append(epoch(mode, cycle + 1))
        print(f"  {size}px cycle {cycle + 1}/{args.pairs}: "
              + ", ".join(f"{mode} {rounds[mode][-1]:.1f}" for mode in modes) + " img/s", flush=True)
    result: Dict[str, Any] = {"input_size": size, "rounds_images_per_s": rounds, "modes": {}}
    for mode in modes:
        ratio, low, high = stats.paired_ratio_ci(rounds[mode], rounds["sync"])
        result["modes"][mode] = {"median_images_per_s": statistics.median(rounds[mode]),
                                 "ratio_to_sync": ratio, "ratio_low": low, "ratio_high": high,
                                 "clear": stats.clear_difference(low, high)}
    step_ms = 1000 * BATCH_SIZE / result["modes"]["sync"]["median_images_per_s"]
    result.update(resize_ms=resize_ms(images[:BATCH_SIZE], size), sync_step_ms=step_ms)
    return result


def main(argv=None) -> int:
    args = parse_args(argv)
    mx = import_mxnet(threads=args.threads)
    from vggbench import data
    from vggbench.platform import cpu, load

    images, labels = data.load_split(args.data_dir, True, args.batches * BATCH_SIZE, seed=0)
    print(f"{MODEL} width 1/{WIDTH_RATIO}, batch {BATCH_SIZE}, {args.batches} batches per epoch, "
          f"{args.pairs} cycles, mxnet {mx.__version__} on {args.threads} threads, {cpu.cpu_model()}")
    load_before, cpu_before = load.load_average(), load.cpu_times()
    own_before, started = time.process_time(), time.perf_counter()
    results = [measure_size(size, images, labels, args) for size in args.sizes]
    usage = load.cpu_usage_between(cpu_before, load.cpu_times(), time.process_time() - own_before)
    report = {"model": MODEL, "width_ratio": WIDTH_RATIO, "batch_size": BATCH_SIZE, "threads": args.threads,
              "batches_per_epoch": args.batches, "pairs": args.pairs, "load_before": load_before,
              "load_after": load.load_average(), "cpu_usage": usage,
              "seconds": round(time.perf_counter() - started, 1), "sizes": results}
    print(f"\nload average before {load_before}, after {report['load_after']}; other processes used "
          f"{usage['other_busy_pct']:.0f}% of the CPUs, steal {usage['steal_pct']:.0f}%")
    print(f"{'size':>5} {'mode':>7} {'img/s':>7} {'vs sync':>8}  95% interval   clear")
    for result in results:
        for mode, row in result["modes"].items():
            print(f"{result['input_size']:>5} {mode:>7} {row['median_images_per_s']:7.1f} {row['ratio_to_sync']:8.3f}"
                  f"  [{row['ratio_low']:.3f}, {row['ratio_high']:.3f}]  {'yes' if row['clear'] else 'no'}")
        print(f"{result['input_size']:>5} resize of {BATCH_SIZE} images {result['resize_ms']:.1f} ms; a sync step "
              f"{result['sync_step_ms']:.0f} ms ({100 * result['resize_ms'] / result['sync_step_ms']:.1f}%)")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
