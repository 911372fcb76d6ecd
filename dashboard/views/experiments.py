"""The AlexNet paper's experiments: ReLU vs tanh (Figure 1) and dropout / augmentation (Section 4), as measured here.

Results are the JSON files ``convnet-lab experiment`` writes (:func:`training.experiments.results_dir`; the project's
own are shipped in ``training/results``). Each section opens on its headline result
(:func:`training.experiments.headline_key`: the paper's conditions first, a race both sides finished, the most
training images), with the conditions beside it; the others can be picked.
"""

from __future__ import annotations

import pandas as pd
import plots
import resources
import streamlit as st

from convnets.paper import PAPER_RELU_TANH
from training.experiments import SHIPPED_RESULTS, read_results, results_dir

EXPERIMENTS = "CONVNET_LAB_EXPERIMENTS"
CONDITION_NAMES = {"model": "model", "width": "width", "hidden": "fc6/fc7 units", "init": "initialisation",
                   "input_scaling": "input scaling", "lrs": "learning rates swept", "lr": "learning rate",
                   "schedule": "schedule", "epochs_cap": "epochs (cap)", "epochs": "epochs", "batch_size": "batch",
                   "optimizer": "optimiser", "momentum": "momentum", "weight_decay": "weight decay", "lrn": "LRN",
                   "target_train_error": "target training error (%)", "precision": "precision", "warmup": "warm-up epochs",
                   "seed": "seed"}


@st.cache_data(show_spinner=False, max_entries=8)
def results_in(folder: str, version: tuple[tuple[str, float], ...]) -> tuple[list[dict], list[str]]:
    """:func:`training.experiments.read_results`, read again only when a file of ``folder`` changes (``version``)."""
    return read_results(folder)


def folder_version(folder) -> tuple[tuple[str, float], ...]:
    return tuple(sorted((p.name, p.stat().st_mtime) for p in folder.glob("*.json"))) if folder.is_dir() else ()


def read_from(result: dict, chart: str) -> tuple:
    """A key for ``chart`` of ``result`` that changes when its file does: the folder, every file's modification time."""
    return chart, str(folder), version, result["file"]


def conditions_table(result: dict) -> pd.DataFrame:
    """The run's conditions as (setting, value) rows, the data and where it ran included."""
    c = result.get("conditions") if isinstance(result.get("conditions"), dict) else {}
    rows = [(label, c[key]) for key, label in CONDITION_NAMES.items() if key in c]
    data = c.get("data") if isinstance(c.get("data"), dict) else {}
    if data:
        rows.append(("data", f"{data.get('train_size', '?'):,} training / {data.get('test_size', '?'):,} test images of "
                             f"{resources.without_paths(str(data.get('description', data.get('name', 'unrecorded data'))))}"
                     if isinstance(data.get("train_size"), int) and isinstance(data.get("test_size"), int)
                     else resources.without_paths(str(data.get("description", "unrecorded data")))))
    rows += [(label, result[key]) for key, label in (("preset", "preset"), ("device", "device"), ("threads", "threads"),
                                                     ("finished", "finished")) if result.get(key)]
    return pd.DataFrame([(k, ", ".join(map(str, v)) if isinstance(v, list) else str(v)) for k, v in rows],
                        columns=["setting", "value"])


def how_to(kind: str) -> None:
    command = {"relu-tanh": "convnet-lab experiment relu-tanh --data cifar10 --preset cpu --init gaussian --input-scaling mean",
               "dropout-aug": "convnet-lab experiment dropout-aug --data cifar10 --preset cpu"}[kind]
    st.info("No results of this experiment yet. Produce them with the command below (cifar10 downloads once; "
            "`--data FOLDER_OR_TAR` reads a local copy; `--preset smoke` takes a minute or two, `cpu` about 15 minutes "
            "on 2 CPU cores, `gpu` is the full experiment):", icon=":material/science:")
    st.code(command, language="bash")


def relu_vs_tanh(result: dict) -> None:
    summary, conditions = result["summary"], result.get("conditions", {})
    target = float(conditions.get("target_train_error", 25.0))
    colours = {"relu": "#1f4e9c", "tanh": "#d62728"}
    traces = []
    for run in result["runs"]:
        activation = run["activation"]
        best = run["lr"] == summary.get(activation, {}).get("lr")
        curve = run["curve"]
        traces.append({"name": f"{activation} lr={run['lr']:g}" + (" (best)" if best else ""),
                       "x": [row["epoch"] for row in curve], "y": [row["train_error"] for row in curve],
                       "color": colours.get(activation), "width": 3 if best else 1, "opacity": 1.0 if best else 0.35,
                       "dash": "solid" if activation == "relu" else "dash", "group": activation, "markers": best})
    chart_col, numbers_col = st.columns([2, 1])
    chart_col.plotly_chart(resources.figure_of(read_from(result, "relu-tanh"), lambda: plots.curves(
        traces, f"Training error per epoch, {conditions.get('model', 'cnn4-cifar')}", "epoch", "training error (%)",
        hline=(target, f"{target:g} % target"), y_suffix=" %", height=420)), key="relu_tanh_chart")
    chart_col.caption("Each activation's learning-rate sweep; the thick line is its best run (fewest epochs to the "
                      "target). Training error is the mean over each epoch's mini-batches while training.")

    def reached(activation: str) -> str:
        s = summary.get(activation, {})
        if s.get("epochs_to_target") is None:
            return "not reached"
        return f"{s['epochs_to_target']} epochs"

    ratio, seconds = summary.get("ratio_epochs"), summary.get("ratio_seconds")
    cap = f"the cap was {conditions.get('epochs_cap', '?')} epochs"
    for activation, title in (("relu", "ReLU"), ("tanh", "tanh")):
        s = summary.get(activation, {})
        numbers_col.metric(f"{title} to {target:g} %", reached(activation),
                           help=f"Best learning rate {s.get('lr')}; " + (f"{s['seconds_to_target']:.0f} s of training"
                                                                          if s.get("seconds_to_target") else cap))
    numbers_col.metric("Measured: tanh ÷ ReLU epochs", f"{ratio:.2f}×" if ratio else "n/a",
                       help="How many times more epochs tanh needs; n/a when one of them missed the target.")
    numbers_col.metric("Paper (Fig. 1): tanh ÷ ReLU", f"≈ {PAPER_RELU_TANH['speedup']:g}×")
    numbers_col.caption((f"Seconds ratio {seconds:.2f}×. " if seconds else "") +
                        "Krizhevsky et al. (2012), Fig. 1: a four-layer CNN with ReLUs reaches 25 % training error on "
                        "CIFAR-10 six times faster than the same network with tanh neurons.")
    if ratio is not None:
        verdict = "is in line with" if ratio >= 4 else "shows ReLU faster, but by less than" if ratio > 1 else "contradicts"
        st.markdown(f"Measured here: tanh needs **{ratio:.2f}×** the epochs of ReLU, which {verdict} the paper's ≈ 6×.")
    else:
        missed = [name for name in ("relu", "tanh") if summary.get(name, {}).get("epochs_to_target") is None]
        epochs = conditions.get("epochs_cap", "?")
        st.warning(f"{' and '.join(missed)} never reached {target:g} % training error within {epochs} epochs: this sweep "
                   "does not answer the paper's question, and there is no ratio to set beside its 6×.",
                   icon=":material/timer_off:")


def dropout_augmentation(result: dict) -> None:
    colours = plots.PALETTE
    test, train = [], []
    for i, run in enumerate(result["runs"]):
        curve, colour = run["curve"], colours[i % len(colours)]
        x = [row["epoch"] for row in curve]
        test.append({"name": run["label"], "x": x, "y": [row.get("test_error") for row in curve], "color": colour,
                     "markers": True})
        train.append({"name": run["label"], "x": x, "y": [row.get("train_error_clean", row.get("train_error"))
                                                          for row in curve], "color": colour, "dash": "dot"})
    left, right = st.columns(2)
    epochs = max((len(run["curve"]) for run in result["runs"]), default=0)
    dtick = 2 if 10 < epochs <= 20 else None  # plots.curves ticks every epoch up to 20: too dense at half width
    left.plotly_chart(resources.figure_of(read_from(result, "dropout-test"), lambda: plots.curves(
        test, "Test error per epoch", "epoch", "test error (%)", y_suffix=" %", x_dtick=dtick)), key="dropout_test_chart")
    right.plotly_chart(resources.figure_of(read_from(result, "dropout-train"), lambda: plots.curves(
        train, "Training error per epoch (eval mode)", "epoch", "training error (%)", y_suffix=" %", x_dtick=dtick)),
        key="dropout_train_chart")
    rows = [{"setting": label, "final test error": s.get("final_test_error"), "ten patches": s.get("ten_patch_test_error"),
             "best test error": s.get("best_test_error"), "final train error": s.get("final_train_error_clean"),
             "gap (test − train)": s.get("gap")} for label, s in result["summary"].items()]
    percent = st.column_config.NumberColumn(format="%.2f %%")
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="dropout_table",
                 column_config={k: percent for k in rows[0] if k != "setting"} if rows else None)
    st.caption("Paper (Krizhevsky et al., 2012, Section 4): without data augmentation the network \"suffers from "
               "substantial overfitting\"; without dropout it \"exhibits substantial overfitting\", and dropout "
               "\"roughly doubles the number of iterations required to converge\". Here: a large gap between test and "
               "training error is overfitting; dropout and augmentation should shrink it. Training error is measured "
               "in eval mode, without dropout or augmentation.")


st.title("The AlexNet paper's experiments")
folder = results_dir()
version = folder_version(folder)
shipped = not version and SHIPPED_RESULTS.is_dir()
if shipped:
    folder, version = SHIPPED_RESULTS, folder_version(SHIPPED_RESULTS)
results, unreadable = results_in(str(folder), version)
where = ("the results measured for this project (on its 2-core CPU), shipped in `training/results` of the package; yours "
         "replace them once `convnet-lab experiment` writes some") if shipped else "the experiments folder"
st.caption(f"Results of `convnet-lab experiment` read from {where} (`${EXPERIMENTS}`; by default `experiments/` in the runs "
           "folder)." + (f" Skipped unreadable: {', '.join(unreadable)}." if unreadable else ""))

SECTIONS = (  # title, the results' "experiment", widget key, CLI subcommand, plot
    ("ReLU vs tanh: epochs to 25 % training error", "relu-vs-tanh", "relu_tanh_file", "relu-tanh", relu_vs_tanh),
    ("Dropout and augmentation: train vs test error", "dropout-augmentation", "dropout_aug_file", "dropout-aug",
     dropout_augmentation),
)
for title, experiment, key, subcommand, plot in SECTIONS:
    st.subheader(title)
    found = [r for r in results if r.get("experiment") == experiment]
    if not found:
        how_to(subcommand)
        continue
    names = [r["file"] for r in found]
    result = found[names.index(st.selectbox("Results file", names, key=key, help="The first is the headline: the paper's "
                                                                                "conditions, then the most training images."))]
    try:
        plot_col, conditions_col = st.columns([5, 2])  # room for values such as the learning rates swept
        with conditions_col:
            st.markdown("**Conditions**")
            st.dataframe(conditions_table(result), hide_index=True, key=f"{key}_conditions", height="content")
        with plot_col:
            plot(result)
        if result.get("command"):
            st.code(resources.without_paths(str(result["command"]), "<CIFAR-10>"), language="bash", wrap_lines=True)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:  # a results file of the wrong shape
        st.warning(f"`{result['file']}` cannot be shown: it is not a results file of `convnet-lab experiment` "
                   f"({type(exc).__name__}: {str(exc)[:120]}); write it again with `convnet-lab experiment {subcommand}`.")
