"""The paper's Figure 3 observation as numbers: per column of conv1, the kernels' mean chroma and share of grey ones.

Krizhevsky et al. (2012): "the kernels on GPU 1 are largely color-agnostic, while the kernels on GPU 2 are
largely color-specific", whatever the random initialisation. For each checkpoint given (two-column
``alexnet-cifar`` runs with different seeds) this prints, per column, the mean chroma of its conv1 kernels
(:func:`convnets.kernel_colour`: 0 = grey, random kernels about 2/3) and the fraction below
``convnets.GREY_CHROMA``, with the same numbers for the untrained network of each seed as the baseline.
Columns are listed greyer first, as the paper's GPU 1 and GPU 2 are a naming, not an order.

    .venv/bin/python bench/column_colour.py runs/two-columns-s0/model.pt runs/two-columns-s1/model.pt ...
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch

import convnets


def column_numbers(model: torch.nn.Module) -> list[dict]:
    """Per column (greyer first): mean chroma and grey fraction of its conv1 kernels."""
    groups = convnets.kernel_colour(model)
    return sorted(({"mean_chroma": g["mean_chroma"], "grey_fraction": g["grey_fraction"], "kernels": g["kernels"]}
                   for g in groups), key=lambda g: g["mean_chroma"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args()
    rows = []
    for path in args.checkpoints:
        payload = convnets.read_checkpoint(path)
        model = convnets.model_from_checkpoint(payload, path)
        seed = payload["card"]["config"]["seed"]
        torch.manual_seed(seed)
        untrained = convnets.get_model(payload["model"], **payload["options"])
        rows.append({"checkpoint": path, "seed": seed, "test_error": payload["card"]["test_error"],
                     "epochs": len(payload["card"]["epochs"]), "trained": column_numbers(model),
                     "untrained": column_numbers(untrained)})
    print("| seed | epochs | test error | column | mean chroma | grey kernels | untrained: chroma, grey |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        for i, (trained, untrained) in enumerate(zip(row["trained"], row["untrained"], strict=True)):
            print(f"| {row['seed']} | {row['epochs']} | {row['test_error']:.2f} % | {'greyer' if i == 0 else 'more colour'} | "
                  f"{trained['mean_chroma']:.3f} | {100 * trained['grey_fraction']:.0f} % of {trained['kernels']} | "
                  f"{untrained['mean_chroma']:.3f}, {100 * untrained['grey_fraction']:.0f} % |")
    if len(rows) > 1:
        for i, name in enumerate(("greyer", "more colour")):
            chroma = [r["trained"][i]["mean_chroma"] for r in rows]
            grey = [r["trained"][i]["grey_fraction"] for r in rows]
            print(f"{name} column over {len(rows)} seeds: mean chroma {statistics.mean(chroma):.3f} "
                  f"(range {min(chroma):.3f}-{max(chroma):.3f}), grey {100 * statistics.mean(grey):.0f} % "
                  f"(range {100 * min(grey):.0f}-{100 * max(grey):.0f} %)")
        gaps = [r["trained"][1]["mean_chroma"] - r["trained"][0]["mean_chroma"] for r in rows]
        print(f"chroma gap between the columns: {', '.join(f'{g:.3f}' for g in gaps)}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
