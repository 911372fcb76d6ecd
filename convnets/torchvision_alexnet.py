"""torchvision's pretrained AlexNet (IMAGENET1K_V1) with the lab's named layers: the weights, found locally or
downloaded, with a card; and the classes a model ranks first."""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from .checkpoint import CheckpointError
from .inference import inference
from .pictures import IMAGENET_MEAN, IMAGENET_STD, RGBInput

TORCHVISION_WEIGHTS_FILE = "alexnet-owt-7be5be79.pth"


class WeightsError(CheckpointError):
    """Pretrained weights that cannot be found, fetched or used; the message names the ways to fix it."""


class TorchvisionAlexNet(nn.Module):
    """torchvision's AlexNet (64-192-384-256-256 conv widths, from Krizhevsky 2014) with named blocks.

    The same modules as ``torchvision.models.alexnet()``, grouped into ``conv1`` .. ``fc8``
    behind an ``input`` stage that checks (N, 3, 224, 224) RGB in [0, 1] and applies
    ImageNet's mean/std normalisation. Load torchvision state dicts with
    :meth:`load_torchvision_state_dict`.
    """

    head = "softmax"
    input_shape = (3, 224, 224)
    embedding_layer = "fc7"

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        from torchvision.models import alexnet

        tv = alexnet(weights=None, num_classes=num_classes)
        f, c = tv.features, tv.classifier
        self.features = nn.Sequential(OrderedDict(
            input=RGBInput(224, IMAGENET_MEAN, IMAGENET_STD),
            conv1=nn.Sequential(f[0], f[1], f[2]),
            conv2=nn.Sequential(f[3], f[4], f[5]),
            conv3=nn.Sequential(f[6], f[7]),
            conv4=nn.Sequential(f[8], f[9]),
            conv5=nn.Sequential(f[10], f[11], f[12], tv.avgpool),
        ))
        self.classifier = nn.Sequential(OrderedDict(
            fc6=nn.Sequential(nn.Flatten(), c[0], c[1], c[2]),
            fc7=nn.Sequential(c[3], c[4], c[5]),
            fc8=c[6],
        ))
        names = {id(t): key for key, t in tv.state_dict(keep_vars=True).items()}
        self._torchvision_keys = {names[id(t)]: key for key, t in self.state_dict(keep_vars=True).items()}
        self._torchvision_shapes = {names[id(t)]: tuple(t.shape) for t in self.state_dict(keep_vars=True).values()}

    def load_torchvision_state_dict(self, state_dict: dict[str, torch.Tensor], source: str = "state dict") -> None:
        """Load a ``torchvision.models.alexnet`` state dict; a WeightsError when it is another network."""
        expected = self._torchvision_shapes
        missing, unexpected = sorted(set(expected) - set(state_dict)), sorted(set(state_dict) - set(expected))
        if missing or unexpected:
            raise WeightsError(f"{source} is not a torchvision AlexNet state dict (missing {missing[:3]}, "
                               f"unexpected {unexpected[:3]}); pass the file torchvision downloads, {TORCHVISION_WEIGHTS_FILE}")
        for key, shape in expected.items():
            if tuple(state_dict[key].shape) != shape:
                raise WeightsError(
                    f"{source} holds weights of another width: {key} is {tuple(state_dict[key].shape)}, torchvision's "
                    f"AlexNet needs {shape}; this is not {TORCHVISION_WEIGHTS_FILE} (the paper's 96-256-384-384-256 "
                    "network is get_model('alexnet'), and a checkpoint of it loads with load_pretrained(name, weights_path))"
                )
        self.load_state_dict({self._torchvision_keys[k]: v for k, v in state_dict.items()})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def imagenet_categories() -> list[str]:
    """The 1000 ImageNet class names in output order (shipped with torchvision; no network needed)."""
    from torchvision.models import AlexNet_Weights

    return list(AlexNet_Weights.IMAGENET1K_V1.meta["categories"])


def torchvision_card(source: str) -> dict:
    """The card of torchvision's IMAGENET1K_V1 weights: its published accuracy and how it differs from the paper."""
    from torchvision.models import AlexNet_Weights

    weights = AlexNet_Weights.IMAGENET1K_V1
    metrics = weights.meta["_metrics"]["ImageNet-1K"]
    return {
        "model": "alexnet-torchvision",
        "weights": "torchvision AlexNet_Weights.IMAGENET1K_V1",
        "source": source,
        "recipe": weights.meta["recipe"],
        "data": {"name": "imagenet-1k", "description": "ImageNet-1k (ILSVRC-2012) training set, 1.28 million images"},
        "test_set": "ImageNet-1k validation set (50,000 images), as published by torchvision (not re-measured here)",
        "acc@1": metrics["acc@1"],
        "acc@5": metrics["acc@5"],
        "test_error": round(100 - metrics["acc@1"], 3),
        "top5_error": round(100 - metrics["acc@5"], 3),
        "widths": "conv 64-192-384-256-256, one column (torchvision, after Krizhevsky 2014, 'One weird trick'); "
                  "the 2012 paper has 96-256-384-384-256 split over two GPUs (get_model('alexnet'))",
        "paper": "the 2012 paper reports 40.7 % top-1 / 18.2 % top-5 error on ILSVRC-2012 validation for one CNN",
        "classes": imagenet_categories(),
        "epochs": [],
    }


def _local_torchvision_weights(weights_path: str | os.PathLike | None) -> Path | None:
    if weights_path is not None:
        path = Path(weights_path)
        if not path.is_file():
            raise WeightsError(f"no weights file at {path}: check weights_path")
        return path
    folder = os.environ.get("CONVNET_LAB_WEIGHTS")
    if folder:
        exact = Path(folder) / TORCHVISION_WEIGHTS_FILE
        found = [exact] if exact.is_file() else sorted(Path(folder).glob("alexnet-*.pth"))
        if len(found) > 1:
            names = ", ".join(p.name for p in found)
            raise WeightsError(f"several alexnet-*.pth files in $CONVNET_LAB_WEIGHTS={folder} ({names}); "
                               "keep one or pass weights_path")
        if found:
            return found[0]
    return None


def load_torchvision_alexnet(weights_path: str | os.PathLike | None = None, progress: bool = True) -> tuple[nn.Module, dict]:
    """torchvision's IMAGENET1K_V1 AlexNet in eval mode and its card.

    Looks in order at ``weights_path``, ``$CONVNET_LAB_WEIGHTS/alexnet-*.pth``, then torchvision's
    download (cached under ``torch.hub.get_dir()``). Files are read with ``weights_only=True``.
    """
    from torchvision.models import AlexNet_Weights

    path = _local_torchvision_weights(weights_path)
    if path is not None:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # any unreadable file gets the same clear message
            raise WeightsError(f"{path} is not a readable weights file ({type(exc).__name__}: {exc})"[:400]) from None
        source = str(path)
    else:
        url = AlexNet_Weights.IMAGENET1K_V1.url
        try:
            state = torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=progress, check_hash=True,
                                                       weights_only=True)
        except Exception as exc:  # offline, proxy, disk full: one message naming both ways
            raise WeightsError(
                f"could not download torchvision's AlexNet weights from {url} ({type(exc).__name__}: {exc}); either connect "
                f"to the internet, or download {TORCHVISION_WEIGHTS_FILE} elsewhere and pass weights_path=FILE "
                "(load_pretrained('alexnet-torchvision', weights_path=FILE)) or put it in the folder named by "
                "$CONVNET_LAB_WEIGHTS"
            ) from None
        source = url
    if isinstance(state, dict) and "state_dict" in state and "format" in state:
        raise WeightsError(f"{source} is a convnet-lab checkpoint, not a torchvision state dict; "
                           "load it with convnets.read_checkpoint and convnets.model_from_checkpoint")
    if not isinstance(state, dict):
        raise WeightsError(f"{source} does not hold a state dict")
    model = TorchvisionAlexNet()
    model.load_torchvision_state_dict(state, source)
    model.name, model.options = "alexnet-torchvision", {}
    model.classes = imagenet_categories()
    return model.eval(), torchvision_card(source)


def top_classes(model: nn.Module, x: torch.Tensor, k: int = 5,
                classes: Sequence[str] | None = None) -> list[list[tuple[str, float]]]:
    """Per image, the k most probable classes as (name, softmax probability); names from ``model.classes``."""
    with inference(model):
        scores = model(x)
    return top_of_scores(scores, classes or getattr(model, "classes", None), k)


def top_of_scores(scores: torch.Tensor, classes: Sequence[str] | None = None,
                  k: int = 5) -> list[list[tuple[str, float]]]:
    """:func:`top_classes` from scores already computed (N, C): per image, the k most probable (name, probability)."""
    probs = scores.softmax(dim=1)
    names = list(classes or [str(i) for i in range(probs.shape[1])])
    values, indices = probs.topk(min(k, probs.shape[1]), dim=1)
    return [[(names[i], float(v)) for v, i in zip(vs.tolist(), ix.tolist(), strict=True)]
            for vs, ix in zip(values, indices, strict=True)]
