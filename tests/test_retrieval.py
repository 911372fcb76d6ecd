"""Retrieval: last-hidden-layer embeddings and brute-force Euclidean neighbours."""

import pytest
import torch

import convnets
from convnets.retrieval import embed, embedding_layer, nearest


def test_nearest_finds_the_constructed_neighbours_in_order():
    g = torch.Generator().manual_seed(0)
    bank = torch.randn(500, 84, generator=g)
    # query 0 sits next to bank[7], then bank[300] a little further, then bank[42] further still
    query = bank[7] + 0.01
    bank[300] = bank[7] + 0.05
    bank[42] = bank[7] + 0.2
    distances, indices = nearest(query, bank, k=4)
    assert indices[:3].tolist() == [7, 300, 42]
    assert distances[:3].tolist() == pytest.approx([0.01 * 84**0.5, 0.04 * 84**0.5, 0.19 * 84**0.5], rel=1e-4)
    assert torch.all(distances[1:] >= distances[:-1])


def test_nearest_agrees_with_exhaustive_distances_for_a_batch_of_queries():
    g = torch.Generator().manual_seed(1)
    bank, queries = torch.randn(1000, 16, generator=g), torch.randn(5, 16, generator=g)
    distances, indices = nearest(queries, bank, k=6, bank_sq_norms=bank.pow(2).sum(1))
    full = torch.cdist(queries, bank)
    expected = full.topk(6, dim=1, largest=False)
    assert torch.equal(indices, expected.indices)
    assert torch.allclose(distances, expected.values, atol=1e-5)
    assert nearest(queries[0], bank[:3], k=6)[1].shape == (3,)  # k is capped at the bank's size
    with pytest.raises(ValueError, match="share D"):
        nearest(torch.zeros(8), bank)


def test_embed_reads_the_last_hidden_layer_of_each_model():
    torch.manual_seed(0)
    lenet = convnets.get_model("lenet5")
    digits = torch.rand(3, 1, 28, 28)
    assert embedding_layer(lenet) == "F6"
    assert torch.equal(embed(lenet, digits), convnets.activations(lenet, digits)["F6"])
    cifar = convnets.get_model("alexnet-cifar", hidden=2048).train()
    images = torch.rand(5, 3, 32, 32)
    features = embed(cifar, images, batch_size=2)
    assert features.shape == (5, 2048) and cifar.training  # eval inside (no dropout), mode restored
    assert torch.allclose(features, embed(cifar, images), atol=1e-5)  # deterministic: dropout off
    alexnet = convnets.get_model("alexnet")
    assert embed(alexnet, torch.rand(1, 3, 224, 224)).shape == (1, 4096)
    assert embed(cifar, images, layer="conv5").shape == (5, 128 * 3 * 3)
    with pytest.raises(ValueError, match="no layer 'fc9'"):
        embed(cifar, images, layer="fc9")


def test_retrieval_finds_an_image_and_its_near_copies():
    torch.manual_seed(0)
    model = convnets.get_model("alexnet-cifar", width=0.5, hidden=256)
    g = torch.Generator().manual_seed(2)
    images = torch.rand(40, 3, 32, 32, generator=g)
    images[10] = (images[3] + 0.002).clamp(0, 1)  # a near copy of image 3
    bank = embed(model, images)
    distances, indices = nearest(bank[3], bank, k=3)
    assert indices[:2].tolist() == [3, 10] and distances[0].item() == pytest.approx(0.0, abs=1e-3)
