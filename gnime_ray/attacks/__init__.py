"""Model-inversion attackers: ExpMI (released map + logits) and PredMI (logits only).

Each is trained with MSE on the attack-train split of RELEASED maps (each defence's own: the
attacker never sees clean maps of a defended model), Adam(lr, Keras eps 1e-7, default betas),
early-stopping on a held-out slice of the attack-train split with patience, restoring the best
weights (the release early-stops on the evaluation set; see data/splits.py). Reconstructions of
the evaluation split are clipped to [0, 1] before any metric.
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .. import echo
from ..config import ATTACKS
from ..early_stopping import EarlyStopping
from ..models import PredMI, UNet

Log = Callable[[str], None]


def build_attacker(name: str, map_shape: Sequence[int], image_shape: Sequence[int], num_classes: int,
                   width: float = 1.0) -> nn.Module:
    """ExpMI: the U-Net builder (map -> image); PredMI: logits -> image."""
    if name == "expmi":
        return UNet(map_shape, image_shape, num_classes, width=width)
    if name == "predmi":
        return PredMI(image_shape, num_classes, width=width)
    raise ValueError(f"unknown attack {name!r}; expected one of {', '.join(ATTACKS)}")


def _inputs(name: str, maps: torch.Tensor | None, logits: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return (maps, logits) if name == "expmi" else (logits,)


def train_attacker(name: str, model: nn.Module, maps: torch.Tensor | None, logits: torch.Tensor, images: torch.Tensor,
                   val_maps: torch.Tensor | None, val_logits: torch.Tensor, val_images: torch.Tensor, *,
                   epochs: int, batch_size: int, patience: int, lr: float, seed: int,
                   device: torch.device, log: Log = echo) -> dict:
    """Fit ``model`` in place on (released maps, logits) -> images, all float32 tensors with
    matching first dimension (maps None for PredMI). Returns the history; the model ends with
    its best validation-MSE weights in eval mode."""
    model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr, eps=1e-7)
    train = [t.to(device) for t in _inputs(name, maps, logits)]
    val = [t.to(device) for t in _inputs(name, val_maps, val_logits)]
    x, x_val = images.to(device), val_images.to(device)
    gen = torch.Generator().manual_seed(seed)
    stopper = EarlyStopping(patience, mode="min")
    hist = {"train_mse": [], "val_mse": []}
    t0 = time.perf_counter()
    for epoch in range(1, epochs + 1):
        model.train()
        perm = torch.randperm(x.shape[0], generator=gen).to(device)
        total = 0.0
        for i in range(0, perm.numel(), batch_size):
            idx = perm[i:i + batch_size]
            loss = F.mse_loss(model(*(t[idx] for t in train)), x[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * idx.numel()
        val_mse = F.mse_loss(reconstruct(model, val), x_val).item()
        hist["train_mse"].append(total / x.shape[0])
        hist["val_mse"].append(val_mse)
        if stopper.step(val_mse, epoch, model) and epoch < epochs:
            log(f"  {name}: early stop at epoch {epoch} (best val MSE {stopper.best:.5f} at epoch {stopper.best_epoch})")
            break
        if epoch % 10 == 0:
            log(f"  {name} epoch {epoch}/{epochs}: train MSE {total / x.shape[0]:.5f}, val MSE {val_mse:.5f} "
                f"({time.perf_counter() - t0:.0f}s)")
    stopper.restore(model)
    model.eval()
    hist["best_epoch"] = stopper.best_epoch
    hist["seconds"] = time.perf_counter() - t0
    return hist


@torch.no_grad()
def reconstruct(model: nn.Module, inputs: Sequence[torch.Tensor], batch_size: int = 512) -> torch.Tensor:
    """Reconstructions clipped to [0, 1], (N, C, H, W) float32."""
    was = model.training
    model.eval()
    try:
        n = inputs[0].shape[0]
        out = torch.cat([model(*(t[i:i + batch_size] for t in inputs)) for i in range(0, n, batch_size)])
    finally:
        model.train(was)
    return out.clamp_(0.0, 1.0)


__all__ = ["ATTACKS", "build_attacker", "train_attacker", "reconstruct"]
