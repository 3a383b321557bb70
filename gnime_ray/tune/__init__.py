"""The Ray layer, and the only code that imports ray: trial resources, the GNIME trainable,
attacker tasks, the study driver (Tune + Optuna or grid), and cluster helpers."""

from .cluster import connect, validate_cluster_file
from .resources import trial_resources
from .study import StudySpec, run_study

__all__ = ["connect", "validate_cluster_file", "trial_resources", "StudySpec", "run_study"]
