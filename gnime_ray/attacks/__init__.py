"""Model-inversion attackers: ExpMI (released map + logits) and PredMI (logits only).

Each is trained with MSE on the attack-train split of RELEASED maps (each defence's own: the
attacker never sees clean maps of a defended model), Keras' Adam (lr, eps 1e-7; gnime_ray/optim.py;
betas and batch size per ``attack_settings``),
early-stopping on a held-out slice of the attack-train split with patience, restoring the best
weights (the release early-stops on the evaluation set; see data/splits.py). Reconstructions of
the evaluation split are clipped to [0, 1] before any metric. Inputs are read batch by batch from
host rows (data/host_rows.py) and moved to the device: the device holds the network and one batch, and
no split is held whole in memory (the validation MSE is accumulated batch by batch).
"""

from __future__ import annotations

import time
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .. import echo, time_left
from ..cellspec import ATTACKS
from ..data.host_rows import HostRows, map_rows, rows_of
from ..early_stopping import EarlyStopping
from ..models import PredMI, UNet
from ..optim import KerasAdam
from ..models.training_format import Speed

Log = Callable[[str], None]


def build_attacker(name: str, map_shape: Sequence[int], image_shape: Sequence[int], num_classes: int,
                   width: float = 1.0, generator: Optional[torch.Generator] = None) -> nn.Module:
    """ExpMI: the U-Net builder (map -> image); PredMI: logits -> image; weights from ``generator``."""
    if name == "expmi":
        return UNet(map_shape, image_shape, num_classes, width=width, generator=generator)
    if name == "predmi":
        return PredMI(image_shape, num_classes, width=width, generator=generator)
    raise ValueError(f"unknown attack {name!r}; expected one of {', '.join(ATTACKS)}")


# the release's eval scripts: ExpMI against GNIME trains with Adam's default betas and batch 128; ExpMI without
# defence, against RND, and PredMI with beta1 0.5 and batch 256 (OND, not in the release: as RND)
RELEASE_ATTACKERS = {"gnime": ((0.9, 0.999), 128), "other": ((0.5, 0.999), 256)}


def attack_settings(protocol: str, defense: str, batch_size: int) -> tuple[tuple[float, float], int]:
    """(Adam betas, batch size) of an attacker of ``defense``: ``uniform`` (the default: every defence
    attacked alike, default betas and the preset's batch size, so that the defences' columns differ
    by the defence only) or ``release`` (RELEASE_ATTACKERS: the release's per-defence settings, what
    produced the paper's numbers; they attack GNIME differently from the baselines)."""
    if protocol == "uniform":
        return (0.9, 0.999), batch_size
    if protocol == "release":
        return RELEASE_ATTACKERS["gnime" if defense == "gnime" else "other"]
    raise ValueError(f"attack_optimiser must be uniform or release, got {protocol!r}")


def _inputs(name: str, maps, logits) -> list[HostRows]:
    return [rows_of(maps), rows_of(logits)] if name == "expmi" else [rows_of(logits)]


def train_attacker(name: str, model: nn.Module, maps, logits, images, val_maps, val_logits, val_images, *,
                   epochs: int, batch_size: int, patience: int, lr: float, seed: int,
                   device: torch.device, log: Log = echo, eval_batch_size: int = 512,
                   speed: Optional[Speed] = None, betas: tuple[float, float] = (0.9, 0.999)) -> dict:
    """Fit ``model`` in place on (released maps, logits) -> images. Each input is a tensor or
    HostRows with matching rows (maps None for PredMI): released maps (N, C', H', W') float,
    logits (N, K) float32, images (N, C, H, W) uint8 or float32 in [0, 1]. The validation pass
    runs in batches of ``eval_batch_size``. Returns the history; the model ends with its best
    validation-MSE weights in eval mode."""
    speed = speed or Speed(False, False, "default")
    speed.model(model.to(device))
    opt = KerasAdam(model.parameters(), lr=lr, betas=betas)
    train, x = _inputs(name, maps, logits), rows_of(images)
    val, x_val = _inputs(name, val_maps, val_logits), rows_of(val_images)
    gen = torch.Generator().manual_seed(seed)
    stopper = EarlyStopping(patience, mode="min")
    hist = {"train_mse": [], "val_mse": []}
    n = len(x)
    forward = speed.compile(model)  # training's forward (compiled when the speed says so); model keeps the weights
    t0 = time.perf_counter()
    for epoch in range(1, epochs + 1):
        model.train()
        perm = torch.randperm(n, generator=gen)
        total = 0.0
        for i in range(0, n, batch_size):
            idx = perm[i:i + batch_size]
            loss = F.mse_loss(forward(*(speed.batch(r.to(device, idx)) for r in train)), speed.batch(x.to(device, idx)))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * idx.numel()
        val_mse = validation_mse(model, val, x_val, eval_batch_size)
        hist["train_mse"].append(total / n)
        hist["val_mse"].append(val_mse)
        if stopper.step(val_mse, epoch, model) and epoch < epochs:
            log(f"  {name}: early stop at epoch {epoch} (best val MSE {stopper.best:.5f} at epoch {stopper.best_epoch})")
            break
        if epoch % 10 == 0:
            log(f"  {name} epoch {epoch}/{epochs}: train MSE {total / n:.5f}, val MSE {val_mse:.5f} "
                f"({time.perf_counter() - t0:.0f}s{time_left(time.perf_counter() - t0, epoch, epochs, '; at most ')})")
    stopper.restore(model)
    speed.trained(model).eval()
    hist["best_epoch"] = stopper.best_epoch
    hist["seconds"] = time.perf_counter() - t0
    return hist


@torch.no_grad()
def validation_mse(model: nn.Module, inputs: list[HostRows], images: HostRows, batch_size: int = 512) -> float:
    """MSE of the clipped reconstructions against ``images`` over every value of the split, batch by
    batch (squared errors summed in float64: the whole-split float32 mean up to float32 rounding),
    so that no split is ever held whole."""
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    try:
        for pos in images.chunks(batch_size):
            err = model(*(r.to(device, pos) for r in inputs)).cpu().clamp_(0.0, 1.0).sub_(images.take(pos))
            for rows in err.split(64):  # float64 in slices: no float64 copy of a whole batch
                total += float(rows.double().square().sum())
            count += err.numel()
    finally:
        model.train(was)
    return total / count


@torch.no_grad()
def reconstruct(model: nn.Module, inputs: Sequence, batch_size: int = 512) -> torch.Tensor:
    """Reconstructions clipped to [0, 1], (N, C, H, W) float32 on the host, computed batch by
    batch on the model's device from ``inputs`` (tensors or HostRows with matching rows)."""
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        out = map_rows(model, [rows_of(t) for t in inputs], device, batch_size)
    finally:
        model.train(was)
    return out.clamp_(0.0, 1.0)


__all__ = ["ATTACKS", "attack_settings", "build_attacker", "train_attacker", "reconstruct"]
