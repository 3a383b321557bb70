"""Results: the Parquet schema, atomic writes and reads; the paper-layout tables."""

from .parquet import PARTITION_COLUMNS, SCHEMA, read_rows, resolve_out, write_rows
from .report import paper_table, table1

__all__ = ["PARTITION_COLUMNS", "SCHEMA", "read_rows", "resolve_out", "write_rows", "paper_table", "table1"]
