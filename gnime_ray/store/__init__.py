"""Results storage: the results root and its files (root.py), the rows (rows.py) and the trained
networks (artifacts.py). What is made of them for people (tables, the frontier, figures) is
gnime_ray/report/; a study's record is gnime_ray/study/record.py."""

from .root import resolve_out
from .rows import PARTITION_COLUMNS, SCHEMA, read_rows, write_rows

__all__ = ["PARTITION_COLUMNS", "SCHEMA", "read_rows", "resolve_out", "write_rows"]
