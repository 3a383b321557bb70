#!/usr/bin/env python
"""`gnime-ray study celeba_lambda` as a script, with the same flags: CelebA's lambda x NG width search
at fixed perturbation budgets and its held-out frontier (its whole description: --help; its code:
gnime_ray/tune/named_studies.py)."""

from gnime_ray.tune.named_studies import script
from gnime_ray.tune.scripts import run_script

parser, main = script("celeba_lambda")

if __name__ == "__main__":
    run_script(main)
