"""Training augmentation beyond the mirror flip: random crops, brightness/contrast jitter, greyscale.

Applied on the device to the whole batch (float N x 3 x H x W in [0, 1], after the flip and before
normalisation), so every data path (decode per step, memmap cache, device cache) shares it. The
random draws come from a generator seeded with (seed, step) alone: any number of workers gives the
same batches, and a resumed run continues with exactly the draws it would have made.

- `crop_scale` in (0, 1]: each image is replaced by a random square-ish crop keeping between
  `crop_scale` and 1 of its area (same aspect ratio, random position), resized back to the input
  size (bilinear). 1 = off.
- `jitter` >= 0: brightness and contrast each multiplied by a factor drawn in [1 - jitter, 1 + jitter].
- `greyscale` in [0, 1]: the probability that an image is turned to grey (ITU-R 601 luma).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Augmentation:
    crop_scale: float = 1.0
    jitter: float = 0.0
    greyscale: float = 0.0
    seed: int = 0

    @property
    def enabled(self) -> bool:
        return self.crop_scale < 1.0 or self.jitter > 0 or self.greyscale > 0

    def generator(self, step: int) -> torch.Generator:
        return torch.Generator().manual_seed((self.seed * 1_000_003 + step * 7_919 + 29) % (2**63))

    def __call__(self, x: torch.Tensor, step: int) -> torch.Tensor:
        """`x`: float N x 3 x H x W in [0, 1] on any device; returns the augmented batch (same shape)."""
        if not self.enabled:
            return x
        n = x.shape[0]
        g = self.generator(step)
        # Draw every parameter on the CPU, in a fixed order, whatever is enabled (stable streams).
        area = torch.empty(n).uniform_(self.crop_scale, 1.0, generator=g) if self.crop_scale < 1.0 else torch.ones(n)
        pos = torch.rand(n, 2, generator=g)
        bright = 1.0 + (torch.rand(n, generator=g) * 2 - 1) * self.jitter
        contrast = 1.0 + (torch.rand(n, generator=g) * 2 - 1) * self.jitter
        grey = torch.rand(n, generator=g) < self.greyscale
        if self.crop_scale < 1.0:
            s = area.sqrt()
            # affine_grid works in [-1, 1]: a crop of relative size s can be centred anywhere in [-(1-s), 1-s].
            t = (pos * 2 - 1) * (1 - s).unsqueeze(1)
            theta = torch.zeros(n, 2, 3)
            theta[:, 0, 0] = s
            theta[:, 1, 1] = s
            theta[:, :, 2] = t
            grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        if self.jitter > 0:
            b = bright.to(x.device, x.dtype).view(-1, 1, 1, 1)
            c = contrast.to(x.device, x.dtype).view(-1, 1, 1, 1)
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            x = ((x - mean) * c + mean) * b
        if self.greyscale > 0 and bool(grey.any()):
            weights = torch.tensor([0.299, 0.587, 0.114], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
            luma = (x * weights).sum(dim=1, keepdim=True).expand_as(x)
            x = torch.where(grey.to(x.device).view(-1, 1, 1, 1), luma, x)
        return x.clamp_(0.0, 1.0)
