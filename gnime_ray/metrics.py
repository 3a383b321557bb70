"""Reconstruction, privacy and utility metrics (paper Sec. 5.2 and the release's definitions).

Images and maps are float tensors in [0, 1]. Per-image metrics return ``(N,)`` tensors; set
metrics return floats.

- ``ssim``: Wang et al. with a Gaussian window of 11 taps, sigma 1.5, K1 0.01, K2 0.03, data range
  1, VALID window (no padding), population (co)variances; averaged over the valid window and the
  channels of each image. Equals ``skimage.metrics.structural_similarity(..., gaussian_weights=True,
  sigma=1.5, use_sample_covariance=False, data_range=1)``.
- ``deepsim``: the release's DeePSiM, exp(-||A - B||_F / N) for the N x d feature matrices A, B
  (higher = more similar; it depends on N). ``feature_distance`` is its N-independent companion,
  the mean per-sample Euclidean feature distance (lower = more similar). ``deepsim_at`` is what the
  release's formula gives on ``n_ref`` images of the same distribution: ||A - B||_F = sqrt(N) x the
  root mean square per-sample distance r, so exp(-||A - B||_F / N) = exp(-r / sqrt(N)), estimated at
  n_ref as exp(-r / sqrt(n_ref)) (= deepsim ** sqrt(N / n_ref)); the paper's numbers are over the
  release's evaluation sets (MNIST 7,000 images, CIFAR-10 6,000, CelebA 3,000), so a value measured
  on 250 test images is compared with them only at the paper's N.
  Deviation from the paper's text, following the release: the features are the TARGET model's
  penultimate features (the paper says f_E).
- TCA: top-1 accuracy of f_E on the reconstructions (computed batch by batch in pipeline/cell.py).
- Utility (Table 3): DeePSiM between the target model's penultimate features (``features``) of x*e
  and x*e_hat (``masked``: maps smaller than the image are upsampled bilinearly, one-channel maps
  broadcast over colour channels).
- ``topk_agreement``: a second utility measure, independent of N and of any model (ours; the paper
  has none): the share of a clean map's top ``TOPK_FRACTION`` values (over all its C x H x W
  values) that are also among the released map's top values, per map; 1 = the same pixels stay
  the most important. It depends only on the ranking, so any increasing transform of a map
  leaves it unchanged.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03


def _gaussian_1d(size: int, sigma: float, dtype: torch.dtype, device) -> torch.Tensor:
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(r ** 2) / (2 * sigma ** 2))
    return (g / g.sum()).to(dtype=dtype, device=device)


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """x, y: (N, C, H, W) float in [0, data_range], H, W >= 11 -> (N,) per-image SSIM."""
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"ssim needs two (N, C, H, W) tensors of one shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    if min(x.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(f"ssim needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {tuple(x.shape[-2:])}")
    dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    x, y = x.to(dtype), y.to(dtype)
    c = x.shape[1]
    g = _gaussian_1d(SSIM_WINDOW, SSIM_SIGMA, dtype, x.device)
    gh = g.view(1, 1, 1, -1).expand(c, 1, 1, -1)
    gv = g.view(1, 1, -1, 1).expand(c, 1, -1, 1)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(t, gh, groups=c), gv, groups=c)

    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx * mx
    syy = blur(y * y) - my * my
    sxy = blur(x * y) - mx * my
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return s.mean(dim=(1, 2, 3))


def mse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(N, ...) -> (N,) per-image mean squared error."""
    return (x.float() - y.float()).pow(2).flatten(1).mean(1)


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """(N, ...) -> (N,) per-image PSNR in dB (inf where the images are equal)."""
    return 10.0 * torch.log10(data_range ** 2 / mse(x, y))


TOPK_FRACTION = 0.1


def topk_agreement(e: torch.Tensor, e_hat: torch.Tensor, fraction: float = TOPK_FRACTION) -> torch.Tensor:
    """Clean maps e and released maps e_hat (N, C, H, W) -> (N,) per map, |top_k(e) & top_k(e_hat)| / k
    with k = max(1, round(fraction x C x H x W)) (module docstring). Ties between equal values are
    broken by position (torch.topk), the same way in both maps."""
    if e.shape != e_hat.shape or e.ndim < 2:
        raise ValueError(f"topk_agreement needs two (N, ...) tensors of one shape, got {tuple(e.shape)} and "
                         f"{tuple(e_hat.shape)}")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    a, b = e.float().flatten(1), e_hat.float().flatten(1)
    k = max(1, round(fraction * a.shape[1]))
    top_a = torch.zeros_like(a, dtype=torch.bool).scatter_(1, a.topk(k, dim=1).indices, True)
    top_b = torch.zeros_like(b, dtype=torch.bool).scatter_(1, b.topk(k, dim=1).indices, True)
    return (top_a & top_b).sum(1).float() / k


def perturbation_mse(e: torch.Tensor, e_hat: torch.Tensor) -> torch.Tensor:
    """Clean maps e and released maps e_hat (N, C, H, W) -> (N,) mean((e - e_hat)^2) per map."""
    return mse(e, e_hat)


def deepsim(feats_a: torch.Tensor, feats_b: torch.Tensor) -> float:
    """Release DeePSiM: exp(-||A - B||_F / N) for (N, d) feature matrices."""
    if feats_a.shape != feats_b.shape or feats_a.ndim != 2:
        raise ValueError(f"deepsim needs two (N, d) feature matrices, got {tuple(feats_a.shape)} and {tuple(feats_b.shape)}")
    n = feats_a.shape[0]
    return math.exp(-torch.linalg.norm((feats_a - feats_b).double()).item() / n)


def deepsim_at(feats_a: torch.Tensor, feats_b: torch.Tensor, n_ref: int) -> float:
    """The release's DeePSiM as it would come out on ``n_ref`` images: exp(-r / sqrt(n_ref)), r the
    root mean square of the per-sample feature distances of these (N, d) matrices (module docstring)."""
    if feats_a.shape != feats_b.shape or feats_a.ndim != 2:
        raise ValueError(f"deepsim_at needs two (N, d) feature matrices, got {tuple(feats_a.shape)} and "
                         f"{tuple(feats_b.shape)}")
    if not (isinstance(n_ref, int) and n_ref >= 1):
        raise ValueError(f"n_ref must be an integer >= 1, got {n_ref!r}")
    rms = torch.linalg.norm((feats_a - feats_b).double()).item() / math.sqrt(feats_a.shape[0])
    return math.exp(-rms / math.sqrt(n_ref))


def feature_distance(feats_a: torch.Tensor, feats_b: torch.Tensor) -> float:
    """N-independent DeePSiM companion: mean_i ||a_i - b_i||_2 for (N, d) feature matrices."""
    if feats_a.shape != feats_b.shape or feats_a.ndim != 2:
        raise ValueError(f"feature_distance needs two (N, d) matrices, got {tuple(feats_a.shape)} and {tuple(feats_b.shape)}")
    return torch.linalg.norm((feats_a - feats_b).double(), dim=1).mean().item()


@torch.no_grad()
def batched(fn, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """fn applied to x in chunks along dim 0, concatenated."""
    return torch.cat([fn(x[i:i + batch_size]) for i in range(0, x.shape[0], batch_size)])


def _device(model: nn.Module) -> torch.device:
    """Where the model's parameters live (the host for a model without any)."""
    return next(model.parameters(), torch.empty(0)).device


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, batch_size: int = 256) -> float:
    """Top-1 accuracy of ``model`` on x (N, C, H, W) float in [0, 1] against labels (N,); x may
    live on the host: each batch is moved to the model's device."""
    was = model.training
    model.eval()
    dev = _device(model)
    try:
        pred = batched(lambda b: model(b.to(dev)).argmax(1).cpu(), x, batch_size)
    finally:
        model.train(was)
    return (pred == labels.cpu()).float().mean().item()


@torch.no_grad()
def features(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """The model's penultimate features (``model.features``) of x (N, C, H, W), batch by batch on
    the model's device, on the host."""
    was = model.training
    model.eval()
    dev = _device(model)
    try:
        return batched(lambda b: model.features(b.to(dev)).cpu(), x, batch_size)
    finally:
        model.train(was)


def f1_score(pred: torch.Tensor, truth: torch.Tensor) -> float:
    """Binary F1 of predictions vs truth ((N,) bool or {0, 1}); 0 when there is no true or
    predicted positive (scikit-learn's zero_division=0)."""
    pred, truth = pred.bool().cpu(), truth.bool().cpu()
    tp = (pred & truth).sum().item()
    denom = pred.sum().item() + truth.sum().item()
    return 2.0 * tp / denom if denom else 0.0


def masked(x: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """x * maps (Table 3's input x*e): maps smaller than the image are upsampled bilinearly first,
    one-channel maps broadcast over the colour channels."""
    if maps.shape[-2:] != x.shape[-2:]:
        maps = F.interpolate(maps, size=x.shape[-2:], mode="bilinear", align_corners=False)
    return x * maps
