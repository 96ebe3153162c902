#!/usr/bin/env python3
"""A polite crawler of the mainline DHT (BEP 51 sample_infohashes, read-only node).

    python tools/crawl.py --bootstrap HOST:PORT --duration 60 --db out.sqlite

The crawler is the package :mod:`mldht.crawl` (planner, store, driver, display, command);
this script and ``mldht crawl`` both run :mod:`mldht.crawl.command`. It uses mldht's
public API only. ``--help`` lists every option.
"""

from __future__ import annotations

import sys

from mldht.crawl.command import main

if __name__ == "__main__":
    sys.exit(main())
