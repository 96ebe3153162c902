"""Tests of the anyio runtime and the command line (a package: test names repeat in tests/core)."""
