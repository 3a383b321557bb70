"""Training loops shared by the pipeline: early stopping and the classifier fit.

Classifiers (release): Adam(lr 1e-4, betas 0.5/0.999, eps 1e-7 as Keras), cross-entropy on
logits, shuffled mini-batches, early stopping on held-out accuracy with patience, restoring the
best weights.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..data.registry import to_float
from ..metrics import accuracy

Log = Callable[[str], None]


@dataclass
class EarlyStopping:
    """Tracks the best score (``mode`` 'max' or 'min') and a copy of the best weights."""

    patience: int
    mode: str = "max"
    best: Optional[float] = None
    best_epoch: int = -1
    best_state: Optional[dict] = None
    bad_epochs: int = 0

    def step(self, score: float, epoch: int, model: nn.Module) -> bool:
        """Record an epoch's score; returns True when training should stop."""
        better = self.best is None or (score > self.best if self.mode == "max" else score < self.best)
        if better:
            self.best, self.best_epoch, self.bad_epochs = score, epoch, 0
            self.best_state = copy.deepcopy(model.state_dict())
        else:
            self.bad_epochs += 1
        return self.bad_epochs >= self.patience

    def restore(self, model: nn.Module) -> None:
        if self.best_state is not None:
            model.load_state_dict(self.best_state)


@dataclass
class FitHistory:
    train_loss: list[float] = field(default_factory=list)
    val_score: list[float] = field(default_factory=list)
    best_epoch: int = -1
    seconds: float = 0.0


def adam(params, lr: float, betas=(0.9, 0.999)) -> torch.optim.Adam:
    """Adam with Keras' epsilon (1e-7)."""
    return torch.optim.Adam(params, lr=lr, betas=betas, eps=1e-7)


def train_classifier(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, val_images: torch.Tensor,
                     val_labels: torch.Tensor, *, epochs: int, batch_size: int, patience: int, lr: float,
                     seed: int, device: torch.device, log: Log = print, name: str = "classifier") -> FitHistory:
    """Fit ``model`` in place. images: (N, C, H, W) uint8; labels: (N,) int64. Returns the history;
    the model ends with its best-validation-accuracy weights, in eval mode."""
    model.to(device)
    opt = adam(model.parameters(), lr, betas=(0.5, 0.999))
    gen = torch.Generator().manual_seed(seed)
    stopper = EarlyStopping(patience, mode="max")
    hist = FitHistory()
    x_val = to_float(val_images).to(device)
    t0 = time.perf_counter()
    for epoch in range(1, epochs + 1):
        model.train()
        perm = torch.randperm(images.shape[0], generator=gen)
        total, count = 0.0, 0
        for i in range(0, perm.numel(), batch_size):
            idx = perm[i:i + batch_size]
            xb, yb = to_float(images[idx]).to(device), labels[idx].to(device)
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * idx.numel()
            count += idx.numel()
        val_acc = accuracy(model, x_val, val_labels)
        hist.train_loss.append(total / count)
        hist.val_score.append(val_acc)
        log(f"  {name} epoch {epoch}/{epochs}: loss {total / count:.4f}, val acc {val_acc:.4f}")
        if stopper.step(val_acc, epoch, model) and epoch < epochs:
            log(f"  {name}: early stop at epoch {epoch} (best {stopper.best:.4f} at epoch {stopper.best_epoch})")
            break
    stopper.restore(model)
    model.eval()
    hist.best_epoch = stopper.best_epoch
    hist.seconds = time.perf_counter() - t0
    return hist
