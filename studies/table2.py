#!/usr/bin/env python
"""`gnime-ray study table2` as a script, with the same flags: Table 2: CelebA's target attacked by an
adversary who trains on FaceScrub (its whole description: --help; its code:
gnime_ray/tune/named_studies.py)."""

from gnime_ray.tune.named_studies import script
from gnime_ray.tune.scripts import run_script

parser, main = script("table2")

if __name__ == "__main__":
    run_script(main)
