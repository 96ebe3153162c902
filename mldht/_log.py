"""Logging set-up of the command-line programs (``mldht``, ``mldht crawl``, tools/crawl.py)."""

from __future__ import annotations

import logging
import sys

__all__ = ["setup_logging"]


def setup_logging(verbosity: int, prog: str = "mldht") -> None:
    """Log the ``mldht`` logger to stderr: warnings, or more with -v (info) and -vv."""
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{prog}: %(message)s"))
    logger = logging.getLogger("mldht")
    logger.addHandler(handler)
    logger.setLevel(level)
