#!/usr/bin/env python
"""`gnime-ray study table1` as a script, with the same flags: the Table 1 matrix on Ray (ExpMI against
GNIME, RND and OND at the paper's lambda) (its whole description: --help; its code:
gnime_ray/tune/named_studies.py)."""

from gnime_ray.tune.named_studies import script
from gnime_ray.tune.scripts import run_script

parser, main = script("table1")

if __name__ == "__main__":
    run_script(main)
