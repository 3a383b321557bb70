"""The study, without Ray and without an engine: what a study computes and how it is opened, which
both engines (the local one, gnime_ray/pipeline/matrix.py, and Ray Tune's, gnime_ray/tune/) run.

- spec.py: ``StudySpec`` (validated), its search space and identity;
- objective.py: what a search reads of a trial (selection images only);
- cells.py: the cells a study makes, one list for both engines;
- record.py: the study's record under the results root (identity, speed decision, choice);
- opening.py: opening a study (the record recalled, the identity checked, the one speed decision);
- heldout.py: what a held-out report after a search re-measures (the chosen points, the report's
  spec, the search's optimism).
Nothing here imports ray or gnime_ray.tune.
"""
