"""Image retrieval with a network's last hidden layer, as in Section 6.1 of the AlexNet paper.

:func:`embed` reads the last hidden layer (fc7's 4,096 values for AlexNet, F6's 84 for
LeNet-5, fc7 of ``alexnet-cifar``); :func:`nearest` finds the closest bank vectors to
each query by brute-force Euclidean distance -- the paper's Figure 4.
"""

from __future__ import annotations

import time

import torch
from torch import nn

from .inference import capture, inference
from .probes import named_layers


def embedding_layer(model: nn.Module) -> str:
    """The layer :func:`embed` reads: ``model.embedding_layer``, else the last-but-one child of ``classifier``."""
    name = getattr(model, "embedding_layer", None)
    if name:
        return name
    names = [n for n, _ in model.classifier.named_children()] if hasattr(model, "classifier") else []
    if len(names) < 2:
        raise ValueError(f"{type(model).__name__} names no embedding layer; pass layer=NAME (one of its layers)")
    return names[-2]


@torch.no_grad()
def embed(model: nn.Module, x: torch.Tensor, layer: str | None = None, batch_size: int = 256) -> torch.Tensor:
    """The output of ``layer`` (default :func:`embedding_layer`) for a batch, flattened to (N, D), in eval mode.

    ``x`` is what the model takes (e.g. (N, 3, 224, 224) RGB in [0, 1] for AlexNet); it is run in
    batches of ``batch_size`` with a forward hook on that one layer.
    """
    name = layer or embedding_layer(model)
    layers = dict(named_layers(model))
    if name not in layers:
        raise ValueError(f"{type(model).__name__} has no layer '{name}'; its layers: {', '.join(layers)}")
    captured: list[torch.Tensor] = []
    with inference(model), capture([(name, layers[name])]) as outputs:
        for start in range(0, len(x), batch_size):
            model(x[start:start + batch_size])
            captured.append(outputs[name].flatten(1).clone())
    if not captured:
        raise ValueError("embed needs at least one image")
    return torch.cat(captured)


def nearest(query: torch.Tensor, bank: torch.Tensor, k: int = 6,
            bank_sq_norms: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The k bank vectors closest to each query in Euclidean distance: ``(distances, indices)``, nearest first.

    ``query`` is (D,) or (Q, D), ``bank`` (N, D); results are (k,) or (Q, k). Distances come from
    ||q||^2 - 2 q.b + ||b||^2 (one matrix product); pass ``bank_sq_norms = (bank ** 2).sum(1)`` to
    reuse it across calls. The k winners' distances are then recomputed exactly.
    """
    single = query.dim() == 1
    q = query.unsqueeze(0) if single else query
    if q.dim() != 2 or bank.dim() != 2 or q.shape[1] != bank.shape[1]:
        raise ValueError(f"query (D,) or (Q, D) and bank (N, D) must share D; got {tuple(query.shape)} and {tuple(bank.shape)}")
    q = q.to(bank.dtype)
    k = min(k, bank.shape[0])
    norms = bank_sq_norms if bank_sq_norms is not None else torch.linalg.vector_norm(bank, dim=1).square()
    squared = norms.unsqueeze(0) - 2 * q @ bank.T  # ||q||^2 is the same for every bank row: not needed to rank
    indices = squared.topk(k, dim=1, largest=False).indices
    distances = (bank[indices] - q.unsqueeze(1)).norm(dim=2)
    distances, order = distances.sort(dim=1)
    indices = indices.gather(1, order)
    return (distances[0], indices[0]) if single else (distances, indices)


def benchmark_nearest(n: int = 60_000, dim: int = 84, queries: int = 200, k: int = 6, seed: int = 0) -> dict:
    """Milliseconds per query of :func:`nearest` over a random (n, dim) bank: one at a time, with and
    without precomputed norms, and as one batch (``python -m training.experiments time-retrieval``)."""
    g = torch.Generator().manual_seed(seed)
    bank, q = torch.randn(n, dim, generator=g), torch.randn(queries, dim, generator=g)
    norms = torch.linalg.vector_norm(bank, dim=1).square()
    nearest(q[0], bank, k)  # warm-up
    timings = {}
    for label, extra in (("single_ms", {}), ("single_precomputed_norms_ms", {"bank_sq_norms": norms})):
        start = time.perf_counter()
        for row in q:
            nearest(row, bank, k, **extra)
        timings[label] = 1000 * (time.perf_counter() - start) / queries
    start = time.perf_counter()
    nearest(q, bank, k, bank_sq_norms=norms)
    timings["batched_ms"] = 1000 * (time.perf_counter() - start) / queries
    return {"bank": [n, dim], "queries": queries, "k": k, "threads": torch.get_num_threads(), **timings}



def pca_2d(bank: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The bank's first two principal components: ``(coords (N, 2), mean (D,), components (2, D))``.

    Exact SVD of the centred bank; the first axis carries the most variance. Each component's sign is fixed
    (its largest-magnitude loading positive) so the map does not flip between runs. Place more vectors on
    the same map with :func:`project`.
    """
    if bank.dim() != 2 or bank.shape[0] < 2 or bank.shape[1] < 2:
        raise ValueError(f"pca_2d needs a bank (N, D) with N, D >= 2; got {tuple(bank.shape)}")
    data = bank.double()
    mean = data.mean(dim=0)
    _, _, vh = torch.linalg.svd(data - mean, full_matrices=False)
    components = vh[:2]
    signs = torch.sign(components.gather(1, components.abs().argmax(dim=1, keepdim=True)))
    components = components * signs
    coords = (data - mean) @ components.T
    return coords.to(bank.dtype), mean.to(bank.dtype), components.to(bank.dtype)


def project(x: torch.Tensor, mean: torch.Tensor, components: torch.Tensor) -> torch.Tensor:
    """Vectors (D,) or (N, D) on the map of :func:`pca_2d`: ``(x - mean) @ components.T``, (2,) or (N, 2)."""
    return (x.to(mean.dtype) - mean) @ components.T
