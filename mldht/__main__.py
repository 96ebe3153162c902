"""``python -m mldht``: the command line (see :mod:`mldht.cli`)."""

from __future__ import annotations

from .cli import main

raise SystemExit(main())
