"""Key files for mutable items: owner-only, atomic, strict on load."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mldht.core.bep44 import KeyPair
from mldht.errors import InvalidArgument
from mldht.runtime.items import load_or_create_keypair
from mldht.runtime.keys import load_keypair, save_keypair

SEED = bytes(range(100, 132))


def test_save_and_load(tmp_path: Path) -> None:
    path = tmp_path / "item.key"
    kp = KeyPair.from_seed(SEED)
    save_keypair(kp, path)
    assert path.read_bytes() == SEED.hex().encode() + b"\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_keypair(path) == kp
    assert load_keypair(str(path)).public_key == kp.public_key
    assert sorted(p.name for p in tmp_path.iterdir()) == ["item.key"]  # no temporary left


def test_save_replaces_a_readable_file(tmp_path: Path) -> None:
    path = tmp_path / "item.key"
    path.write_text("old contents")
    os.chmod(path, 0o644)
    kp = KeyPair.generate()
    save_keypair(kp, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_keypair(path) == kp


def test_save_failure_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "a-directory"
    target.mkdir()
    (target / "child").write_text("x")  # os.replace cannot put a file over this directory
    with pytest.raises(OSError):
        save_keypair(KeyPair.from_seed(SEED), target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-directory"]


def test_load_raw_seed_and_whitespace(tmp_path: Path) -> None:
    raw = tmp_path / "raw.key"
    raw.write_bytes(SEED)
    assert load_keypair(raw).seed == SEED
    spaced = tmp_path / "spaced.key"
    spaced.write_text(f"  {SEED.hex().upper()}\r\n\n")
    assert load_keypair(spaced).seed == SEED


@pytest.mark.parametrize(
    "content",
    [b"", b"\n", SEED.hex().encode()[:-1], SEED.hex().encode()[:-2], b"zz" * 32, SEED + b"\x00"],
)
def test_load_rejects_malformed(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.key"
    path.write_bytes(content)
    with pytest.raises(InvalidArgument, match="key file"):
        load_keypair(path)


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_keypair(tmp_path / "missing.key")


def test_load_or_create_names_the_file_and_the_reason(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    for path, reason in [
        (a_file / "k.key", "Not a directory"),
        (a_file / "sub" / "k.key", "Not a directory"),
    ]:
        with pytest.raises(InvalidArgument) as info:
            load_or_create_keypair(path)
        assert str(info.value) == f"cannot create key file {str(path)!r}: {reason}"
    with pytest.raises(InvalidArgument, match="cannot read key file"):
        load_or_create_keypair(tmp_path)  # a directory: reading it fails (not "missing")
    kp, created = load_or_create_keypair(tmp_path / "new" / "k.key")
    assert created and load_or_create_keypair(tmp_path / "new" / "k.key") == (kp, False)
    assert a_file.read_text() == "x"
