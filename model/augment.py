"""Batched, per-sample random augmentation on whatever device holds the batch.

One affine matrix per image (rotation, shear, zoom, shift, and the mirror folded in as a sign)
drawn at once and applied with one affine_grid/grid_sample, then random erasing as a mask: no
Python loop over samples and no DataLoader workers, so a GPU is never starved by CPU-side
augmentation. The trainer calls it on chunks of thousands of images (a whole epoch in a few
calls), so its dozen kernels cost nothing per training step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from model.config import Config

# Random erasing draws a rectangle covering this fraction of the image, with this aspect ratio range
# (the defaults of Zhong et al. 2017 and torchvision's RandomErasing).
ERASE_AREA = (0.02, 0.33)
ERASE_RATIO = (0.3, 3.3)


@dataclass(frozen=True)
class Augmentation:
    """Effective magnitudes: `Config` knobs already scaled by `Config.strength`."""

    rotation: float = 0.0  # degrees
    shift: float = 0.0  # fraction of the side
    shear: float = 0.0  # degrees
    zoom: float = 0.0  # fraction
    flip: float = 0.0  # probability
    erasing: float = 0.0  # probability

    @classmethod
    def from_config(cls, cfg: Config) -> "Augmentation":
        s = cfg.strength
        return cls(s * cfg.rotation, s * cfg.shift, s * cfg.shear, s * cfg.zoom, s * cfg.flip, s * cfg.erasing)

    @property
    def geometric(self) -> bool:
        return any((self.rotation, self.shift, self.shear, self.zoom))


def _uniform(n: int, low: float, high: float, like: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
    return torch.rand(n, device=like.device, generator=gen) * (high - low) + low


def augment(x: torch.Tensor, aug: Augmentation, gen: torch.Generator | None = None) -> torch.Tensor:
    """x: float images (N, C, H, W); returns a new batch of the same shape, dtype and range."""
    n = x.shape[0]
    mirror = torch.rand(n, device=x.device, generator=gen) < aug.flip if aug.flip else None
    if aug.geometric:
        theta = _affine(n, aug, x, gen)
        if mirror is not None:
            # Mirroring the output's x coordinate negates the matrix's x column: one resampling does both.
            theta[:, :, 0] = torch.where(mirror[:, None], -theta[:, :, 0], theta[:, :, 0])
        grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    elif mirror is not None:
        x = torch.where(mirror[:, None, None, None], x.flip(-1), x)
    if aug.erasing:
        x = _erase(x, aug.erasing, gen)
    return x


def _affine(n: int, aug: Augmentation, like: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
    """(n, 2, 3) matrices mapping output to input coordinates in affine_grid's [-1, 1] units."""
    angle = _uniform(n, -aug.rotation, aug.rotation, like, gen) * (math.pi / 180)
    shear = _uniform(n, -aug.shear, aug.shear, like, gen) * (math.pi / 180)
    scale = _uniform(n, 1 - aug.zoom, 1 + aug.zoom, like, gen)
    # affine_grid works in [-1, 1] coordinates: a shift of a fraction f of the side is 2f.
    tx = _uniform(n, -aug.shift, aug.shift, like, gen) * 2
    ty = _uniform(n, -aug.shift, aug.shift, like, gen) * 2
    cos, sin, tan = torch.cos(angle), torch.sin(angle), torch.tan(shear)
    # rotation @ shear, divided by the zoom factor (a zoom-in samples a smaller input region).
    theta = torch.stack(
        [
            torch.stack([cos, cos * tan - sin, tx], dim=1),
            torch.stack([sin, sin * tan + cos, ty], dim=1),
        ],
        dim=1,
    )
    return theta / torch.stack([scale, scale, torch.ones_like(scale)], dim=1)[:, None, :]


def _erase(x: torch.Tensor, p: float, gen: torch.Generator | None) -> torch.Tensor:
    n, _, h, w = x.shape
    area = _uniform(n, *ERASE_AREA, x, gen) * (h * w)
    log_ratio = _uniform(n, math.log(ERASE_RATIO[0]), math.log(ERASE_RATIO[1]), x, gen)
    eh = torch.sqrt(area * torch.exp(log_ratio)).clamp(max=h)
    ew = torch.sqrt(area / torch.exp(log_ratio)).clamp(max=w)
    top = torch.rand(n, device=x.device, generator=gen) * (h - eh)
    left = torch.rand(n, device=x.device, generator=gen) * (w - ew)
    erase = torch.rand(n, device=x.device, generator=gen) < p
    rows = torch.arange(h, device=x.device)[None, :, None]
    cols = torch.arange(w, device=x.device)[None, None, :]
    inside = (
        (rows >= top[:, None, None])
        & (rows < (top + eh)[:, None, None])
        & (cols >= left[:, None, None])
        & (cols < (left + ew)[:, None, None])
        & erase[:, None, None]
    )
    return x.masked_fill(inside[:, None], 0.0)
