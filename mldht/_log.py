"""Logging set-up of the command-line programs (``mldht``, ``mldht crawl``, tools/crawl.py).

Two formats on stderr: ``text`` (``mldht: <message>``) and ``json``, one object per line,
``{"time": ..., "level": ..., "logger": ..., "message": ...}`` (plus ``"exception"`` with
the traceback when there is one), for log collectors.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

__all__ = ["LOG_FORMATS", "JSONFormatter", "setup_logging"]

LOG_FORMATS = ("text", "json")


class JSONFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc)


def setup_logging(verbosity: int, prog: str = "mldht", log_format: str = "text") -> None:
    """Log the ``mldht`` logger to stderr: warnings, or more with -v (info) and -vv;
    ``log_format`` is ``text`` or ``json``."""
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(logging.Formatter(f"{prog}: %(message)s"))
    logger = logging.getLogger("mldht")
    logger.addHandler(handler)
    logger.setLevel(level)
