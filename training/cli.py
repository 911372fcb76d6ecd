"""The ``convnet-lab`` command line: train, evaluate, layers; submit, worker, status, cancel (the background trainer); app."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch

import convnets
from convnets import CheckpointError

from . import distributed
from .augment import Distortion
from .data import DataError
from .experiments import add_commands as add_experiment_commands
from .loop import PRECISIONS, RECIPES, SCHEDULES, TrainConfig, check_config, error_rate, load_data, pick_device, takes_images, train
from .store import STALE_AFTER, RunStore, StoreReadOnly, default_runs_dir


def _model_options(pairs: list[str]) -> dict:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"model option '{pair}' must look like key=value, e.g. --option dropout=0.5")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def _add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="lenet5", help=f"one of: {', '.join(convnets.model_names())}")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="model constructor option, e.g. dropout=0.3 (repeatable)")
    p.add_argument("--data", default=None,
                   help="digit models: 'mnist' (torchvision download; the default), 'sample' (offline 5,000 digits) or a path "
                        "(.npz / idx folder); colour-image models: 'cifar10' (torchvision download; the default), "
                        "'cifar10-sample' (offline 2,000 images shipped with the package) or an image folder "
                        "ROOT/train/<class>/*, ROOT/test/<class>/* (or a .tar.gz of one)")
    p.add_argument("--exclude-sample", action="store_true",
                   help="drop the offline sample's 5,000 digits from training so they stay held out")
    p.add_argument("--epochs", type=int, help="passes over the training set (recipe default per model)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--optimizer", choices=["sgd", "adam"])
    p.add_argument("--lr", type=float, help="peak learning rate (after any warm-up; then the --schedule)")
    p.add_argument("--momentum", type=float)
    p.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=None, help="Nesterov momentum (SGD)")
    p.add_argument("--weight-decay", type=float, help="L2 penalty on weights (not biases); recipe default per model")
    p.add_argument("--label-smoothing", type=float, help="softmax heads: weight spread over the other classes, e.g. 0.1")
    p.add_argument("--warmup", type=float, help="epochs of linear warm-up from lr/10")
    p.add_argument("--schedule", choices=SCHEDULES, help="after warm-up: cosine (to lr/100), linear (to 0) or constant")
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                   help="colour images: the AlexNet paper's random crops, reflections and PCA colour (recipe default: on)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="NHWC layout, faster on CPU for some models (recipe default per model; bench/lenet_speed.py)")
    p.add_argument("--distort", action="store_true", help="the paper's random affine distortions of training digits")
    defaults = Distortion()
    for name, help_text in [("translate", "pixels"), ("scale", "relative"), ("squeeze", "relative"),
                            ("shear", "horizontal shear factor"), ("rotate", "degrees"), ("elastic", "pixels, 0 = off")]:
        p.add_argument(f"--{name}", type=float, default=getattr(defaults, name),
                       help=f"distortion strength, {help_text} (default {getattr(defaults, name)})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:1, ...")
    p.add_argument("--limit", type=int, help="train on the first N training examples only (class-balanced for images)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="auto: bf16 autocast on cuda (fp16 where bf16 is missing), fp32 on cpu and mps; "
                        "bf16 on a CPU with AVX-512 BF16 or AMX trains image models about 2x faster")
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Build a :class:`TrainConfig` from parsed ``train`` arguments."""
    distortion = None
    if args.distort:
        distortion = Distortion(translate=args.translate, scale=args.scale, squeeze=args.squeeze,
                                shear=args.shear, rotate=args.rotate, elastic=args.elastic)
    data = args.data or ("cifar10" if takes_images(args.model) else "mnist")
    return TrainConfig(model=args.model, options=_model_options(args.option), data=data,
                       exclude_sample=args.exclude_sample, epochs=args.epochs, batch_size=args.batch_size,
                       optimizer=args.optimizer, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay,
                       label_smoothing=args.label_smoothing, nesterov=args.nesterov, warmup=args.warmup,
                       schedule=args.schedule, augment=args.augment, channels_last=args.channels_last,
                       distort=distortion, seed=args.seed, device=args.device, train_limit=args.limit,
                       precision=args.precision)


def _checked_config(args: argparse.Namespace) -> TrainConfig:
    """The resolved config, or a ValueError naming the bad option -- before any data is loaded."""
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"threads must be at least 1, got {args.threads}")
    return check_config(config_from_args(args))


def cmd_train(args: argparse.Namespace) -> int:
    world = distributed.from_env()
    if world.world > 1 and not args.out:
        raise ValueError("under torchrun pass --out (every rank must write to the same folder)")
    out = Path(args.out or f"runs/{args.model}-{time.strftime('%Y%m%d-%H%M%S')}")
    if out.exists() and any(out.iterdir()) and not (args.resume and (out / "last.pt").exists()):
        raise ValueError(f"{out} already holds files; choose a new --out folder (nothing was overwritten)")
    if args.threads:
        torch.set_num_threads(args.threads)
    config = _checked_config(args)
    _check_writable(out)
    recipe = shlex.join(["convnet-lab", *args.argv])
    try:
        _, card = train(config, out=out, progress=not args.quiet, recipe=recipe, resume=args.resume)
        distributed.shutdown(synchronise=True)
    finally:
        distributed.shutdown()
    if world.master:
        print(f"test error {card['test_error']:.2f}% on {card['test_set']}; weights and card: {out / 'model.pt'}")
    return 0


def _check_writable(out: Path) -> None:
    """Create ``out`` and write a probe file in it, so an unwritable --out fails before any training."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise ValueError(f"cannot write to --out {out} ({exc.strerror or exc}); pass a folder you can write") from None


def _load_any(ref: str):
    path = Path(ref)
    if path.suffix == ".pt" or path.exists():
        payload = convnets.read_checkpoint(path)
        return convnets.model_from_checkpoint(payload, str(path)).eval(), payload["card"]
    return convnets.load_pretrained(ref)


def cmd_evaluate(args: argparse.Namespace) -> int:
    model, card = _load_any(args.weights)
    device = pick_device(args.device)
    data = load_data(TrainConfig(data=args.data)).to(device)  # digits; an unreadable file is one DataError line
    model.to(device)
    error = error_rate(model, data.test_x, data.test_y)
    print(f"{card.get('model', args.weights)}: test error {error:.2f}% "
          f"({len(data.test_y)} digits: {data.description}, test split)")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export_checkpoint

    if args.threads:
        torch.set_num_threads(args.threads)
    card = export_checkpoint(args.checkpoint, args.out, half=not args.float32, data_name=args.data_name, data=args.data,
                             replace=args.replace)
    flip = f" ({card['test_error_flip']:.2f}% with test-time reflections)" if card.get("test_error_flip") is not None else ""
    print(f"{args.out}: {card['model']}, test error {card['test_error']:.2f}%{flip} with {card.get('weights_dtype', 'float32')} "
          "weights")
    return 0


def cmd_layers(args: argparse.Namespace) -> int:
    model = convnets.get_model(args.model)
    rows = convnets.layer_table(model)
    print(f"{'layer':8} {'kind':14} {'output':>14} {'params':>9} {'connections':>12}")
    for r in rows:
        shape = "x".join(map(str, r.output_shape))
        print(f"{r.name:8} {r.kind:14} {shape:>14} {r.params:>9,} {r.connections:>12,}")
    print(f"{'total':8} {'':14} {'':>14} {sum(r.params for r in rows):>9,} {sum(r.connections for r in rows):>12,}")
    return 0


# ------------------------------------------------------------------------------------ the background trainer

def cmd_submit(args: argparse.Namespace) -> int:
    from .worker import ensure_worker, submit

    config = _checked_config(args)
    runs = Path(args.runs or default_runs_dir())
    run_id = submit(config, runs, recipe=shlex.join(["convnet-lab", *args.argv]))
    print(f"run {run_id} queued in {runs}: {config.model} on {config.data}, {config.epochs} epochs")
    if args.start_worker:
        print(f"worker {ensure_worker(runs, threads=args.threads)} serving {runs}")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from .worker import ensure_worker, serve

    for name in ("poll", "stale_after", "report_every"):
        if not getattr(args, name) > 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"threads must be at least 1, got {args.threads}")
    if args.background:
        runs = Path(args.runs or default_runs_dir()).resolve()
        pid = ensure_worker(runs, threads=args.threads)
        print(f"worker {pid} serving {runs} (log: {runs / 'worker.log'})")
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        taken = serve(args.runs, once=args.once, poll=args.poll, stale_after=args.stale_after,
                      report_every=args.report_every)
    except BaseException:
        distributed.shutdown()
        raise
    distributed.shutdown(synchronise=True)  # the ranks leave together (see distributed.shutdown)
    if distributed.from_env().master:
        print(f"queue empty; {taken} run(s) taken")
    return 0


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _store_to_read(runs: Path | None) -> RunStore:
    """The run store for reading: opened read-only, with one line saying so, when the runs folder cannot be written."""
    try:
        return RunStore(runs)
    except StoreReadOnly:
        store = RunStore(runs, readonly=True)
        print(f"read-only: {store.runs_dir} cannot be written, so this shows the runs as they are; submit, cancel and "
              "workers need a writable --runs folder")
        return store


def cmd_status(args: argparse.Namespace) -> int:
    with _store_to_read(args.runs) as store:
        if args.run is not None:
            return _run_details(store, args.run)
        runs = store.runs()
        if not runs:
            print(f"no runs in {store.runs_dir}; queue one with `convnet-lab submit`")
            return 0
        now = time.time()
        print(f"{'id':>4}  {'state':9}  {'model':13}  {'data':8}  {'progress':>14}  {'test err':>8}  {'img/s':>8}  "
              f"{'device':24}  {'time':>8}  note")
        for run in runs:
            latest = store.latest(run.id)
            fraction = run.progress / run.epochs if run.epochs else 0.0
            progress = f"{run.progress:.1f}/{run.epochs} {100 * fraction:3.0f}%"
            test = f"{latest['test_error']:.2f}%" if "test_error" in latest else ""
            speed = latest.get("images_per_s", latest.get("epoch_images_per_s"))
            speed = f"{speed:,.0f}" if speed is not None else ""
            seconds = None if run.started is None else (run.ended or now) - run.started
            note, state = "", run.state
            if run.orphaned(now):  # its worker is dead: the next worker resumes it from its checkpoint
                state = "stale"
                note = f"worker pid {run.pid} on {run.host} is gone; the next worker resumes it"
            elif run.state == "running":
                note = f"pid {run.pid} on {run.host}"
            elif run.state == "failed" and run.error:
                note = run.error.strip().splitlines()[-1][:80]
            elif run.problem:  # a damaged row: the next worker fails it
                note = f"unusable: {run.problem}"[:80]
            elif run.state == "queued" and run.error:  # why it waits (a full disk)
                note = run.error.strip().splitlines()[-1][:80]
            data = Path(run.data).name if run.data not in ("mnist", "sample") else run.data
            print(f"{run.id:>4}  {state:9}  {run.model:13}  {data[:8]:8}  {progress:>14}  {test:>8}  {speed:>8}  "
                  f"{(run.device or '')[:24]:24}  {_duration(seconds):>8}  {note}")
    return 0


def _run_details(store: RunStore, run_id: int) -> int:
    run = store.get(run_id)
    print(f"run {run.id}: {run.state}, {run.model} on {run.data}, {run.progress:.2f}/{run.epochs} epochs")
    print(f"  submitted {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(run.submitted))}; device {run.device or '-'}; "
          f"attempts {run.attempts}; checkpoints {store.run_dir(run.id)}")
    print(f"  recipe: {run.recipe}")
    print(f"  config: {json.dumps(run.config, sort_keys=True)}")
    by_epoch: dict[float, dict[str, float]] = {}
    for m in store.metrics(run.id):
        if m.name in ("test_error", "epoch_loss", "epoch_train_error", "epoch_seconds"):
            by_epoch.setdefault(m.epoch, {})[m.name] = m.value
    if by_epoch:
        print(f"  {'epoch':>5}  {'loss':>8}  {'train err':>9}  {'test err':>8}  {'seconds':>8}")
        for epoch, v in sorted(by_epoch.items()):
            print(f"  {epoch:5.0f}  {v.get('epoch_loss', float('nan')):8.4f}  {v.get('epoch_train_error', float('nan')):8.2f}%"
                  f"  {v.get('test_error', float('nan')):7.2f}%  {v.get('epoch_seconds', float('nan')):8.1f}")
    if run.error:
        print("  error:\n    " + run.error.strip().replace("\n", "\n    "))
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    with RunStore(args.runs) as store:
        for run_id in args.run:
            run = store.cancel(run_id)
            print(f"run {run.id} cancelled" + (" (its worker stops within seconds)" if run.pid is not None else ""))
    return 0


DASHBOARD = Path(__file__).resolve().parents[1] / "dashboard" / "app.py"  # a sibling package, in the tree and in a wheel


def app_command(address: str = "localhost", port: int = 8501) -> list[str]:
    """The streamlit command line that serves the dashboard (localhost unless asked otherwise)."""
    if not DASHBOARD.is_file():
        raise FileNotFoundError("the dashboard package is missing from this installation: reinstall convnet-lab "
                                "(`pip install --force-reinstall convnet-lab`, or `pip install -e .` in a clone)")
    # The settings of .streamlit/config.toml as flags, so they hold from any working folder and in an installed wheel.
    return [sys.executable, "-m", "training.serve", "run", str(DASHBOARD), "--server.address", address,
            "--server.port", str(port), "--server.maxUploadSize", "2", "--server.maxMessageSize", "50",
            "--server.headless", "true", "--browser.gatherUsageStats", "false", "--client.toolbarMode", "viewer"]


def cmd_app(args: argparse.Namespace) -> int:
    command = app_command(args.address, args.port)
    env = dict(os.environ)
    if args.mnist:
        if args.mnist not in ("mnist", "sample") and not Path(args.mnist).exists():
            raise FileNotFoundError(f"no MNIST copy at {args.mnist}: pass an .npz or idx folder, 'mnist' or 'sample'")
        env["CONVNET_LAB_MNIST"] = args.mnist if args.mnist in ("mnist", "sample") else str(Path(args.mnist).resolve())
    print(f"convnet lab: open http://{args.address}:{args.port} in a browser (Ctrl+C stops it)", flush=True)
    # The server replaces this process rather than running as its child, so whatever stops `convnet-lab app` (Ctrl+C, a
    # SIGTERM from a supervisor) stops the server too; a child would outlive a terminated launcher.
    os.chdir(DASHBOARD.parent.parent)
    os.execve(command[0], command, env)


def _add_runs_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs", type=Path, default=None, metavar="DIR",
                   help="runs folder holding the store and checkpoints (default $CONVNET_LAB_RUNS or "
                        "~/.cache/convnet-lab/runs)")


def _add_queue_commands(sub: argparse._SubParsersAction) -> None:
    """The run-queue sub-commands: submit, worker, status, cancel."""
    p = sub.add_parser("submit", help="queue a training run for the background worker (same options as train)",
                       description="Queue a run in the run store; a worker (`convnet-lab worker`) trains it.")
    _add_train_arguments(p)
    _add_runs_argument(p)
    p.add_argument("--start-worker", action="store_true", help="also start a background worker unless one is alive")
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("worker", help="train queued runs in order (cuda, then mps, then cpu)",
                       description="Serve the run queue: train each queued run, stream its metrics to the store, "
                       "resume runs whose worker died. Under torchrun every rank trains each run together (DDP).")
    _add_runs_argument(p)
    p.add_argument("--once", action="store_true", help="exit when the queue is empty")
    p.add_argument("--background", action="store_true",
                   help="start a detached worker (pid file and log in the runs folder) unless one is alive, and return")
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--poll", type=float, default=1.0, help="seconds between looks at an empty queue (default 1)")
    p.add_argument("--report-every", type=float, default=2.0, help="seconds between live metric writes (default 2)")
    p.add_argument("--stale-after", type=float, default=STALE_AFTER,
                   help=f"seconds without heartbeat before a running run counts as orphaned (default {STALE_AFTER:.0f})")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("status", help="table of runs with progress, or one run's details",
                       description="List the runs of the store (or show one run: config, epochs, error).")
    p.add_argument("run", nargs="?", type=int, help="a run id for its details")
    _add_runs_argument(p)
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("cancel", help="cancel queued or running runs",
                       description="Cancel runs; a running one stops within seconds, its last checkpoint stays.")
    p.add_argument("run", nargs="+", type=int, help="run ids")
    _add_runs_argument(p)
    p.set_defaults(func=cmd_cancel)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="convnet-lab", description="Train and inspect LeNet-5 and friends.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model; writes OUT/last.pt every epoch and OUT/model.pt at the end",
                       description="Train a named model on a named data source. Recipe defaults per model: "
                       + "; ".join(f"{k}: {v}" for k, v in RECIPES.items()))
    _add_train_arguments(p)
    p.add_argument("--out", help="new folder for checkpoints (default runs/MODEL-TIMESTAMP)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt when it is there (same options)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="test error of shipped weights or a checkpoint",
                       description="Measure test error of a shipped model (by name) or a checkpoint file.")
    p.add_argument("weights", help="shipped model name (lenet5, lenet5-modern) or a .pt checkpoint path")
    p.add_argument("--data", default="mnist", help="'mnist', 'sample' or a path (.npz / idx folder)")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("export", help="write a finished run's weights for shipping (float16, test error re-measured)",
                       description="Copy a run's model.pt to OUT as float16 weights (half the size), re-measuring the test "
                       "error with the rounded weights; --data-name replaces a local data path on the card by a name.")
    p.add_argument("checkpoint", help="a model.pt written by `convnet-lab train` or the worker")
    p.add_argument("out", help="the file to write, e.g. convnets/weights/alexnet-cifar.pt")
    p.add_argument("--data-name", help="what the card calls the data (e.g. cifar10) instead of a local path")
    p.add_argument("--data", help="read the test set from here (default: the run's own data setting)")
    p.add_argument("--float32", action="store_true", help="keep float32 weights")
    p.add_argument("--replace", action="store_true", help="overwrite OUT if it exists")
    p.add_argument("--threads", type=int)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("layers", help="per-layer shapes, params and connections of a model",
                       description="Print the layer table (the paper's params and connections) of a model.")
    p.add_argument("model", help=f"one of: {', '.join(convnets.model_names())}")
    p.set_defaults(func=cmd_layers)

    _add_queue_commands(sub)

    p = sub.add_parser("experiment", help="AlexNet-track experiments: relu-tanh, dropout-aug, evaluate, time-retrieval",
                       description="The AlexNet paper's experiments and evaluations (training.experiments).")
    add_experiment_commands(p.add_subparsers(dest="command", required=True))

    p = sub.add_parser("app", help="start the dashboard in the browser (streamlit, on localhost)",
                       description="Serve the Streamlit dashboard. It listens on localhost unless --address says otherwise.")
    p.add_argument("--address", default="localhost", help="interface to listen on (default localhost; 0.0.0.0 = all)")
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--mnist", metavar="PATH", help="evaluate on this full MNIST copy (.npz or idx folder; 'mnist' = torchvision's "
                   "download); default: torchvision's cached copy if there is one, else the offline held-out digits")
    p.set_defaults(func=cmd_app)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        return args.func(args)
    except (ValueError, DataError, CheckpointError, OSError) as exc:  # OSError: unwritable folders, a full disk
        print(f"convnet-lab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("convnet-lab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
