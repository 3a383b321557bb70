"""The Ray layer, and the only code that imports ray: the study's spec and identity, resources,
node checks, the GNIME trainable and attack pools, the study driver (Tune + Optuna or grid), the
console, and cluster helpers."""

from .cluster import connect, validate_cluster_file
from .resources import decide_gpu, trial_resources
from .spec import StudySpec
from .study import run_study

__all__ = ["connect", "validate_cluster_file", "decide_gpu", "trial_resources", "StudySpec", "run_study"]
