"""The paper's data split (Sec. 5.1 and the release).

A seeded permutation of all images (the release leaves CelebA's unseeded and MNIST/CIFAR's in
file order; we always seed). The first half (floor) is the *target half*: it trains the
target f, the evaluation classifier f_E and GNIME. The second half is the *attack half*: its
first 80% trains the attackers and its last 20% is the evaluation set.

The evaluation set is divided once more, by a generator seeded from the study seed, into two
disjoint sets of images (gnime_ray's addition, not the paper's): ``select`` (what a search, a
Pareto flag or any other choice may read) and ``test`` (what every table, figure and reported
number reads), ``test_fraction`` of it (default half) for ``test``. Every attacker is evaluated on
both; choosing on one set and reporting on the other keeps a search's reported numbers honest
(hold-out model selection). Both are positions within ``eval``, sorted.

Deviations from the release, both to stop leaks into the evaluation set:
- attackers early-stop on ``attack_val``, the last ``val_fraction`` of the attack-train 80%
  (the release early-stops on the evaluation 20% itself);
- classifiers early-stop on ``target_val``, the last ``val_fraction`` of the target half.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..cellspec import derive_seed


@dataclass(frozen=True)
class DataSplit:
    """Index tensors (int64) into a dataset. ``target`` = target_train + target_val;
    ``attack_train_full`` = attack_train + attack_val. ``select`` and ``test``: positions within
    ``eval`` (int64, sorted, disjoint, together all of it): the selection and the test images."""

    target: torch.Tensor
    target_train: torch.Tensor
    target_val: torch.Tensor
    attack_train_full: torch.Tensor
    attack_train: torch.Tensor
    attack_val: torch.Tensor
    eval: torch.Tensor
    select: torch.Tensor
    test: torch.Tensor

    def sizes(self) -> dict[str, int]:
        return {k: int(getattr(self, k).numel()) for k in self.__dataclass_fields__}


def make_split(n: int, seed: int, val_fraction: float = 0.1, attack_train_fraction: float = 0.8,
               test_fraction: float = 0.5) -> DataSplit:
    if n < 20:
        raise ValueError(f"a split needs at least 20 images, got {n}")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_target = n // 2
    target, attack = perm[:n_target], perm[n_target:]
    n_attack_train = int(round(attack_train_fraction * attack.numel()))
    attack_train_full, eval_idx = attack[:n_attack_train], attack[n_attack_train:]
    n_tval = max(1, int(round(val_fraction * target.numel())))
    n_aval = max(1, int(round(val_fraction * attack_train_full.numel())))
    n_eval = eval_idx.numel()
    n_test = min(n_eval - 1, max(1, int(round(test_fraction * n_eval))))
    order = torch.randperm(n_eval, generator=torch.Generator().manual_seed(derive_seed(seed, "select-test")))
    return DataSplit(
        target=target,
        target_train=target[:-n_tval],
        target_val=target[-n_tval:],
        attack_train_full=attack_train_full,
        attack_train=attack_train_full[:-n_aval],
        attack_val=attack_train_full[-n_aval:],
        eval=eval_idx,
        select=order[n_test:].sort().values,
        test=order[:n_test].sort().values,
    )
