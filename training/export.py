"""Ship a finished run: its weights as float16 (half the file), the test error re-measured with the rounded weights.

``convnet-lab export RUN/model.pt convnets/weights/NAME.pt --half --data-name cifar10`` writes a checkpoint
the app loads as a shipped model. The card keeps everything the run recorded, adds what changed (the
weights' dtype, the test errors measured again with the float16 weights beside the float32 ones), and can
replace a local data path with the name of the data set (``--data-name``), so a shipped card never shows
a folder of the machine it was trained on.
"""

from __future__ import annotations

from pathlib import Path

import torch

import convnets

from .loop import TrainConfig, error_rate, load_data, takes_images


def export_checkpoint(source: str | Path, out: str | Path, *, half: bool = True, data_name: str | None = None,
                      data: str | None = None, replace: bool = False) -> dict:
    """Write ``source``'s final weights to ``out`` (float16 when ``half``), re-measuring the test error; returns the card.

    ``data`` overrides where the test set is read from (default: the run's own data setting); ``data_name``
    is what the card then calls the data (e.g. ``cifar10``), in its config and its recorded command.
    """
    source, out = Path(source), Path(out)
    if out.exists() and not replace:
        raise ValueError(f"{out} exists; pass --replace to overwrite it (nothing was written)")
    payload = convnets.read_checkpoint(source)
    card = dict(payload["card"])
    if "epochs" not in card or "config" not in card:
        raise convnets.CheckpointError(f"{source} has no training card (config and epochs); export a model.pt written by "
                                       "`convnet-lab train` or the background worker")
    model = convnets.model_from_checkpoint(payload, str(source)).eval()
    if half:
        with torch.no_grad():
            for tensor in model.state_dict().values():
                if tensor.is_floating_point():
                    tensor.copy_(tensor.half().float())  # the values the float16 file will hold
        config = TrainConfig.from_dict(card["config"])
        if data is not None:
            config = TrainConfig.from_dict({**card["config"], "data": data})
        test = load_data(config)
        card["test_error_float32"] = card["test_error"]
        card["test_error"] = error_rate(model, test.test_x, test.test_y)
        if takes_images(payload["model"]):
            card["test_error_flip_float32"] = card.get("test_error_flip")
            card["test_error_flip"] = error_rate(model, test.test_x, test.test_y, flip=True)
        card["weights_dtype"] = "float16"
    if data_name is not None:
        local = card["config"]["data"]
        card["config"] = {**card["config"], "data": data_name}
        if isinstance(card.get("recipe"), str):
            card["recipe"] = card["recipe"].replace(local, data_name)
        card["data"] = {**card.get("data", {}), "source": f"{data_name} (trained from a local copy of it)"}
    weights = model.half() if half else model
    convnets.save_checkpoint(out, payload["model"], payload.get("options", {}), weights, card)
    return card
