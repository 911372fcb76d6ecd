"""Training: queue runs for the background trainer, watch them live, compare them.

Runs live in the run store of ``training.store.default_runs_dir()`` (``$CONVNET_LAB_RUNS``); ``training.supervisor``
starts a background worker when runs wait and none is alive, unless ``$CONVNET_LAB_NO_WORKER`` is set, and
``training.commands`` writes the command line of a queued run. The paper's experiments have their own page
(``views/experiments.py``). The file is not named training.py: a page script of that name would shadow the
``training`` package for the others (the pages' folder is on ``sys.path``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pandas as pd
import plots
import resources
import streamlit as st

from training import supervisor
from training.augment import Distortion
from training.commands import command_line
from training.loop import RECIPES, TrainConfig, cpu_has_bf16, takes_images
from training.store import Run, RunStore, StoreError, default_runs_dir
from training.worker import LOG_FILE, submit

NO_WORKER = supervisor.NO_WORKER
ACTIVE = ("queued", "running")
REFRESH_SECONDS = 2.0
COMPARE_KEY, MESSAGE_KEY, MODEL_KEY = "training_compare", "training_message", "train_model"
DATA_LABELS = {"sample": "sample · digits, offline, 4,000 training digits (works anywhere)",
               "mnist": "mnist · digits, 60,000, downloaded by torchvision (needs internet the first time, then cached)",
               "cifar10-sample": "cifar10-sample · colour images, offline, 2,000 CIFAR-10 training images (works anywhere)",
               "cifar10": "cifar10 · colour images, 50,000, downloaded by torchvision (internet the first time)",
               "path": "local path · digits: an .npz or MNIST idx folder; images: a folder ROOT/train/<class>/* or .tar.gz"}
DIGIT_SOURCES, IMAGE_SOURCES = ("sample", "mnist"), ("cifar10-sample", "cifar10")
ss = st.session_state
runs_dir = default_runs_dir()


def model_changed() -> None:
    """A colour-image model gets the offline CIFAR-10 sample, a digit model the offline digits, unless the data fits."""
    images = takes_images(ss[MODEL_KEY])
    if ss.get("train_data") in (DIGIT_SOURCES if images else IMAGE_SOURCES):
        ss["train_data"] = IMAGE_SOURCES[0] if images else DIGIT_SOURCES[0]


def form_config(model: str) -> TrainConfig:
    """The form's settings as the run's config (only the options the chosen model has)."""
    source = ss.train_data
    data = ss.train_path.strip() if source == "path" else source
    images = takes_images(model)
    if images:
        options = {"lrn": bool(ss.get("train_lrn", False))}
    elif model == "lenet5-modern":
        options = {"dropout": float(ss.get("train_dropout", 0.0)), "activation": ss.get("train_activation", "relu")}
    else:
        options = {}
    exclude = bool(ss.get("train_exclude", True)) and data not in ("sample", "cifar10-sample") and not images
    return TrainConfig(model=model, options=options, data=data, exclude_sample=exclude,
                       epochs=int(ss.train_epochs), distort=Distortion() if ss.get("train_distort") and not images else None,
                       train_limit=int(ss.train_limit) or None,
                       precision="bf16" if images and ss.get("train_bf16") else "auto")


def queue_run() -> None:
    """The form's submit: check the settings, queue the run, make sure a worker trains it."""
    model = ss[MODEL_KEY]
    config = form_config(model)
    try:
        if not config.data:
            raise ValueError("type the path of your data (an .npz, an MNIST idx folder, or an image folder / .tar.gz), "
                             "or pick sample or cifar10-sample")
        run_id = submit(config, runs_dir, recipe=command_line(config, "submit"))
    except (ValueError, OSError) as exc:  # check_config's ValueError, DataError, StoreError: the message names the fix
        ss[MESSAGE_KEY] = ("error", f"Not queued: {exc}")
        return
    ss[COMPARE_KEY] = [run_id, *[i for i in ss.get(COMPARE_KEY, []) if i != run_id]][:6]
    text = f"Run {run_id} queued: {resources.describe_model(model, config.options, bool(config.distort))} on {config.data}."
    if not supervisor.autostart():
        ss[MESSAGE_KEY] = ("info", f"{text} The app starts no worker here (`${NO_WORKER}` is set): "
                                   f"run `convnet-lab worker --runs {runs_dir}`.")
        return
    try:
        pid = supervisor.start(runs_dir, threads=int(ss.train_threads))
    except (ValueError, OSError) as exc:
        ss[MESSAGE_KEY] = ("error", f"{text} But no worker could be started: {exc}")
        return
    ss[MESSAGE_KEY] = ("success", f"{text} Background worker pid {pid} trains it.")


def cancel(run_id: int) -> None:
    try:
        with RunStore(runs_dir) as store:
            run = store.cancel(run_id)
        st.toast(f"Run {run_id} cancelled" + (": its worker stops within seconds." if run.pid is not None else "."))
    except StoreError as exc:
        st.toast(str(exc))


# ------------------------------------------------------------------------------------------------ the page

st.title("Training")
st.caption("Queue LeNet-5 and AlexNet training runs for the background trainer (`convnet-lab worker`, the same loop as "
           "`convnet-lab train`), watch their curves live, compare them, and cancel them. A finished run joins the "
           "sidebar's model picker, so every page can show it.")
try:
    with RunStore(runs_dir) as store:
        all_runs = store.runs()
except StoreError as exc:
    st.error(f"The run store cannot be used: {exc}")
    st.stop()

# The worker: started when a run is queued and none is alive (a worker you run in a terminal counts too).
worker = supervisor.supervise(runs_dir, all_runs, threads=int(ss.get("train_threads", supervisor.default_threads())))
if worker.error:
    st.error(f"{worker.waiting} run(s) wait, but no worker could be started: {worker.error}")
if worker.pid is not None:
    st.info(f"Background worker **pid {worker.pid}** {'started for the waiting runs' if worker.started else 'running'}; "
            f"it serves `{runs_dir}` and logs to `{runs_dir / LOG_FILE}`. It keeps running when the app closes "
            f"(stop it with `kill {worker.pid}`).", icon=":material/memory:")
elif worker.owners:
    st.info(f"Runs are trained by worker pid {', '.join(map(str, worker.owners))} (started outside the app).",
            icon=":material/memory:")
elif worker.waiting:
    st.warning(f"{worker.waiting} run(s) wait and no worker is running; the app starts none here (`${NO_WORKER}` is "
               f"set). Start one with `convnet-lab worker --runs {runs_dir}`.")
else:
    st.caption("No worker running: queueing a run starts one in the background" +
               ("." if supervisor.autostart() else f" (off here: `${NO_WORKER}` is set).") + f" Runs folder: `{runs_dir}`.")

# ------------------------------------------------------------------------------------------------ submit
st.subheader("Queue a run")
model = st.selectbox("Model", tuple(RECIPES), key=MODEL_KEY, on_change=model_changed,
                     help="lenet5: the faithful 1998 network (RBF head, MAP loss); lenet5-modern: ReLU, max-pooling, "
                          "batch norm, softmax; alexnet-cifar: AlexNet's layout on 32x32 colour images (needs "
                          "colour-image data: cifar10-sample, cifar10 or an image folder). The form shows its options.")
images = takes_images(model)
with st.form("submit_run"):  # outside the form, the model picker changes the options shown at once
    st.radio("Data", tuple(DATA_LABELS), format_func=DATA_LABELS.get, key="train_data")
    st.text_input("Local path (for 'local path')", key="train_path", placeholder="../shared/data/mnist.npz")
    epochs_col, limit_col, threads_col = st.columns(3)
    epochs_col.number_input("Epochs", min_value=1, max_value=500, value=5, key="train_epochs",
                            help=f"The {model} recipe trains {RECIPES[model]['epochs']} epochs.")
    limit_col.number_input("Train on the first N examples (0 = all)", min_value=0, value=0, step=500, key="train_limit",
                           help="Quick runs: a few hundred digits train in seconds.")
    threads_col.number_input("CPU threads of the worker", min_value=1, max_value=os.cpu_count() or 1,
                             value=supervisor.default_threads(), key="train_threads",
                             help="Used when the app starts the worker; a running worker keeps its own setting. "
                                  "On a GPU the worker trains there.")
    if images:
        lrn_col, bf16_col = st.columns(2)
        lrn_col.checkbox("LRN", key="train_lrn",
                         help="The paper's local response normalisation after conv1 and conv2; about 1.8x slower on a "
                              "CPU. The shipped alexnet-cifar was trained without it.")
        bf16_col.checkbox("bf16 mixed precision", value=cpu_has_bf16(), key="train_bf16",
                          help="About 2x faster on CPUs with AVX-512 BF16 or AMX (on by default when this CPU has them), "
                               "and on GPUs. Image models also get the AlexNet paper's augmentation: crops, reflections, "
                               "PCA colour.")
    else:
        distort_col, exclude_col, dropout_col, activation_col = st.columns(4)
        distort_col.checkbox("Distortions", key="train_distort",
                             help="The paper's random affine distortions (shift, scale, squeeze, shear, rotation) of "
                                  "every training digit.")
        exclude_col.checkbox("Keep the offline sample held out", value=True, key="train_exclude",
                             help="For mnist or a local copy: drop the sample's 5,000 digits from training, so the "
                                  "Misclassified page's held-out digits stay unseen.")
        if model == "lenet5-modern":
            dropout_col.slider("Dropout before the output", 0.0, 0.8, 0.0, 0.1, key="train_dropout")
            activation_col.radio("Activation", ("relu", "tanh"), horizontal=True, key="train_activation",
                                 help="tanh instead of every ReLU: the AlexNet paper's comparison, on digits.")
    st.form_submit_button("Queue run", type="primary", icon=":material/play_arrow:", on_click=queue_run)
    st.caption("mnist and cifar10: the first run downloads the data into `~/.cache/convnet-lab` (`$CONVNET_LAB_DATA`) and "
               "needs internet; later runs use the cached copy. sample, cifar10-sample and local paths work offline.")
if MESSAGE_KEY in ss:
    kind, text = ss.pop(MESSAGE_KEY)
    {"error": st.error, "info": st.info, "success": st.success}[kind](text)


# ------------------------------------------------------------------------------------------------ live runs

def run_label(run: Run) -> str:
    return resources.describe_model(run.model, run.config.get("options", {}), bool(run.config.get("distort")))


def run_table(runs: list[Run], latest: dict[int, dict]) -> pd.DataFrame:
    now = time.time()
    rows = []
    for run in reversed(runs):
        seconds = None if run.started is None else (run.ended or now) - run.started
        note = run.error.strip().splitlines()[-1][:120] if run.state == "failed" and run.error else ""
        status = run.state
        if run.problem and run.state != "failed":  # a damaged row: the next worker fails it without training
            status, note = "unusable", f"unusable: {run.problem}"
        rows.append({"id": run.id, "model": run_label(run), "data": Path(run.data).name, "status": status,
                     "epoch": f"{run.progress:.1f} / {run.epochs}", "progress": 100.0 * run.progress / max(run.epochs, 1),
                     "test error": latest[run.id].get("test_error"),
                     "created": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run.submitted)),
                     "time (s)": None if seconds is None else round(seconds), "device": run.device or "", "note": note})
    return pd.DataFrame(rows)


def run_curves(store: RunStore, runs: dict[int, Run], picked: list[int]) -> None:
    """Test error per epoch and the live training loss over images seen, one line per picked run."""
    test, loss = [], []
    for i, run_id in enumerate(picked):
        run, colour = runs[run_id], plots.PALETTE[i % len(plots.PALETTE)]
        name = f"run {run_id}"
        errors = store.metrics(run_id, "test_error")
        live = store.metrics(run_id, "loss")
        batch = int(run.config.get("batch_size") or 1)
        test.append({"name": name, "x": [m.epoch for m in errors], "y": [m.value for m in errors], "markers": True,
                     "color": colour})
        loss.append({"name": name, "x": [m.step * batch for m in live], "y": [m.value for m in live], "color": colour})
    left, right = st.columns(2)
    left.plotly_chart(plots.curves(test, "Test error per epoch", "epoch", "test error (%)", y_suffix=" %"),
                      key="runs_test_error")
    right.plotly_chart(plots.curves(loss, "Training loss (live)", "images seen", "loss (log scale)", y_format=".4f",
                                    log_y=True), key="runs_loss")
    st.caption("Left: test error after each epoch, on the test split of each run's data. Right: the mean training loss "
               "over each report window (every 2 s) against images seen (optimiser steps × batch size); lenet5's MAP "
               "loss and lenet5-modern's cross-entropy have different scales, so compare shapes across the two.")


active_now = any(run.state in ACTIVE for run in all_runs)


@st.fragment(run_every=REFRESH_SECONDS if active_now else None)
def live_runs(refreshing: bool) -> None:
    """The run table, progress and cancel buttons, and the compared curves; refreshes itself while a run is active."""
    with RunStore(runs_dir) as store:
        runs = store.runs()
        active = [run for run in runs if run.state in ACTIVE]
        if bool(active) != refreshing:  # a run started or everything ended: rerun the page to switch refreshing
            st.rerun()
        st.subheader("Runs")
        if not runs:
            st.info("No runs yet: queue one above (sample data, 1-2 epochs and a limit of a few hundred digits take "
                    "seconds), or from a terminal with `convnet-lab submit --start-worker ...`.")
            return
        latest = {run.id: store.latest(run.id) for run in runs}
        st.dataframe(run_table(runs, latest), hide_index=True, key="runs_table", column_config={
            "progress": st.column_config.ProgressColumn("progress", min_value=0, max_value=100, format="%.0f%%"),
            "test error": st.column_config.NumberColumn("test error", format="%.2f %%"),
        })
        for run in reversed(active):
            bar_col, button_col = st.columns([6, 1], vertical_alignment="center")
            speed = latest[run.id].get("images_per_s")
            detail = f" · {speed:,.0f} images/s" if run.state == "running" and speed else ""
            bar_col.progress(min(run.progress / max(run.epochs, 1), 1.0),
                             text=f"run {run.id} · {run_label(run)} · {run.state} · epoch {run.progress:.1f} of "
                                  f"{run.epochs}{detail}")
            button_col.button("Cancel", key=f"cancel_{run.id}", icon=":material/cancel:", on_click=cancel,
                              args=(run.id,), help=f"Stop run {run.id}; its last checkpoint stays.")
        by_id = {run.id: run for run in runs}
        if COMPARE_KEY not in ss:
            ss[COMPARE_KEY] = [run.id for run in reversed(runs)][:3]
        ss[COMPARE_KEY] = [i for i in ss[COMPARE_KEY] if i in by_id]
        picked = st.multiselect("Compare runs", list(reversed(by_id)), key=COMPARE_KEY,
                                format_func=lambda i: f"run {i} · {run_label(by_id[i])} · {by_id[i].state}")
        if picked:
            run_curves(store, by_id, picked)
        if refreshing:
            st.caption(f"Refreshing every {REFRESH_SECONDS:g} s while a run is queued or running.")
        else:
            st.button("Refresh", icon=":material/refresh:", key="runs_refresh",
                      help="The table refreshes by itself while a run is active; this looks for runs queued elsewhere.")


live_runs(active_now)

st.caption("The AlexNet paper's experiments (ReLU vs tanh, dropout and augmentation) have their own page: "
           "**Paper experiments**.")
