"""Presentation: what is made of a results root for people. The paper-layout tables and the
operating points (tables.py), the held-out frontier with its intervals and hypervolumes
(frontier.py) and the figures (figures.py). Reads the rows (gnime_ray/store/), never trains."""
