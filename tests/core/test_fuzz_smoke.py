"""A short run of bench/fuzz.py (core mode): mutated real datagrams, random bytes, deep
nesting and wrong types in every field; nothing escapes, nothing counts as an internal
error, and every honest ping between them is answered."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

FUZZ = Path(__file__).resolve().parents[2] / "bench" / "fuzz.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mldht_bench_fuzz", FUZZ)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_fuzz_smoke_core() -> None:
    fuzz = _load()
    out = fuzz.run_core(20_000, seed=7)
    assert out["escaped_exceptions"] == 0, out["escaped_examples"]
    assert out["internal_errors"] == 0, out["internal_error_examples"]
    assert out["bad_outputs"] == 0
    assert out["honest_pings"] == 200
    assert out["honest_answered"] == out["honest_pings"], out["honest_missed_examples"]
    kinds = out["by_generator"]
    assert set(kinds) == {"bytes", "struct", "answer", "random", "deep", "real"}
    drops = out["drops"]
    for reason in ("oversize", "not_dict", "deep", "malformed"):
        assert drops["dropped_" + reason] > 0, reason
    assert out["stats"]["responses_in"] > 0  # answers to the node's queries were matched
