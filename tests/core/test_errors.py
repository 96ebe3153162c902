"""One exception root; local misuse and remote misbehaviour apart (as h11 does)."""

from __future__ import annotations

import pytest

import mldht
from mldht.errors import (
    DecodeError,
    InvalidArgument,
    KRPCError,
    LocalError,
    MldhtError,
    NotRunning,
    NotStored,
    QueryTimeout,
    RemoteError,
)


@pytest.mark.parametrize("cls", [InvalidArgument, NotRunning])
def test_local_misuse(cls: type[MldhtError]) -> None:
    assert issubclass(cls, LocalError) and not issubclass(cls, RemoteError)


@pytest.mark.parametrize("cls", [DecodeError, KRPCError, QueryTimeout, NotStored])
def test_remote_misbehaviour(cls: type[MldhtError]) -> None:
    assert issubclass(cls, RemoteError) and not issubclass(cls, LocalError)


def test_stdlib_bases_kept_and_code_is_data() -> None:
    assert issubclass(InvalidArgument, ValueError) and issubclass(QueryTimeout, TimeoutError)
    err = KRPCError(KRPCError.SEQ_TOO_LOW, "sequence number less than current")
    assert (err.code, err.message) == (302, "sequence number less than current")
    assert {"LocalError", "RemoteError", "NotRunning", "NotStored"} <= set(mldht.__all__)
