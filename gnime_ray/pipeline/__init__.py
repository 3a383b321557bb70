"""Plain functions, no Ray: prepare (train f and f_E, compute maps, cache by content hash), and
the pieces later layers build cells from. Everything here runs and is tested without Ray."""

from .prepare import Prepared, prepare

__all__ = ["Prepared", "prepare"]
