"""The paper's distortions, batched on the device."""

import torch

from training.augment import Distortion, distort

NONE = Distortion(translate=0, scale=0, squeeze=0, shear=0, rotate=0, elastic=0)


def _digit():
    x = torch.zeros(1, 1, 28, 28)
    x[0, 0, 8:20, 12:16] = 1.0
    return x


def test_zero_strength_is_the_identity():
    x = torch.rand(4, 1, 28, 28)
    assert torch.allclose(distort(x, NONE), x, atol=1e-5)


def test_translation_moves_the_ink_by_up_to_the_strength():
    x = _digit().repeat(256, 1, 1, 1)
    g = torch.Generator().manual_seed(0)
    out = distort(x, Distortion(translate=3, scale=0, squeeze=0, shear=0), g)
    cols = torch.arange(28.0)
    centre = (out.sum(dim=2).squeeze(1) * cols).sum(1) / out.sum(dim=(1, 2, 3))
    shift = centre - 13.5
    assert shift.abs().max() <= 3.05 and shift.abs().max() > 2.0
    assert torch.allclose(out.sum(dim=(1, 2, 3)), x.sum(dim=(1, 2, 3)), rtol=0.02)  # translation keeps the ink


def test_each_image_gets_its_own_distortion_and_seed_repeats_it():
    x = _digit().repeat(8, 1, 1, 1)
    d = Distortion(elastic=2.0)
    a = distort(x, d, torch.Generator().manual_seed(1))
    b = distort(x, d, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert not torch.allclose(a[0], a[1])
    assert a.shape == x.shape and a.min() >= 0 and a.max() <= 1
