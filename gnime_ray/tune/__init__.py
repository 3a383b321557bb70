"""The Ray engine, and the only code that imports ray: it runs a study (gnime_ray/study/) as Ray Tune
trials with placement groups and attack pools (resources, node checks, the GNIME trainable, attack
pools, the study driver with Optuna or a grid, a search followed by its held-out report, the
console, and cluster helpers). ``StudySpec`` is re-exported from study/spec.py for scripts."""

from ..study.spec import StudySpec
from .cluster import connect, validate_cluster_file
from .resources import decide_gpu, trial_resources
from .study import run_study

__all__ = ["connect", "validate_cluster_file", "decide_gpu", "trial_resources", "StudySpec", "run_study"]
