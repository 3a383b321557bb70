"""gnime_ray: GNIME (Jeong et al., NeurIPS 2022) and explanation-aware model inversion, on Ray.

Layers, each module importing only from its own layer and those before it (tests/test_layers.py
holds the code to this line; the README and docs link here):

  base -> store -> data -> models -> explain -> defenses -> attacks -> metrics -> study -> pipeline -> report -> tune -> cli

base: the top-level modules config (presets, overrides), cellspec (what one cell is, its key and
seeds), paper (the paper's numbers), cachedir, optim, statistics, flags, progress, provenance,
early_stopping. store: the results root, rows and artifacts. models: the networks, and the memory
format and precision they train in (models/training_format.py). study: what a study computes and
how it is opened, for both engines, without Ray. pipeline: the local engine (prepare, GNIME, one
cell, the matrix). report: tables, the frontier, figures. tune: the Ray engine, the only code that
imports ray. cli: the commands, cli.py (``gnime-ray``) and bench.py (``python -m gnime_ray.bench``).
This package's own ``gnime_ray.Protector`` is a lazy re-export of defenses/deploy.py. The scripts
in studies/ sit on tune; those in benchmarks/ on any layer.

One study through them, by either engine (a cell is one attacker's row):
  gnime-ray matrix (cli)                 | gnime-ray study NAME, python studies/NAME.py (tune/scripts.py)
  pipeline/matrix.py run_matrix          | tune/study.py run_study (a study/spec.py StudySpec, a tune/placement.py Placement)
  study/opening.py recall_study: the record (study/record.py), a resume's memory format, the identity checked
                                         | tune/nodes.py check_nodes: every node sees the results root
  study/opening.py settle_speed: the one speed decision (decide_speed), recorded
  pipeline/prepare.py prepare: f, f_E and the maps, once (cached)  | in a Ray task (tune/tasks.py)
  study/cells.py: the baselines and each GNIME configuration's cells | a Tune trial per configuration (tune/trial.py)
  pipeline/defend.py train_or_load_gnime: one GNIME per training configuration (cached, published)
  pipeline/cell.py run_cell: a defence's release, one attacker, the metrics | in attack pools (tune/attack_pool.py)
  store/rows.py write_rows: one Parquet row per cell and attack seed
  a search's held-out report: study/heldout.py (what is re-measured) | tune/search_then_report.py
  report/tables.py, report/frontier.py, report/figures.py: Tables 1-3, the held-out frontier, the figures
"""

__version__ = "0.1.0"


class GnimeRayError(Exception):
    """An error caused by the user's input (a bad name, path or value).

    The CLI prints its message on one line and exits non-zero, without a traceback.
    """


class TrainingDiverged(Exception):
    """A training whose losses (or a cell whose metrics) turned non-finite. Its result is not a
    result: no row is written for it; a study records the trial as ``diverged``."""


class Interrupted(Exception):
    """A step stopped before it ended (Ctrl-C reached Ray Tune, which stops its trials and returns):
    what it finished is kept, and what comes after it must not run as if it had ended. Running
    the same command again resumes it."""


def echo(message: str) -> None:
    """The default progress log: print and flush, so progress shows through pipes and Ray logs."""
    print(message, flush=True)


def time_left(elapsed: float, done: int, total: int, prefix: str = "; ") -> str:
    """``'; ~40 s left'`` (``'; ~3.2 min left'`` from 90 s) at the rate so far: ``done`` of ``total``
    units took ``elapsed`` seconds; blank when nothing or everything is done."""
    if done <= 0 or done >= total or elapsed <= 0:
        return ""
    left = (total - done) * elapsed / done
    return f"{prefix}~{left / 60:.1f} min left" if left >= 90 else f"{prefix}~{left:.0f} s left"


def __getattr__(name: str):
    """``gnime_ray.Protector`` (defenses/deploy.py), imported on first use so that importing
    gnime_ray stays light."""
    if name == "Protector":
        from .defenses.deploy import Protector

        return Protector
    raise AttributeError(f"module 'gnime_ray' has no attribute {name!r}")
