"""Worker overhead: the same run through plain ``train()`` and through the background worker, side by side.

A benchmark, not a test. Each repeat times, in this one process and on the same data and device,

* ``train`` -- :func:`training.loop.train` as ``convnet-lab train`` calls it: data loaded inside, a
  checkpoint every epoch into a fresh folder, the final model;
* ``worker`` -- the run submitted to a fresh run store and served by :func:`training.worker.serve`
  (``once``): claim, data load, live metrics every ``--report-every`` seconds and per epoch, the
  heartbeat thread, checkpoints, finish;

alternating which goes first, and prints the median wall time of each and the worker's overhead,
``worker / train - 1`` (the issue's target: at most 5 %).

    .venv/bin/python bench/worker_overhead.py --threads 1                       # sample data, CPU
    .venv/bin/python bench/worker_overhead.py --data ../shared/data/mnist.npz --epochs 3   # on a GPU
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from training.loop import TrainConfig, pick_device, train
from training.store import RunStore
from training.worker import serve


def _quiet(*_args) -> None:
    pass


def time_train(config: TrainConfig, root: Path) -> float:
    start = time.perf_counter()
    train(config, out=Path(tempfile.mkdtemp(dir=root)), progress=False, log=_quiet)
    return time.perf_counter() - start


def time_worker(config: TrainConfig, root: Path, report_every: float) -> tuple[float, int]:
    runs = Path(tempfile.mkdtemp(dir=root))
    store = RunStore(runs)
    run_id = store.submit(config.resolved().card())
    start = time.perf_counter()
    serve(runs, once=True, report_every=report_every, log=_quiet)
    seconds = time.perf_counter() - start
    run = store.get(run_id)
    if run.state != "done":
        raise SystemExit(f"the worker's run ended {run.state}: {run.error}")
    return seconds, len(store.metrics(run_id))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="lenet5-modern")
    parser.add_argument("--data", default="sample", help="'sample', 'mnist' or a path (.npz / idx folder)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--limit", type=int, help="train on the first N digits only")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, help="CPU threads for torch")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--report-every", type=float, default=2.0, help="seconds between the worker's live metric writes")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    config = TrainConfig(model=args.model, data=args.data, epochs=args.epochs, batch_size=args.batch_size,
                         device=args.device, train_limit=args.limit)
    print(f"{args.model} on {args.data}, {args.epochs} epochs, {pick_device(args.device)}, "
          f"{torch.get_num_threads()} thread(s), live metrics every {args.report_every}s, {args.repeats} repeats")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        time_train(config, root)  # warm-up: caches, allocator, lazy imports
        plain, worker, rows = [], [], 0
        for repeat in range(args.repeats):
            pair = ("train", "worker") if repeat % 2 == 0 else ("worker", "train")
            for which in pair:
                if which == "train":
                    plain.append(time_train(config, root))
                else:
                    seconds, rows = time_worker(config, root, args.report_every)
                    worker.append(seconds)
            print(f"  repeat {repeat + 1}: train {plain[-1]:.2f}s  worker {worker[-1]:.2f}s")
    a, b = statistics.median(plain), statistics.median(worker)
    print(f"median: train {a:.2f}s, worker {b:.2f}s ({rows} metric rows per run); "
          f"worker overhead {100 * (b / a - 1):+.1f}% (target <= 5 %)")


if __name__ == "__main__":
    main()
