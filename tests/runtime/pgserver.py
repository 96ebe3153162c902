"""A real PostgreSQL server for the crawler's tests, in a temporary folder.

Found on PATH or in Debian's /usr/lib/postgresql/*/bin (the ``postgresql`` package). The
server refuses to run as root, so as root it runs as the ``postgres`` user (setpriv). It
listens on 127.0.0.1 on a free port with trust authentication, and is stopped and removed
on exit, even when the test failed. Missing under ``CI=true``: the test fails, never skips.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

__all__ = ["in_ci", "postgres_server"]

USER = "mldht"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def _missing(what: str) -> None:
    if in_ci():
        pytest.fail(f"{what} (CI=true: the README's test command installs it)")
    pytest.skip(what)


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    return versions[-1] if versions else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start a server; yields its URL, ``postgresql://mldht@127.0.0.1:PORT/postgres``."""
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    if initdb is None or pg_ctl is None:
        _missing("PostgreSQL is not installed (initdb, pg_ctl: apt-get install postgresql)")
    assert initdb is not None and pg_ctl is not None
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _missing("psycopg is not installed (pip install 'mldht[postgres]')")
    base = Path(tempfile.mkdtemp(prefix="mldht-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(base)
            pytest.fail("running as root, and there is no postgres user to run the server")
        os.chown(base, owner.pw_uid, owner.pw_gid)
        as_user = ["setpriv", f"--reuid={owner.pw_uid}", f"--regid={owner.pw_gid}"]
        as_user += ["--init-groups", "--"]
    data = base / "data"
    port = _free_port()
    started = False
    try:
        subprocess.run(
            [*as_user, initdb, "-D", str(data), "-U", USER, "--auth=trust", "-E", "UTF8", "-N"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -F"
        start_cmd = [*as_user, pg_ctl, "-D", str(data), "-l", str(base / "log")]
        start = subprocess.run(
            [*start_cmd, "-o", options, "-w", "-t", "60", "start"],
            capture_output=True,
            text=True,
            timeout=90,
        )
        started = True  # even a failed start may have left a postmaster behind
        if start.returncode != 0:
            log = (base / "log").read_text() if (base / "log").exists() else ""
            pytest.fail(f"PostgreSQL did not start: {start.stderr}\n{log[-2000:]}")
        yield f"postgresql://{USER}@127.0.0.1:{port}/postgres"
    finally:
        if started:
            subprocess.run(
                [*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"],
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(base, ignore_errors=True)
