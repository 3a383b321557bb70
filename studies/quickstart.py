#!/usr/bin/env python
"""`gnime-ray study quickstart` as a script, with the same flags: the real-MNIST search over GNIME's
lambda, NG width and gamma (LRP) and its held-out frontier (its whole description: --help; its code:
gnime_ray/tune/named_studies.py)."""

from gnime_ray.tune.named_studies import script
from gnime_ray.tune.scripts import run_script

parser, main = script("quickstart")

if __name__ == "__main__":
    run_script(main)
