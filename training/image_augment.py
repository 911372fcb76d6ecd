"""The AlexNet paper's data augmentation (Section 4.1), applied to whole batches on the device.

Padding, flips, the centre crop and the five patches are ``torchvision.transforms.v2.functional``'s; what it lacks
is a crop at a different random place for each image of a batch, done here with one gather.

* Translations and reflections: random crops (224x224 patches of 256x256 images in the
  paper; for 32x32 images, pad-and-crop: pad by ``pad`` pixels, take a random 32x32 window)
  and horizontal reflections with probability 1/2.
* PCA colour augmentation: to every pixel of an image add ``sum_i alpha_i lambda_i p_i``,
  where p_i, lambda_i are the eigenvectors / eigenvalues of the 3x3 covariance of the training
  set's RGB values and alpha_i ~ N(0, 0.1) is drawn once per image (per presentation).
  Pixels are on the [0, 1] scale, as in the usual re-implementations (fb.resnet.torch's
  ImageNet eigenvalues 0.2175, 0.0188, 0.0045); the result is not clipped (the paper works on
  mean-subtracted values).
* Test time: the centre crop, or the ten patches (four corners and centre, and their
  reflections) whose softmax outputs are averaged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torchvision.transforms.v2.functional as TF
from torch import nn


@dataclass(frozen=True)
class ColourPCA:
    """Principal axes of a data set's RGB values ([0, 1] scale): eigenvalues (largest first) and unit eigenvectors p_i."""

    eigenvalues: tuple[float, float, float]
    eigenvectors: tuple[tuple[float, float, float], ...]  # eigenvectors[i] is p_i

    def basis(self, device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """(lambda (3,), P (3, 3) with P[:, i] = p_i) as float tensors on ``device``."""
        values = torch.tensor(self.eigenvalues, dtype=torch.float32, device=device)
        vectors = torch.tensor(self.eigenvectors, dtype=torch.float32, device=device).T
        return values, vectors

    def as_dict(self) -> dict:
        return asdict(self)


def colour_pca(images: torch.Tensor, max_pixels: int = 1_000_000, seed: int = 0) -> ColourPCA:
    """Eigendecomposition of the RGB covariance of uint8 (or [0, 1] float) images (N, 3, H, W).

    At most ``max_pixels`` pixels, drawn uniformly at random (fixed ``seed``), enter the covariance;
    a million pin the 3x3 matrix down to about three digits.
    """
    if images.dim() != 4 or images.shape[1] != 3 or len(images) == 0:
        raise ValueError(f"colour_pca needs RGB images (N, 3, H, W), got shape {tuple(images.shape)}")
    pixels = images.permute(1, 0, 2, 3).reshape(3, -1)
    if pixels.shape[1] > max_pixels:
        generator = torch.Generator(device=pixels.device).manual_seed(seed)
        pixels = pixels[:, torch.randint(pixels.shape[1], (max_pixels,), generator=generator, device=pixels.device)]
    pixels = pixels.double()
    if not images.is_floating_point():
        pixels = pixels / 255
    values, vectors = torch.linalg.eigh(torch.cov(pixels))  # ascending
    values, vectors = values.flip(0).clamp_min(0), vectors.flip(1)
    return ColourPCA(tuple(values.tolist()), tuple(tuple(v) for v in vectors.T.tolist()))


def pca_colour(x: torch.Tensor, pca: ColourPCA, std: float = 0.1, generator: torch.Generator | None = None) -> torch.Tensor:
    """Add ``P (alpha * lambda)`` to every pixel of each image, alpha ~ N(0, std) per image and axis."""
    values, vectors = pca.basis(x.device)
    alpha = torch.randn(x.shape[0], 3, generator=generator, device=x.device) * std
    shift = (alpha * values) @ vectors.T  # (N, 3): sum_i alpha_i lambda_i p_i
    return x + shift.to(x.dtype).view(-1, 3, 1, 1)


def random_crop(x: torch.Tensor, size: int, pad: int = 0, generator: torch.Generator | None = None) -> torch.Tensor:
    """A random ``size`` x ``size`` window of each image, after zero-padding by ``pad`` pixels on every side."""
    if pad:
        x = TF.pad(x, [pad])
    n, _, height, width = x.shape
    if size > min(height, width):
        raise ValueError(f"crop {size} is larger than the (padded) images, {height}x{width}")
    top = torch.randint(0, height - size + 1, (n, 1), generator=generator, device=x.device)
    left = torch.randint(0, width - size + 1, (n, 1), generator=generator, device=x.device)
    offsets = torch.arange(size, device=x.device)
    rows, cols = (top + offsets)[:, :, None], (left + offsets)[:, None, :]
    patches = x.permute(0, 2, 3, 1)[torch.arange(n, device=x.device)[:, None, None], rows, cols]  # (n, size, size, C)
    return patches.permute(0, 3, 1, 2).contiguous()


def random_flip(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Reflect each image left-right with probability 1/2."""
    flip = torch.rand(x.shape[0], generator=generator, device=x.device) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), TF.horizontal_flip(x), x)


def centre_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """The central ``size`` x ``size`` window (a ValueError where the images are smaller: no padding)."""
    if size > min(x.shape[-2:]):
        raise ValueError(f"cannot crop {size}x{size} from {x.shape[-2]}x{x.shape[-1]} images")
    return TF.center_crop(x, [size, size])


def ten_patches(x: torch.Tensor, size: int, pad: int = 0) -> list[torch.Tensor]:
    """The paper's ten test patches: four corners and centre, then the same five reflected (each (N, C, size, size))."""
    if pad:
        x = TF.pad(x, [pad])
    height, width = x.shape[-2:]
    if size > min(height, width):
        raise ValueError(f"cannot take {size}x{size} patches from {height}x{width} images")
    five = list(TF.five_crop(x, [size, size]))  # torchvision's ten_crop reflects first: its 6th is not the 1st's mirror
    return five + [TF.horizontal_flip(p) for p in five]


def ten_patch_probs(model: nn.Module, x: torch.Tensor, size: int, pad: int = 0) -> torch.Tensor:
    """Softmax outputs averaged over the ten patches (the paper's test-time prediction), (N, classes)."""
    return torch.stack([model(p.contiguous()).float().softmax(dim=1) for p in ten_patches(x, size, pad)]).mean(0)


@dataclass(frozen=True)
class ImageAugment:
    """Switches of the paper's augmentation; ``as_dict()`` goes into a run's card.

    ``crop``: side of the random training crop and the centre test crop (None: the image size);
    ``pad``: zero padding before cropping (translations for 32x32 images); ``flip``: random
    reflections; ``pca_std``: std of the PCA colour alphas (0 = off); ``ten_patch``: evaluate by
    averaging the ten patches' softmax instead of the centre crop.
    """

    crop: int | None = None
    pad: int = 0
    flip: bool = True
    pca_std: float = 0.1
    ten_patch: bool = False

    @classmethod
    def off(cls) -> ImageAugment:
        """No augmentation at all (centre crop only, when the images are larger than ``crop``)."""
        return cls(flip=False, pca_std=0.0)

    @classmethod
    def cifar(cls) -> ImageAugment:
        """Pad-and-crop translations (+-4 pixels), reflections and PCA colour for 32x32 images."""
        return cls(crop=32, pad=4)

    @classmethod
    def imagenet(cls) -> ImageAugment:
        """The paper's ImageNet setting: random 224 crops of 256x256 images, reflections, PCA colour, ten patches."""
        return cls(crop=224, ten_patch=True)

    def as_dict(self) -> dict:
        return asdict(self)

    def train_batch(self, x: torch.Tensor, pca: ColourPCA | None = None,
                    generator: torch.Generator | None = None) -> torch.Tensor:
        """Randomly crop, reflect and recolour a float batch (N, 3, H, W)."""
        size = self.crop or x.shape[-1]
        if self.pad or size < min(x.shape[-2:]):
            x = random_crop(x, size, self.pad, generator)
        if self.flip:
            x = random_flip(x, generator)
        if self.pca_std > 0:
            if pca is None:
                raise ValueError("PCA colour augmentation needs the training set's ColourPCA: pass pca=colour_pca(train_x)")
            x = pca_colour(x, pca, self.pca_std, generator)
        return x

    def test_batch(self, x: torch.Tensor) -> torch.Tensor:
        """The centre ``crop`` of a float batch (unchanged when the images already have that size)."""
        return centre_crop(x, self.crop) if self.crop and self.crop < min(x.shape[-2:]) else x
