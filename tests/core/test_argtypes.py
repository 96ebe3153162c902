"""mldht.argtypes: the one HOST:PORT rule and the number types of mldht and the crawler."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import pytest

from mldht import argtypes
from mldht.argtypes import parse_hostport
from mldht.errors import InvalidArgument


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:6881", ("127.0.0.1", 6881)),
        ("dht.example.org:6881", ("dht.example.org", 6881)),
        ("dht.example.org.:6881", ("dht.example.org.", 6881)),
        ("my_host-1:1", ("my_host-1", 1)),
        ("localhost:65535", ("localhost", 65535)),
        ("[::1]:6881", ("::1", 6881)),
        ("[2001:DB8:0:0::1]:80", ("2001:db8::1", 80)),
    ],
)
def test_hostport_accepted(text: str, expected: tuple[str, int]) -> None:
    assert parse_hostport(text) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("a..b:1", "invalid host"),
        (".a:1", "invalid host"),
        ("-a:1", "invalid host"),
        ("a-:1", "invalid host"),
        ("a b:1", "invalid host"),
        (f"{'a' * 254}:1", "invalid host"),
        ("nohost", "invalid HOST:PORT"),
        (":6881", "invalid HOST:PORT"),
        ("host:", "invalid HOST:PORT"),
        ("host:http", "invalid HOST:PORT"),
        ("host:-1", "invalid HOST:PORT"),
        ("::1:6881", "invalid HOST:PORT"),
        ("[::1:6881", "invalid HOST:PORT"),
        ("[zz::1]:6881", "invalid IPv6 address"),
        ("[127.0.0.1]:6881", "invalid IPv6 address"),
        ("host:65536", "port out of range (1-65535)"),
        ("host:0", "port out of range (1-65535)"),
        ("[::1]:0", "port out of range (1-65535)"),
    ],
)
def test_hostport_rejected_naming_the_value(text: str, says: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as exc:
        parse_hostport(text)
    assert says in str(exc.value) and repr(text) in str(exc.value)


def test_port_zero_only_when_allowed() -> None:
    assert parse_hostport("0.0.0.0:0", allow_port_zero=True) == ("0.0.0.0", 0)
    assert parse_hostport("[::]:0", allow_port_zero=True) == ("::", 0)
    assert argtypes.bind_address("0.0.0.0:0") == ("0.0.0.0", 0)
    with pytest.raises(argparse.ArgumentTypeError, match=r"\(1-65535\)"):
        argtypes.peer_address("127.0.0.1:0")
    with pytest.raises(argparse.ArgumentTypeError, match=r"\(0-65535\)"):
        argtypes.bind_address("127.0.0.1:65536")
    with pytest.raises(argparse.ArgumentTypeError, match="invalid host"):
        argtypes.bind_address("a..b:0")


@pytest.mark.parametrize(
    ("kind", "good", "bad"),
    [
        (argtypes.port, {"1": 1, "65535": 65535}, ["0", "65536", "http", "-1", "1.0", ""]),
        (argtypes.positive_int, {"1": 1, "10": 10}, ["0", "-1", "1.5", "x", ""]),
        (argtypes.count, {"0": 0, "7": 7}, ["-1", "1.5", "x", ""]),
        (argtypes.positive_number, {"0.5": 0.5, "200": 200.0}, ["0", "-1", "nan", "inf", "x"]),
        (argtypes.positive_seconds, {"1e-3": 0.001, "30": 30.0}, ["0", "-5", "nan", "inf", "soon"]),
        (argtypes.non_negative_seconds, {"0": 0.0, "2.5": 2.5}, ["-0.1", "nan", "inf", "x"]),
    ],
)
def test_number_types(kind: Callable[[str], Any], good: dict[str, Any], bad: list[str]) -> None:
    for text, value in good.items():
        assert kind(text) == value
    for text in bad:
        with pytest.raises(argparse.ArgumentTypeError) as exc:
            kind(text)
        assert repr(text) in str(exc.value)


def test_parser_errors_are_one_line_with_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argtypes.Parser(prog="prog")
    parser.add_argument("--bootstrap", type=argtypes.peer_address)
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["--bootstrap", "a..b:1"])
    assert exc.value.code == 2
    assert capsys.readouterr().err == (
        "prog: error: argument --bootstrap: invalid host in 'a..b:1'\n"
    )


def test_checked_turns_invalid_argument_into_an_argparse_error() -> None:
    def even(text: str) -> int:
        if int(text) % 2:
            raise InvalidArgument(f"{text} is odd")
        return int(text)

    arg = argtypes.checked(even)
    assert arg("4") == 4 and arg.__name__ == "even"
    with pytest.raises(argparse.ArgumentTypeError, match="3 is odd"):
        arg("3")
