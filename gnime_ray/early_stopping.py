"""Early stopping with best-weight restoration (Keras' EarlyStopping(restore_best_weights=True))."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Optional

from torch import nn


@dataclass
class EarlyStopping:
    """Tracks the best score (``mode`` 'max' or 'min') and a copy of the best weights.

    A score may be a tuple, compared lexicographically (e.g. (accuracy, -loss))."""

    patience: int
    mode: str = "max"
    best: Optional[Any] = None
    best_epoch: int = -1
    best_state: Optional[dict] = None
    bad_epochs: int = 0

    def step(self, score: Any, epoch: int, model: nn.Module) -> bool:
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
