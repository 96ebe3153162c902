"""Async glue for the interop tests: the client harnesses are blocking, our node is not."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import anyio

REPO = Path(__file__).resolve().parents[2]


async def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a blocking harness call in a worker thread, so our node keeps serving."""
    return await anyio.to_thread.run_sync(partial(fn, *args, **kwargs))


async def wait_for(cond: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll the blocking ``cond`` until it returns something true, and return that."""
    with anyio.move_on_after(timeout):
        while True:
            got = await call(cond)
            if got:
                return got
            await anyio.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


async def mldht_cli(*args: str) -> str:
    """``python -m mldht ARGS`` to completion; its stdout (status 0 required)."""
    with anyio.fail_after(30):
        done = await anyio.run_process(
            [sys.executable, "-m", "mldht", *args], cwd=REPO, check=False
        )
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()
