"""Results: the results root and its files (root.py), the rows (rows.py), the artifacts, the study
records, the paper-layout tables and the figures."""

from .report import paper_table, table1
from .root import resolve_out
from .rows import PARTITION_COLUMNS, SCHEMA, read_rows, write_rows

__all__ = ["PARTITION_COLUMNS", "SCHEMA", "read_rows", "resolve_out", "write_rows", "paper_table", "table1"]
