"""Structural similarity (SSIM; Wang, Bovik, Sheikh & Simoncelli, 2004) of image batches, in torch.

    SSIM(x, y) = mean over windows of  (2 mu_x mu_y + C1) (2 s_xy + C2) / ((mu_x^2 + mu_y^2 + C1) (s_x^2 + s_y^2 + C2))

with local means, variances and covariance taken under an 11x11 Gaussian window (sigma 1.5) at every position
where the window fits inside the image ("valid"), per colour channel, and C1 = (0.01 L)^2, C2 = (0.03 L)^2 for
the data range L. These are the constants and window of the paper and of common implementations.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """The normalised 1-D Gaussian of ``size`` taps (float64); the 2-D window is its outer product."""
    taps = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    w = torch.exp(-(taps**2) / (2 * sigma**2))
    return w / w.sum()


def _filter(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Separable valid filtering of (N, C, H, W) with the 1-D window ``w``, per channel."""
    c = x.shape[1]
    x = F.conv2d(x, w.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, w.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def ssim_map(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, size: int = 11, sigma: float = 1.5,
             k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:  # fmt: skip
    """The SSIM index at each valid window position: (N, C, H - size + 1, W - size + 1), float64."""
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(
            f"SSIM needs two (N, C, H, W) batches of one shape, got {tuple(x.shape)} and {tuple(y.shape)}."
        )
    if min(x.shape[-2:]) < size:
        raise ValueError(f"Images of {tuple(x.shape[-2:])} pixels are smaller than the {size}x{size} SSIM window.")
    x, y = x.double(), y.double()
    w = gaussian_window(size, sigma).to(x.device)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    mu_x, mu_y = _filter(x, w), _filter(y, w)
    var_x = _filter(x * x, w) - mu_x**2
    var_y = _filter(y * y, w) - mu_y**2
    cov = _filter(x * y, w) - mu_x * mu_y
    return ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Mean SSIM per image pair (N,), over window positions and channels; 1 means identical."""
    return ssim_map(x, y, data_range, size, sigma).mean(dim=(1, 2, 3))
