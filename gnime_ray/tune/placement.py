"""How the Ray engine places a study on a cluster (``Placement``), apart from what the study computes
(gnime_ray/study/spec.py ``StudySpec``): none of it changes a number, so none of it is in the
study's identity, and the same study may resume with another placement.

- ``max_concurrent_trials``: trials at once (the study scripts size it from the cluster's GPUs);
- ``trial_gpu``, ``attacker_gpu``: the GPU fractions of a trial's bundle and of each attacker in
  its attack pool (tune/resources.py), asked for only when ``use_gpu``;
- ``attackers_per_trial``: the attackers of one attack pool, run at once as threads of one process
  (tune/attack_pool.py), each on ``cpus_per_task`` CPUs;
- ``pool_allocator``: the malloc of the attack pools' processes (tune/resources.py);
- ``checkpoint_every``: a trial's GNIME is checkpointed every that many epochs (tune/trial.py);
- ``use_gpu``: whether bundles ask for GPU fractions; decided ONCE, before any placement group
  (the study scripts decide it from --cpu-only or the machine); None lets ``run_study`` decide
  from the cluster as it is when the study starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..config import check_field, is_count, is_number, positive_finite

ALLOCATORS = ("jemalloc", "system")  # an attack pool's malloc (tune/resources.py)


@dataclass(frozen=True)
class Placement:
    """Validated on construction (ValueError naming the field)."""

    max_concurrent_trials: int = 2
    trial_gpu: float = 0.25
    attacker_gpu: float = 0.25
    attackers_per_trial: int = 2
    cpus_per_task: float = 1.0
    pool_allocator: str = "jemalloc"
    checkpoint_every: int = 10
    use_gpu: Optional[bool] = None

    def __post_init__(self) -> None:
        for name in ("max_concurrent_trials", "attackers_per_trial", "checkpoint_every"):
            check_field(is_count(getattr(self, name), 1), name, "an integer >= 1", getattr(self, name))
        for name in ("trial_gpu", "attacker_gpu"):
            value = getattr(self, name)
            check_field(is_number(value) and 0 < value <= 1, name, "a finite number in (0, 1]", value)
        check_field(positive_finite(self.cpus_per_task), "cpus_per_task", "a finite number > 0", self.cpus_per_task)
        check_field(self.pool_allocator in ALLOCATORS, "pool_allocator", f"one of {', '.join(ALLOCATORS)}",
                    self.pool_allocator)
        check_field(self.use_gpu is None or isinstance(self.use_gpu, bool), "use_gpu", "None, true or false",
                    self.use_gpu)

    @property
    def gpu_trial(self) -> float:
        """The GPU fraction a trial's bundle asks for (0 on a CPU-only study)."""
        return self.trial_gpu if self.use_gpu else 0.0

    @property
    def gpu_attacker(self) -> float:
        return self.attacker_gpu if self.use_gpu else 0.0
