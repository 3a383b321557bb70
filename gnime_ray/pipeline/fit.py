"""Training loops shared by the pipeline: early stopping and the classifier fit.

Classifiers (release): Keras' Adam(lr 1e-4, betas 0.5/0.999, eps 1e-7; gnime_ray/optim.py), cross-entropy on
logits, shuffled mini-batches, early stopping on held-out accuracy with patience, restoring the
best weights. Deviation: equal held-out accuracies (frequent on small validation slices) are
ranked by held-out loss, where Keras keeps the first epoch that reached the accuracy. Dropout
(the CelebA and ImageNet classifiers) draws its masks from a generator of the fit's own seed
(models/initialisation.py OwnedDropout), never from torch's global one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .. import echo, time_left
from ..cellspec import derive_seed
from ..data.host_rows import HostRows, map_rows, to_device
from ..data.registry import to_float
from ..early_stopping import EarlyStopping
from ..models import dropout_from
from ..optim import KerasAdam
from ..models.training_format import Speed

Log = Callable[[str], None]


@dataclass
class FitHistory:
    train_loss: list[float] = field(default_factory=list)
    val_score: list[float] = field(default_factory=list)
    best_epoch: int = -1
    seconds: float = 0.0


def adam(params, lr: float, betas=(0.9, 0.999)) -> torch.optim.Adam:
    """Keras' Adam (gnime_ray/optim.py: epsilon 1e-7, added before the bias correction)."""
    return KerasAdam(params, lr=lr, betas=betas)


def train_classifier(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, val_images: torch.Tensor,
                     val_labels: torch.Tensor, *, epochs: int, batch_size: int, patience: int, lr: float,
                     seed: int, device: torch.device, log: Log = echo, name: str = "classifier",
                     speed: Optional[Speed] = None) -> FitHistory:
    """Fit ``model`` in place. images: (N, C, H, W) uint8; labels: (N,) int64. Returns the history;
    the model ends with its best-validation-accuracy weights, in eval mode."""
    speed = speed or Speed(False, False, "default")
    speed.model(model.to(device))
    opt = adam(model.parameters(), lr, betas=(0.5, 0.999))
    gen = torch.Generator().manual_seed(seed)
    masks = torch.Generator(device=device).manual_seed(derive_seed(seed, "dropout"))
    stopper = EarlyStopping(patience, mode="max")
    hist = FitHistory()
    x_val = HostRows(val_images)
    t0 = time.perf_counter()
    with dropout_from(model, masks):
        for epoch in range(1, epochs + 1):
            model.train()
            perm = torch.randperm(images.shape[0], generator=gen)
            total, count = 0.0, 0
            for i in range(0, perm.numel(), batch_size):
                idx = perm[i:i + batch_size]
                xb, yb = speed.batch(to_device(to_float(images[idx]), device)), labels[idx].to(device)
                loss = F.cross_entropy(model(xb), yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.item() * idx.numel()
                count += idx.numel()
            model.eval()
            val_logits = map_rows(model, [x_val], device)  # on the host
            val_acc = (val_logits.argmax(1) == val_labels).float().mean().item()
            val_loss = F.cross_entropy(val_logits, val_labels).item()
            hist.train_loss.append(total / count)
            hist.val_score.append(val_acc)
            log(f"  {name} epoch {epoch}/{epochs}: loss {total / count:.4f}, val acc {val_acc:.4f}, "
                f"val loss {val_loss:.4f} ({time.perf_counter() - t0:.0f}s"
                f"{time_left(time.perf_counter() - t0, epoch, epochs, '; at most ')})")
            if stopper.step((val_acc, -val_loss), epoch, model) and epoch < epochs:
                log(f"  {name}: early stop at epoch {epoch} (best val acc {stopper.best[0]:.4f} at epoch "
                    f"{stopper.best_epoch})")
                break
    stopper.restore(model)
    speed.trained(model).eval()
    hist.best_epoch = stopper.best_epoch
    hist.seconds = time.perf_counter() - t0
    return hist
